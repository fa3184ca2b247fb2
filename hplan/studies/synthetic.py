"""A synthetic pipeline: analytic metrics of the scenario settings, in milliseconds.

It exists to test and benchmark the study machinery — storages, workers, heartbeats and retries,
constraints, pruning, exports — without collecting data or training a model. It still walks the
same path as the real pipeline: a cached "dataset" keyed like real data, a per-epoch validation
loss reported through :class:`~hplan.studies.pipeline.TrialMonitor`, a ``metrics.csv`` and an
episode table with the runner's columns, drawn from a seeded generator.

The landscape is deliberately shaped like the real questions: hierarchical beats flat, JEPA
regularisers beat none, longer horizons help with diminishing returns, and guardrails trade a
little success for far fewer violations (so a violation-rate constraint binds).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from hplan.io import write_dataframe
from hplan.seeding import derive_seed
from hplan.studies.pipeline import SeedContext, SeedResult, cached_dataset

_REGULARIZER_QUALITY = {"vicreg": 0.12, "sigreg": 0.14, "ema": 0.08, "recon": 0.02, "none": -0.25}


def quality(scenario) -> tuple[float, float]:  # noqa: ANN001 - ScenarioConfig, imported lazily
    """Analytic (success probability, per-episode violation probability) of a scenario."""
    model, planner, guard = scenario.model, scenario.planner, scenario.guardrails
    success = 0.45
    success += 0.18 if planner.kind == "hier" else 0.0
    success += _REGULARIZER_QUALITY.get(model.regularizer, 0.0)
    success += 0.06 * math.tanh(math.log(planner.horizon / 12.0))
    success += 0.04 * math.tanh(math.log(planner.search.population / 128.0))
    success -= 0.02 * (math.log(model.latent_dim / 32.0)) ** 2
    violation = {"off": 0.35, "penalty": 0.35 * math.exp(-guard.weight / 4.0),
                 "hard": 0.02 + 0.1 * guard.threshold ** 2, "lagrangian": 0.05}[guard.mode]
    success -= {"off": 0.0, "penalty": 0.004 * guard.weight, "hard": 0.05, "lagrangian": 0.03}[guard.mode]
    return float(np.clip(success, 0.02, 0.98)), float(np.clip(violation, 0.0, 1.0))


def _collect(scenario, data_dir) -> None:  # noqa: ANN001
    # Here, not at the top: hplan.data.shards imports torch (through ActionSpec), and the study
    # workers import this pipeline at module level; a synthetic study needs no torch.
    from hplan.data.shards import write_manifest

    write_manifest(data_dir, {"synthetic": True, "complete": True, "shards": [],
                              "episodes": scenario.collect.episodes})


def synthetic_pipeline(ctx: SeedContext) -> SeedResult:
    cfg = ctx.study.synthetic
    data_dir, reused = cached_dataset(ctx.data_scenario, ctx.cache_dir, _collect)
    p_success, p_violation = quality(ctx.scenario)
    rng = np.random.default_rng(derive_seed(ctx.seed, "synthetic"))

    rows = []
    final_loss = 1.0 - p_success
    for epoch in range(cfg.epochs):
        if cfg.epoch_seconds:
            time.sleep(cfg.epoch_seconds)
        loss = (1.0 - p_success) * (1.0 + 2.0 / (epoch + 1)) + cfg.noise * float(rng.standard_normal())
        rows.append({"epoch": epoch, "val/loss": loss})
        final_loss = loss
        ctx.monitor.report(epoch, loss)
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    write_dataframe(ctx.run_dir / "metrics.csv", pd.DataFrame(rows))

    n = ctx.study.episodes_per_seed
    p_s = float(np.clip(p_success + cfg.noise * rng.standard_normal(), 0.0, 1.0))
    success = rng.random(n) < p_s
    violated = rng.random(n) < p_violation
    budget = ctx.scenario.env.max_steps  # a scenario with fewer than 20 steps once made every trial a ValueError
    steps = np.where(success, rng.integers(min(20, budget), budget + 1, n), budget)
    violation_steps = np.where(violated, rng.integers(1, 5, n), 0)
    episodes = pd.DataFrame({
        "episode": np.arange(n), "seed": [derive_seed(ctx.seed, "episode", i) for i in range(n)],
        "success": success, "steps": steps, "violation_steps": violation_steps,
        "plan_ms": rng.uniform(1.0, 2.0, n),
    })
    return SeedResult(episodes=episodes, train={"val/loss": final_loss}, model_dir=ctx.run_dir,
                      data_dir=data_dir, data_reused=reused)
