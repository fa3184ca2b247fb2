"""Diagnostics of the high level (the subgoal model and ``P_hi``), and the rule that flags a degenerate one.

A high level can look trained (its ELBO fell) and still be useless to a planner: ``P_hi`` may
predict "stay put" whatever the code, the prior may put every code on the same subgoal, or its
samples may land off the data manifold where no low level can follow. Each failure has a number,
measured on whole episodes the subgoal model never trained on:

* ``high_jump_err``: mean squared error of the k-step jump ``P_hi(z_t, m)`` with the code ``m``
  the posterior infers for the true transition, beside ``high_jump_err_nomove`` (predict
  ``z_t``) and ``high_jump_err_linear`` (a ridge regression of ``z_{t+k} − z_t`` on ``z_t`` and
  the k actions, fitted on the other half of the episodes); ``high_jump_skill`` is
  ``1 − err / err_nomove`` (0: no better than standing still).
* ``high_probe_r2_j<j>``: linear-probe R² of the true position ``j·k`` steps ahead from the
  subgoal predicted ``j`` jumps ahead (each jump's code inferred for the true path, the jumps
  rolled out from the *predicted* latent, so errors compound as in a plan); beside it
  ``high_probe_r2_nomove_j<L>``, the same probe on the current latent.
* ``high_prior_on_manifold``: the share of subgoals ``P_hi(z, ε)``, ``ε ~ N(0, I)`` (what a
  code-space planner samples), whose nearest real latent is no farther than 95 % of real
  held-out latents are from theirs; ``high_prior_reachable``: the share that is on the manifold
  *and* within ``REACH_JUMPS · k`` steps of ``z`` by the learned temporal distance.
* ``high_prior_spread``: mean distance between two prior subgoals from the same state, over the
  mean size of a real k-step jump (0: every code lands in the same place).
* ``high_active_codes``: code dimensions whose whitened posterior mean varies over the data by
  more than ``ACTIVE_VARIANCE`` (Burda et al. 2016's active units); ``high_code_kl``: mean KL of
  posterior to prior in nats.

:class:`HighLevelRule` turns the last epoch's numbers into a DEGENERATE / healthy verdict, the
way :mod:`hplan.diagnostics.collapse` does for the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from hplan.configio import meta
from hplan.diagnostics.collapse import Verdict, finite_number
from hplan.diagnostics.probes import fit_linear_probe, r2_score

REACH_JUMPS = 2.0
"""A prior subgoal counts as reachable within this many k-step jumps of learned temporal distance."""
ACTIVE_VARIANCE = 0.01
"""A code dimension is active when its whitened posterior mean varies more than this over the data."""
MANIFOLD_QUANTILE = 0.95
"""Prior subgoals count as on the manifold within this quantile of real latents' nearest-neighbour distance."""


@dataclass(frozen=True)
class EpisodeLatents:
    """Latents of whole episodes: ``z (E, L, D)``, ``action (E, L − 1, A)``, ``valid (E,)`` real
    latents per episode (``z[e, :valid[e]]``), ``pos (E, L, P)`` the true positions (or None)."""

    z: torch.Tensor
    action: torch.Tensor
    valid: torch.Tensor
    pos: torch.Tensor | None = None


def _pairs(valid: torch.Tensor, span: int, stride: int, episodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(episode, start)`` of every ``stride``-th start with ``start + span`` still valid."""
    rows = [(int(e), t) for e in episodes.tolist() for t in range(0, int(valid[e]) - span, stride)]
    if not rows:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    ep, start = torch.tensor(rows, dtype=torch.long).T
    return ep, start


def _chunks(action: torch.Tensor, ep: torch.Tensor, start: torch.Tensor, k: int) -> torch.Tensor:
    return action[ep[:, None], start[:, None] + torch.arange(k)]


def _ridge(x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """Least squares with an intercept and a small ridge, fitted on ``(x, y)``, applied to ``x_test``."""
    x, y, x_test = x.double(), y.double(), x_test.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-12)
    xs = torch.cat([(x - mean) / std, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    gram = xs.T @ xs + ridge * len(x) * torch.eye(xs.shape[1], dtype=x.dtype)
    weight = torch.linalg.solve(gram, xs.T @ y)
    xt = torch.cat([(x_test - mean) / std, torch.ones(len(x_test), 1, dtype=x.dtype)], 1)
    return xt @ weight


@torch.no_grad()
def high_level_metrics(model: Any, data: EpisodeLatents, *, jumps: int = 4, stride: int = 4,
                       prior_samples: int = 8, max_queries: int = 512, bank_size: int = 4096,
                       seed: int = 0) -> dict[str, float]:
    """The high-level diagnostics of the module docstring, on ``data`` (held out from the subgoal model).

    Episodes alternate between the *fit* half (the linear baseline, the position probe, the
    bank of real latents) and the *scored* half (every figure). ``model`` needs ``subgoal``
    (``jump``, ``step``, ``prior_code``, ``posterior_code``), ``subgoal_interval`` and
    ``temporal_distance``. Figures that need more data than there is are left out.
    """
    sub, k = model.subgoal, int(model.subgoal_interval)
    device = next(sub.parameters()).device
    z, action, valid = data.z.float().cpu(), data.action.float().cpu(), data.valid.long().cpu()
    episodes = torch.arange(len(z))
    fit_eps, test_eps = episodes[episodes % 2 == 0], episodes[episodes % 2 == 1]
    out: dict[str, float] = {}
    gen = torch.Generator().manual_seed(seed)

    def on(x: torch.Tensor) -> torch.Tensor:
        return x.to(device)

    fe, fs = _pairs(valid, k, stride, fit_eps)
    te, ts = _pairs(valid, k, stride, test_eps)
    if len(fe) < 2 or len(te) < 2:
        return out
    z_t, z_tk, acts = z[te, ts], z[te, ts + k], _chunks(action, te, ts, k)
    mu_q, logstd_q = sub.posterior_code(on(z_t), on(z_tk), on(acts))
    pred = sub.jump(on(z_t), mu_q).cpu()
    err = (pred - z_tk).pow(2).sum(-1).mean()
    nomove = (z_t - z_tk).pow(2).sum(-1).mean()
    fit_x = torch.cat([z[fe, fs], _chunks(action, fe, fs, k).flatten(1)], 1)
    linear = z_t + _ridge(fit_x, z[fe, fs + k] - z[fe, fs], torch.cat([z_t, acts.flatten(1)], 1)).float()
    out["high_jump_err"], out["high_jump_err_nomove"] = float(err), float(nomove)
    out["high_jump_err_linear"] = float((linear - z_tk).pow(2).sum(-1).mean())
    out["high_jump_skill"] = float(1.0 - err / nomove.clamp_min(1e-12))

    mu_p, logstd_p = sub.prior_code(on(z_t))
    whitened = ((mu_q - mu_p) / torch.exp(logstd_p)).cpu()
    out["high_active_codes"] = float((whitened.var(0) > ACTIVE_VARIANCE).sum()) if len(whitened) > 1 else 0.0
    var_q, var_p = torch.exp(2 * logstd_q), torch.exp(2 * logstd_p)
    kl = (logstd_p - logstd_q + (var_q + (mu_q - mu_p).pow(2)) / (2 * var_p) - 0.5).sum(-1)
    out["high_code_kl"] = float(kl.mean())

    # prior samples: spread, on the manifold, reachable
    pick = torch.randperm(len(z_t), generator=gen)[:max_queries]
    queries = z_t[pick]
    codes = torch.randn(len(queries), prior_samples, sub.code_dim, generator=gen)
    subgoals = sub.step(on(queries)[:, None].expand(-1, prior_samples, -1), on(codes)).cpu()  # (Q, S, D)
    jump_size = (z_tk - z_t).norm(dim=-1).mean().clamp_min(1e-12)
    if prior_samples > 1:
        pairwise = torch.cdist(subgoals, subgoals)
        off = pairwise.sum((1, 2)) / (prior_samples * (prior_samples - 1))
        out["high_prior_spread"] = float(off.mean() / jump_size)
    bank = torch.cat([z[e, :int(valid[e])] for e in fit_eps.tolist()])
    bank = bank[torch.randperm(len(bank), generator=gen)[:bank_size]]
    real = torch.cat([z[e, :int(valid[e])] for e in test_eps.tolist()])
    real = real[torch.randperm(len(real), generator=gen)[:max_queries]]
    radius = torch.quantile(torch.cdist(real, bank).min(1).values, MANIFOLD_QUANTILE)
    nearest = torch.cdist(subgoals.flatten(0, 1), bank).min(1).values
    near = nearest <= radius
    steps = model.temporal_distance(on(queries)[:, None].expand_as(subgoals.to(device)), on(subgoals)).cpu().flatten()
    out["high_prior_on_manifold"] = float(near.float().mean())
    out["high_prior_reachable"] = float((near & (steps <= REACH_JUMPS * k)).float().mean())

    if data.pos is not None:
        pos = data.pos.float().cpu()
        probe = fit_linear_probe(torch.cat([z[e, :int(valid[e])] for e in fit_eps.tolist()]),
                                 torch.cat([pos[e, :int(valid[e])] for e in fit_eps.tolist()]))
        for j in range(1, jumps + 1):
            je, js = _pairs(valid, j * k, stride, test_eps)
            if len(je) < 2:
                break
            current = on(z[je, js])
            for i in range(j):
                at = js + (i + 1) * k
                mu, _ = sub.posterior_code(current, on(z[je, at]), on(_chunks(action, je, at - k, k)))
                current = sub.jump(current, mu)
            target = pos[je, js + j * k]
            out[f"high_probe_r2_j{j}"] = r2_score(probe(current.cpu()), target)
            if j == jumps:
                out[f"high_probe_r2_nomove_j{j}"] = r2_score(probe(z[je, js]), target)
    return out


@dataclass(frozen=True)
class HighLevelRule:
    """Thresholds of the degenerate-high-level flag (see the module docstring)."""

    skill_floor: float = field(default=0.2, metadata=meta(
        "degenerate if P_hi removes less than this share of the no-move jump error", le=1))
    spread_floor: float = field(default=0.1, metadata=meta(
        "degenerate if two prior subgoals from one state differ by less than this share of a real jump", ge=0))
    min_active_codes: int = field(default=1, metadata=meta("degenerate if fewer code dimensions are active", ge=0))

    def describe(self) -> str:
        return (f"high level degenerate when, at the last epoch, high_jump_skill < {self.skill_floor:g}, "
                f"high_prior_spread < {self.spread_floor:g} or high_active_codes < {self.min_active_codes}")


@dataclass(frozen=True)
class HighLevelVerdict(Verdict):
    FLAG = "DEGENERATE"
    SUBJECT = "high level"

    @property
    def degenerate(self) -> bool:
        return self.flagged


def high_level_verdict(metrics: Mapping[str, Any] | Sequence[Mapping[str, Any]], prefix: str = "val/",
                       rule: HighLevelRule = HighLevelRule()) -> HighLevelVerdict | None:
    """Apply :class:`HighLevelRule` to one row of metrics (or the last row that has them) — None
    when no row carries the high-level figures (a run trained before they were logged)."""
    rows = [metrics] if isinstance(metrics, Mapping) else list(metrics)
    rows = [r for r in rows if finite_number(r.get(f"{prefix}high_jump_skill")) is not None]
    if not rows:
        return None
    row = rows[-1]
    signs = []
    skill = finite_number(row.get(f"{prefix}high_jump_skill"))
    if skill is not None and skill < rule.skill_floor:
        signs.append(f"jump skill {skill:.3f} < {rule.skill_floor:g} (P_hi barely beats standing still)")
    spread = finite_number(row.get(f"{prefix}high_prior_spread"))
    if spread is not None and spread < rule.spread_floor:
        signs.append(f"prior spread {spread:.3f} < {rule.spread_floor:g} (every code lands in one place)")
    active = finite_number(row.get(f"{prefix}high_active_codes"))
    if active is not None and active < rule.min_active_codes:
        signs.append(f"{int(active)} active code dimensions < {rule.min_active_codes}")
    return HighLevelVerdict(bool(signs), tuple(signs))
