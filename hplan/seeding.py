"""Explicit seeding in one place.

A scenario's master seed fixes everything; derived seeds for episodes, collection workers and
planners come from :func:`derive_seed` so that two runs of the same command match exactly on CPU.
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where used: data collection needs seeds, not torch (1-2 s import)
    import torch


def derive_seed(base: int, *labels: object) -> int:
    """A stable 31-bit seed from a base seed and labels (e.g. ``derive_seed(0, "episode", 7)``)."""
    text = ":".join([str(base), *map(str, labels)]).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch global RNGs (libraries that use them: Lightning, samplers)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


EVAL_SPLITS = ("val", "test")
"""Evaluation splits: every choice of a setting is made on ``val``, every reported number on ``test``."""

COLLECT_SPLITS = ("train", "heldout")
"""Collection streams: ``heldout`` datasets (for diagnostics) come from seeds training never sees."""


def eval_episode_seed(base: int, split: str, index: int) -> int:
    """The reset (and agent) seed of evaluation episode ``index`` of ``split``.

    Why the parity bit: hashing alone makes a collision between the streams merely unlikely;
    ``val`` seeds are even and ``test`` seeds odd, so no episode can ever be in both.
    """
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    return (derive_seed(base, "episode", split, index) & ~1) | EVAL_SPLITS.index(split)


def collect_stream(split: str) -> str:
    """The seed label of a collection split (``train`` keeps the original stream, so datasets
    collected before splits existed are still the training split)."""
    if split not in COLLECT_SPLITS:
        raise ValueError(f"split must be one of {', '.join(COLLECT_SPLITS)}, got {split!r}")
    return "collect" if split == "train" else "collect-heldout"
