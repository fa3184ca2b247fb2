"""What a run directory or episode log records so it can be reproduced: versions and platform."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

_PACKAGES = ("hplan", "torch", "numpy", "gymnasium", "minigrid", "pybullet", "lightning", "optuna", "pandas")


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
