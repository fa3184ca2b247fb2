"""hplan: hierarchical planning in learned latent space, with safety stress tests.

``import hplan`` registers hplan's environments with gymnasium, so ``gymnasium.make("hplan/PointRooms-v0")``
works after it (the simulators themselves load only when an env is built).
"""

__version__ = "0.1.0"

from hplan.envs.registry import register_all as _register_all  # noqa: E402

_register_all()
