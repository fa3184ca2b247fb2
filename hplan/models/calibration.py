"""Conformal guardrail thresholds: a risk level δ instead of a fixed probability cut.

A guardrail head's probability is only as good as its calibration, and 0.5 says nothing about how
many real violations slip under it. Split conformal calibration turns a risk level into a
threshold with a guarantee: on ``n`` held-out *violating* transitions with head scores
``s_1 ≤ … ≤ s_n``, flag a transition when its score is at least ``τ = s_(k)`` with
``k = ⌊δ (n + 1)⌋``. For a new violating transition exchangeable with the calibration ones, the
chance that it goes unflagged is ``k / (n + 1) ≤ δ`` (its rank among the ``n + 1`` scores is
uniform). With ``k = 0`` (too few violations to certify δ) τ is 0: everything is flagged.

What the guarantee covers: one-step predictions from *real* latents and actions, distributed as the
calibration data (the exploration policy's, in the scenario's nominal world). The planner scores
imagined latents of its own candidates, and a shifted world breaks exchangeability; the held-out
report and the stress suite measure how far the miss rate moves there.

The calibration lives beside the model (``calibration.json`` in the run directory): the sorted
scores of the violating transitions per head, for both ways of combining an ensemble's members
(``mean``, ``max``), plus a sample of the other transitions' scores to report how often a threshold
flags a safe step. ``hplan train`` writes it from the validation episodes; ``hplan calibrate``
writes it for any run from any dataset of the same scenario.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hplan.errors import HplanError
from hplan.io import read_json_object, write_json

CALIBRATION_FILE = "calibration.json"
FORMAT = "hplan-guardrail-calibration/1"
MEMBER_MODES = ("mean", "max")
SAFE_SAMPLE = 5000
"""Scores of non-violating transitions kept (evenly spaced in sorted order) to report flag rates."""


def conformal_threshold(scores: np.ndarray, risk: float) -> float:
    """``s_(k)``, ``k = ⌊risk · (n + 1)⌋`` of the violating transitions' ``scores`` (0 when ``k = 0``)."""
    if not 0.0 < risk < 1.0:
        raise ValueError(f"risk must be in (0, 1), got {risk}")
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    k = math.floor(risk * (len(ordered) + 1))
    return float(ordered[k - 1]) if k >= 1 else 0.0


@dataclass(frozen=True)
class GuardrailCalibration:
    """Held-out scores per head: ``violating[mode][name]`` sorted ascending, ``safe[mode][name]`` a sample."""

    violating: dict[str, dict[str, list[float]]]
    safe: dict[str, dict[str, list[float]]]
    source: str = ""
    transitions: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def threshold(self, name: str, risk: float, members: str = "mean") -> float:
        return conformal_threshold(np.asarray(self.violating[members][name]), risk)

    def thresholds(self, names: tuple[str, ...], risk: float, members: str = "mean") -> list[float]:
        """Each named head's threshold at ``risk``; refused in one line for a head the calibration
        data cannot certify (fewer than ``1/δ − 1`` violating transitions: every threshold would be 0)."""
        missing = [n for n in names if n not in self.violating.get(members, {})]
        if missing:
            raise HplanError(f"{self.source}: no calibration for guardrail head(s) {missing} "
                             f"(calibrated: {sorted(self.violating.get(members, {}))})")
        needed = math.ceil(1.0 / risk - 1.0)
        for name in names:
            count = len(self.violating[members][name])
            if math.floor(risk * (count + 1)) < 1:
                raise HplanError(f"[guardrails] risk = {risk:g}: the calibration ({self.source}) has {count} violating "
                                 f"transitions of {name!r}, and certifying δ needs at least {needed}; heed other heads "
                                 f"([guardrails] names), raise δ, or calibrate on more data (hplan calibrate)")
        return [self.threshold(n, risk, members) for n in names]

    def report(self, risk: float, members: str = "mean") -> dict[str, float]:
        """Per head: the threshold, violating transitions used, and the share of safe ones it flags."""
        out: dict[str, float] = {}
        for name, scores in self.violating[members].items():
            certified = math.floor(risk * (len(scores) + 1)) >= 1
            tau = self.threshold(name, risk, members) if certified else math.nan
            safe = np.asarray(self.safe[members].get(name, []))
            out[f"threshold_{name}"] = tau
            out[f"calibration_violations_{name}"] = float(len(scores))
            out[f"safe_flagged_{name}"] = float((safe >= tau).mean()) if len(safe) and certified else math.nan
        return out

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "source": self.source, "transitions": self.transitions,
                "violating": self.violating, "safe": self.safe, "extra": self.extra}

    @classmethod
    def from_json(cls, payload: dict[str, Any], path: str) -> GuardrailCalibration:
        if payload.get("format") != FORMAT:
            raise HplanError(f"{path}: not a guardrail calibration (expected format {FORMAT})")
        try:
            violating = {m: {str(n): [float(v) for v in s] for n, s in payload["violating"][m].items()}
                         for m in MEMBER_MODES}
            safe = {m: {str(n): [float(v) for v in s] for n, s in payload["safe"][m].items()} for m in MEMBER_MODES}
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise HplanError(f"{path}: malformed calibration ({type(err).__name__}: {err})") from None
        for mode in violating.values():
            for name, scores in mode.items():
                if any(not math.isfinite(v) or not 0.0 <= v <= 1.0 for v in scores):
                    raise HplanError(f"{path}: violating.{name}: scores must be probabilities in [0, 1]")
        return cls(violating, safe, str(payload.get("source", "")), int(payload.get("transitions", 0)),
                   dict(payload.get("extra", {})))


def save_calibration(calibration: GuardrailCalibration, run_dir: str | Path) -> Path:
    path = Path(run_dir) / CALIBRATION_FILE
    write_json(path, calibration.to_json())
    return path


def load_calibration(run_dir: str | Path) -> GuardrailCalibration | None:
    """The run's calibration, or None when it has none (trained before calibration existed)."""
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    return GuardrailCalibration.from_json(read_json_object(path), str(path))


@torch.no_grad()
def calibrate_guardrails(model: Any, obs: np.ndarray, action: np.ndarray, violations: np.ndarray,
                         num_obs: np.ndarray, episodes: np.ndarray, source: str, max_transitions: int = 0,
                         seed: int = 0) -> GuardrailCalibration:
    """Head scores of every real transition of ``episodes`` (indices into ``obs (E, T+1, …)``,
    ``action (E, T, A)`` one-hot for discrete actions, ``violations (E, T, G)``, ``num_obs (E,)``
    real observations per episode). ``max_transitions > 0`` keeps a seeded sample of that many
    transitions (the label budget of calibration)."""
    episodes = np.asarray(episodes)
    counts = np.asarray(num_obs)[episodes]
    length = int(counts.max())
    z = model.encode_episodes(obs, episodes, length)
    device = z.device
    acts = torch.from_numpy(np.ascontiguousarray(action[episodes, :length - 1], dtype=np.float32)).to(device)
    rows = np.argwhere(np.arange(length - 1)[None, :] < (counts[:, None] - 1))  # (episode row, step) of real transitions
    if max_transitions and len(rows) > max_transitions:
        rows = rows[np.sort(np.random.default_rng(seed).choice(len(rows), max_transitions, replace=False))]
    e, t = torch.from_numpy(rows[:, 0]).to(device), torch.from_numpy(rows[:, 1]).to(device)
    labels = np.asarray(violations, dtype=bool)[episodes[rows[:, 0]], rows[:, 1]]
    violating: dict[str, dict[str, list[float]]] = {}
    safe: dict[str, dict[str, list[float]]] = {}
    for mode in MEMBER_MODES:
        probs = torch.cat([model.heads(z[e[i:i + 8192], t[i:i + 8192]], acts[e[i:i + 8192], t[i:i + 8192]],
                                       combine=mode) for i in range(0, len(e), 8192)]).cpu().numpy() \
            if len(e) else np.zeros((0, len(model.guardrail_names)))
        violating[mode], safe[mode] = {}, {}
        for g, name in enumerate(model.guardrail_names):
            hit = np.sort(probs[labels[:, g], g])
            rest = np.sort(probs[~labels[:, g], g])
            if len(rest) > SAFE_SAMPLE:
                rest = rest[np.linspace(0, len(rest) - 1, SAFE_SAMPLE).astype(int)]
            violating[mode][name] = [float(v) for v in hit]
            safe[mode][name] = [float(v) for v in rest]
    return GuardrailCalibration(violating, safe, source, int(len(rows)))


def calibrate_on_validation(model: Any, data: Any, max_transitions: int, seed: int) -> GuardrailCalibration:
    """:func:`calibrate_guardrails` on the validation episodes of a set-up
    :class:`~hplan.models.data.EpisodeDataModule` (never trained on, split by the training seed)."""
    ds = data.dataset
    return calibrate_guardrails(model, ds.obs, ds.action, ds.violations, data.num_obs, data.val_episodes,
                                f"{data.data_dir} (validation episodes)", max_transitions, seed)
