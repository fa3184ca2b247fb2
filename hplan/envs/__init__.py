"""hplan environments: PointRooms, MiniGrid adapters, a PyBullet pusher and CartPole.

``import hplan.envs`` registers every id of :data:`hplan.envs.registry.ENVS` with gymnasium under
the ``hplan/`` namespace. Heavy simulators (minigrid, pybullet) are imported only when their env
is built. See docs/architecture.md, "Environment contract".
"""

from hplan.envs.registry import ENVS, register_all, registered_ids

register_all()

__all__ = ["ENVS", "registered_ids"]
