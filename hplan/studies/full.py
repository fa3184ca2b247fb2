"""The real pipeline behind a study trial: collect (cached) → train (Lightning) → run → stress.

Per seed: the dataset comes from the study's cache (collected once per env/task/collect settings
at the study's base seed, shared by every trial and seed that asks for the same data); the world
model comes from the study's model cache, keyed by dataset + [model] + [train] + seed, so trials
that differ only in planner or guardrail settings (the flat-vs-hierarchical and guardrail
ablations, planner searches) train each model once — a fresh model trains with the trial's
pruning callbacks, a reused one reports nothing to the pruner; evaluation episodes run
through :func:`hplan.runner.run_episodes` with their logs in ``seed-i/episodes`` (so
``hplan replay`` can verify any of them); and an optional stress suite runs on the trained model
into ``seed-i/stress``.

The stress suite's scenarios keep their own planner settings (the suite file names them); only
the checkpoint is the trial's, so ``stress_*`` metrics measure the trial's model, not its planner.
"""

from __future__ import annotations

import math

import pandas as pd

from hplan.configio import to_mapping
from hplan.io import file_lock
from hplan.studies.pipeline import SeedContext, SeedResult, cached_dataset, code_fingerprint


def model_key(scenario, data_dir) -> str:  # noqa: ANN001 - ScenarioConfig, Path
    """Cache key of a trained model: its dataset, architecture, training settings, seed and model code."""
    import hashlib
    import json

    train = {k: v for k, v in to_mapping(scenario.train).items() if k != "device"}
    text = json.dumps({"data": str(data_dir.name), "model": to_mapping(scenario.model), "train": train,
                       "seed": scenario.seed, "env": to_mapping(scenario.env),
                       "code": code_fingerprint("models", "diagnostics")}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _collect(scenario, data_dir) -> None:  # noqa: ANN001 - ScenarioConfig, Path
    from hplan.data.collect import collect

    collect(scenario, data_dir)


def last_epoch_metrics(run_dir) -> dict[str, float]:  # noqa: ANN001
    """The last row of a run's ``metrics.csv`` (per-epoch losses and collapse metrics)."""
    path = run_dir / "metrics.csv"
    if not path.exists():
        return {}
    frame = pd.read_csv(path)
    if frame.empty:
        return {}
    row = frame.iloc[-1].to_dict()
    return {str(k): float(v) for k, v in row.items() if isinstance(v, (int, float)) and not math.isnan(float(v))}


def full_pipeline(ctx: SeedContext) -> SeedResult:
    from hplan.models.checkpoint import load_world_model
    from hplan.models.training import train_world_model
    from hplan.runner import run_episodes

    data_dir, reused = cached_dataset(ctx.data_scenario, ctx.cache_dir, _collect)
    model_dir = ctx.cache_dir.parent / "models" / model_key(ctx.scenario, data_dir)
    with file_lock(model_dir.with_suffix(".lock")):
        if not (model_dir / "model.pt").exists():
            # (an interrupted or pruned earlier run resumes from its last checkpoint)
            train_world_model(ctx.scenario, data_dir, model_dir, callbacks=ctx.monitor.lightning_callbacks())
            ctx.monitor.after_fit()
    train = last_epoch_metrics(model_dir)

    model = load_world_model(model_dir, device=ctx.scenario.planner.device, expect_env_id=ctx.scenario.env.id)
    # a study chooses settings, so it plays the validation episodes; reports use `test`
    episodes = run_episodes(ctx.scenario, model, episodes=ctx.study.episodes_per_seed, seed=ctx.seed,
                            log_dir=ctx.run_dir / "episodes", split="val", checkpoint=model_dir)  # replayable
    stress = None
    if ctx.study.stress_suite is not None:
        from hplan.stress.api import run_suite

        outcome = run_suite(ctx.study.stress_suite, out_dir=ctx.run_dir / "stress", checkpoint=model_dir,
                            report=False)
        stress = outcome.episodes
    return SeedResult(episodes=episodes, train=train, stress=stress, model_dir=model_dir, data_dir=data_dir,
                      data_reused=reused)
