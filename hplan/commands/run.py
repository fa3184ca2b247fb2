"""``hplan run SCENARIO --checkpoint RUN_DIR``: seeded evaluation episodes with episode logs.

Everything is validated (scenario, env, checkpoint, choices, the output directory) before the
output directory is touched, so a mistake leaves nothing behind. Running into an earlier run's
directory replaces that run: its episode logs are removed first, so ``hplan replay --verify``
never checks a stale log of another run. Episodes are stepped together (``--lockstep``, see
:mod:`hplan.runner.lockstep`), each the same as when played alone. Writes ``episodes/ep-NNNN.jsonl`` (one log per
episode, replayable with ``hplan replay``), ``episodes.parquet`` and ``run.json`` to ``--out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from hplan.commands.options import SET_OPTION, SPLIT_OPTION, record_command
from hplan.config import MAX_SEED
from hplan.configio import MAX_MAGNITUDE


def run_command(
    scenario: str = typer.Argument(..., help="built-in scenario name or path to a scenario TOML file"),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="training run directory (holds model.pt)"),
    episodes: int = typer.Option(10, "--episodes", "-n", min=1, max=MAX_MAGNITUDE, help="seeded episodes to run"),
    planner: Optional[str] = typer.Option(None, "--planner", "-p",
                                          help="flat | hier (default: the scenario's \\[planner].kind)"),
    guardrails: Optional[str] = typer.Option(
        None, "--guardrails", "-g",
        help="on | off | penalty | hard | lagrangian (default: the scenario's \\[guardrails].mode; "
             "'on' keeps the file's mode, or penalty if it says off)"),
    seed: Optional[int] = typer.Option(None, "--seed", "-s", min=0, max=MAX_SEED, help="master seed (default: the scenario's)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="log directory (default: runs/eval/<scenario>/<planner>-<guardrails>-seed<S>)"),
    device: str = typer.Option("auto", "--device", help="torch device for the model and planner: auto, cpu, cuda"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                          help="torch CPU threads (default: torch's; 1 is fastest on a busy machine)"),
    lockstep: Optional[int] = typer.Option(
        None, "--lockstep", min=1,
        help="episodes stepped together, one batched model call for all (default: all episodes, at most 64; "
             "1: one at a time; each episode is the same either way)"),
    split: str = SPLIT_OPTION,
    set_: list[str] = SET_OPTION,
) -> None:
    """Run seeded episodes of env + planner; print success, violations and planning time per step."""
    from hplan.config import load_scenario
    from hplan.device import resolve_device
    from hplan.envs.factory import validate_scenario_env
    from hplan.io import check_out_dir
    from hplan.models.checkpoint import load_world_model
    from hplan.planning.energy import heeded_guardrails
    from hplan.runner import run_episodes, summarize, summary_table
    from hplan.runner.episodes import EPISODE_DIR, RUN_SUMMARY, clear_earlier_run
    from hplan.runner.settings import check_model_fits_scenario, resolve_guardrails, resolve_planner

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from hplan.errors import ConfigError
    from hplan.seeding import EVAL_SPLITS

    if split not in EVAL_SPLITS:
        raise ConfigError("--split", "", f"must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    config = load_scenario(scenario, sets=set_)
    validate_scenario_env(config)
    planner_cfg = resolve_planner(config.planner, planner, device)
    guard_cfg = resolve_guardrails(config.guardrails, guardrails)
    torch_device = resolve_device(device)
    model = load_world_model(checkpoint, device=torch_device, expect_env_id=config.env.id)
    check_model_fits_scenario(model, config, checkpoint)
    heeded_guardrails(guard_cfg.names, tuple(model.guardrail_names), config.source)  # fail before any episode
    master_seed = config.seed if seed is None else seed
    out_dir = out if out is not None else (
        Path("runs") / "eval" / config.name / f"{planner_cfg.kind}-{guard_cfg.mode}-{split}-seed{master_seed}")
    check_out_dir(out_dir, owns=(RUN_SUMMARY, EPISODE_DIR), what="hplan run")
    clear_earlier_run(out_dir)
    frame = run_episodes(config, model, planner_kind=planner_cfg.kind, guardrails=guard_cfg, episodes=episodes,
                         seed=master_seed, log_dir=out_dir, checkpoint=checkpoint, device=str(torch_device),
                         progress=True, split=split, overrides=tuple(set_), lockstep=lockstep)
    record_command(out_dir, set_)
    console = Console()
    label = f"{config.name} {planner_cfg.kind} guardrails={guard_cfg.mode}"
    console.print(summary_table([(label, summarize(frame))], title=f"{episodes} {split} episodes, seed {master_seed}, "
                                                                   f"device {torch_device}"))
    console.print(f"episode logs: {out_dir / 'episodes'}  (verify: hplan replay {out_dir} --verify)")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
