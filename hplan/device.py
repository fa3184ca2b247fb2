"""Resolve the torch device once, at the edge, and pass it down (never hard-code ``cuda:0``)."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

from hplan.errors import HplanError

DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda", "mps")
"""Device types hplan supports (torch parses more, e.g. ``meta``, which hold no data)."""


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device that is absent is an error."""
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as err:
        raise HplanError(f"unknown device {spec!r}: {err}") from None
    if device.type not in DEVICE_TYPES:  # torch also parses meta, xla, ...: no hplan model runs there
        raise HplanError(f"device {spec!r}: hplan runs on {', '.join(DEVICE_TYPES)} (or auto), not {device.type}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HplanError(f"device {spec!r} requested but CUDA is not available on this machine")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                     and torch.backends.mps.is_available()):
        raise HplanError(f"device {spec!r} requested but MPS is not available on this machine")
    return device


def flush_denormals() -> None:
    """Treat subnormal floats as zero on the CPU, for this thread and the threads it starts later.

    Why: Adam's second-moment estimates of heads whose gradients have all but vanished (a
    guardrail head fitted to rare violations, the pusher's contact force) fall into the subnormal
    range, and x86 cores compute on subnormals dozens of times slower. On the pusher's default run
    a guardrail refit of 1,000 full-batch steps took 92-103 s in every epoch after the first (14 s in
    the first) and 13 s with this set. Values below ~1e-38 become zero, which moves a model by
    float noise. Called first thing in every process that trains or plans (the CLI's callback; the
    stress, study and demo worker processes), before torch starts its thread pools, which inherit
    the setting."""
    torch.set_flush_denormal(True)


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run a block at ``count`` intra-op CPU threads (``None`` or 0: unchanged), then restore the count."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def every_core(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """:func:`torch_threads` at every CPU core for a block of no-grad work on ``device`` (unchanged off the CPU).

    Why: where training runs at fewer threads (``train.cpu_threads``), a core would sit idle in the
    stages that only encode (the refits' frozen latents, the high-level diagnostics); nothing else
    runs there, and the encoder's no-grad outputs are the same bits at any thread count (checked on
    the four-rooms keypoint model: 2.3x faster at 2 threads than at 1). At the default (every core)
    it changes nothing."""
    return torch_threads(os.cpu_count() if device.type == "cpu" else None)
