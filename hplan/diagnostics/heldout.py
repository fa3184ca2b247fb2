"""Evaluate a trained world model on a held-out dataset (e.g. collected with another seed).

The figures the model issue asks for, measured outside training on data the model never saw:

* ``probe_r2``: linear probe of the true position from ``z`` (fit on even episodes, scored on odd);
* ``probe_r2_pred``: the same probe applied to latents predicted open-loop ``horizon`` steps ahead;
* ``probe_r2_pred_delta``: the same on the predicted displacement over those steps (a predictor
  that ignores its actions scores well on the line above and near zero here);
* ``auroc_<name>``, ``ece_<name>``: guardrail heads P(violation at the next step | z_t, a_t) against
  what happened — ranking, and calibration (expected calibration error, 10 bins);
* ``miss_rate_at_risk_<name>``, ``safe_flagged_at_risk_<name>`` (a calibrated model): the share of
  violating transitions under the head's conformal threshold for δ = ``risk`` (at most δ when the
  data are exchangeable with the calibration's) and the share of safe ones it flags;
* ``distance_spearman_geodesic``: rank correlation of ``temporal_distance`` with the true
  shortest-path distance (when a geodesic function is given), next to the same number for the
  straight-line distance — a useful planning cost around walls tracks the geodesic better than
  the straight line does;
* ``latent_<metric>``: the collapse metrics of the held-out latents (effective rank, per-dimension
  standard deviations, off-diagonal correlation, nearest-neighbour diversity; see
  :mod:`hplan.diagnostics.collapse`) on up to ``COLLAPSE_ROWS`` observations — what the collapse
  regularisers are compared on, measured where no training loss looked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hplan.data.shards import MANIFEST, load_episodes, read_manifest
from hplan.diagnostics.collapse import collapse_metrics
from hplan.diagnostics.high_level import EpisodeLatents, high_level_metrics
from hplan.diagnostics.probes import fit_linear_probe, r2_score
from hplan.errors import HplanError
from hplan.metrics.scores import auroc, expected_calibration_error, spearman
from hplan.seeding import derive_seed

Geodesic = Callable[[np.ndarray, np.ndarray], float]


COLLAPSE_ROWS = 2048
"""Held-out observations the collapse metrics are computed on (their nearest-neighbour diversity
takes all pairwise distances, so not every observation)."""


def layout_geodesic(env: object) -> Geodesic | None:
    """The env's shortest-path distance in steps when every episode shares its layout; None where the
    layout changes per episode (generated mazes): one env's map says nothing of another episode's."""
    worlds = getattr(env, "worlds", None)
    if worlds is not None and getattr(worlds, "generated", False):
        return None
    return getattr(env, "geodesic_steps", None)


def check_dataset_fits(model, data_dir: str | Path) -> None:
    """The dataset must come from the env, observations, actions and guardrails the model was trained
    on; one line naming its manifest otherwise (another env's dataset was a shape traceback)."""
    path = Path(data_dir) / MANIFEST
    manifest = read_manifest(data_dir)
    problems = []
    env_id = str(manifest.get("env_id", ""))
    if env_id and model.env_id and env_id != model.env_id:
        problems.append(f"env_id: collected on {env_id!r}, the model was trained on {model.env_id!r}")
    shape = manifest.get("obs_shape")
    if isinstance(shape, list) and tuple(shape) != tuple(model.obs_shape):
        problems.append(f"obs_shape: {tuple(shape)} ({manifest.get('obs_mode', '?')}), the model reads "
                        f"{model.obs_kind} observations {tuple(model.obs_shape)}")
    dim = (manifest.get("action_spec") or {}).get("dim") if isinstance(manifest.get("action_spec"), dict) else None
    if isinstance(dim, int) and dim != model.action_spec.dim:
        problems.append(f"action_spec.dim: {dim}, the model acts in {model.action_spec.dim} dimensions")
    names = manifest.get("violation_names")
    if isinstance(names, list) and list(names) != list(model.guardrail_names):
        problems.append(f"violation_names: {names}, the model's guardrail heads are {list(model.guardrail_names)}")
    if problems:
        raise HplanError(f"{path}: {problems[0]}; evaluate on a dataset collected from the model's scenario")


@torch.no_grad()
def evaluate_heldout(model, data_dir: str | Path, *, horizon: int = 8, max_episodes: int = 200,
                     geodesic: Geodesic | None = None, distance_pairs: int = 4000, seed: int = 0,
                     risk: float = 0.05) -> dict[str, float]:
    """Held-out metrics of ``model`` (a ``LatentWorldModel``) on ``data_dir``; with a guardrail
    calibration, each head's miss rate and false-alarm rate at its conformal threshold for ``risk``."""
    check_dataset_fits(model, data_dir)
    data = load_episodes(data_dir, max_episodes=max_episodes)
    obs, pos = data["obs"], data["true_state"][..., :2].astype(np.float32)
    _, action = data.model_actions()
    n_ep, steps = action.shape[:2]
    device = model.device
    z = model.encode_episodes(obs, np.arange(n_ep), steps + 1).cpu()
    pos_t = torch.from_numpy(pos)
    even = torch.arange(n_ep) % 2 == 0
    probe = fit_linear_probe(z[even].flatten(0, 1), pos_t[even].flatten(0, 1))
    out = {"episodes": float(n_ep), "probe_r2": r2_score(probe(z[~even].flatten(0, 1)), pos_t[~even].flatten(0, 1))}

    if steps >= horizon:
        starts = torch.arange(0, steps - horizon + 1, 4)
        odd = torch.nonzero(~even).flatten()
        z0 = z[odd][:, starts]  # (E_odd, S, D)
        acts = torch.from_numpy(action)[odd][:, starts[:, None] + torch.arange(horizon)]  # (E_odd, S, H, A)
        pred = model.predict(z0.to(device), acts.to(device))[..., -1, :].cpu()
        out[f"probe_r2_pred{horizon}"] = r2_score(probe(pred.flatten(0, 1)), pos_t[odd][:, starts + horizon].flatten(0, 1))
        moved = pos_t[odd][:, starts + horizon] - pos_t[odd][:, starts]
        out[f"probe_r2_pred{horizon}_delta"] = r2_score((probe(pred) - probe(z0)).flatten(0, 1), moved.flatten(0, 1))

    valid = torch.from_numpy(data["valid"].astype(bool))
    probs = model.heads(z[:, :-1].to(device), torch.from_numpy(action).to(device)).cpu()
    calibration = getattr(model, "calibration", None)
    at_risk = calibration.report(risk) if calibration is not None else {}
    for i, name in enumerate(model.guardrail_names):
        labels = data["violations"][..., i].astype(bool)[valid.numpy()]
        out[f"auroc_{name}"] = auroc(probs[..., i][valid].numpy(), labels)
        out[f"ece_{name}"] = expected_calibration_error(probs[..., i][valid].numpy(), labels)
        out[f"positives_{name}"] = float(labels.sum())
        tau = at_risk.get(f"threshold_{name}", float("nan"))
        if np.isfinite(tau) and labels.any():
            # the conformal promise checked on data the calibration never saw: violations under τ(δ)
            scores = probs[..., i][valid].numpy()
            out[f"miss_rate_at_risk_{name}"] = float((scores[labels] < tau).mean())
            out[f"safe_flagged_at_risk_{name}"] = float((scores[~labels] >= tau).mean()) if (~labels).any() else np.nan

    real = torch.from_numpy(data.num_obs)
    observed = z[torch.arange(z.shape[1])[None, :] < real[:, None]]  # (N, D): each episode's real frames
    rows = torch.randperm(len(observed), generator=torch.Generator().manual_seed(derive_seed(seed, "collapse")))
    out.update({f"latent_{k}": v for k, v in collapse_metrics(observed[rows[:COLLAPSE_ROWS]]).items()})
    high = EpisodeLatents(z, torch.from_numpy(action), real, pos_t)
    out.update(high_level_metrics(model, high, seed=derive_seed(seed, "high-level-metrics")))

    if geodesic is not None:
        rng = np.random.default_rng(derive_seed(seed, "distance-pairs"))
        e = rng.integers(0, n_ep, (distance_pairs, 2))
        t = rng.integers(0, steps + 1, (distance_pairs, 2))
        za, zb = z[e[:, 0], t[:, 0]], z[e[:, 1], t[:, 1]]
        pa, pb = pos[e[:, 0], t[:, 0]], pos[e[:, 1], t[:, 1]]
        true = np.array([geodesic(a, b) for a, b in zip(pa, pb)], dtype=np.float64)
        ok = np.isfinite(true)
        learned = model.temporal_distance(za.to(device), zb.to(device)).cpu().numpy()
        straight = np.linalg.norm(pa - pb, axis=1)
        out["distance_spearman_geodesic"] = spearman(learned[ok], true[ok])
        out["straight_line_spearman_geodesic"] = spearman(straight[ok], true[ok])
        detour = ok & (true > 1.3 * straight + 1.0)  # pairs a wall forces around
        if detour.sum() > 10:
            out["distance_spearman_geodesic_detour"] = spearman(learned[detour], true[detour])
            out["straight_line_spearman_geodesic_detour"] = spearman(straight[detour], true[detour])
    return out
