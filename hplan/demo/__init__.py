"""``hplan demo``: the whole pipeline end to end on the embedded default scenario."""

from hplan.demo.pipeline import DemoProfile, PROFILES, run_demo

__all__ = ["DemoProfile", "PROFILES", "run_demo"]
