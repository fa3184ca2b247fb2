"""``hplan replay LOG [--verify] [--render out.gif]``: re-execute episode logs, check them, watch them.

``LOG`` is one episode log or a run directory (every ``*.jsonl`` below it). Without ``--verify``
the logged actions are re-executed and a divergence is only reported; with ``--verify`` the
first divergence (or a checkpoint whose hash changed) exits non-zero with one line naming the
file, step and field, and the agent itself is re-run.

What each check protects against: the actions replay catches any edit the environment can see;
the line chain catches edits made without recomputing it (anyone can recompute it: it is not a
signature); only the agent re-run catches a forged plan with a recomputed chain. So ``--verify``
never calls a log reproduced when the agent re-run could not happen (checkpoint missing, log
recorded on a GPU): it exits non-zero saying so, unless ``--actions-only`` asks for the weaker
check, and then the summary says which checks ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table


def replay_command(
    log: Path = typer.Argument(..., help="an episode log (.jsonl) or a directory of them (hplan run --out)"),
    verify: bool = typer.Option(False, "--verify", help="fail (exit 3) on the first step that does not reproduce"),
    render: Optional[Path] = typer.Option(None, "--render", help="write a GIF of the replayed episode"),
    actions_only: bool = typer.Option(False, "--actions-only",
                                      help="only re-execute the logged actions (skip re-running the agent)"),
    device: str = typer.Option("cpu", "--device", help="device for the agent replay (bit-exact on cpu)"),
    fps: float = typer.Option(10.0, "--fps", min=0.5, max=60.0, help="GIF frames per second"),
) -> None:
    """Re-execute logged episodes step by step; verify them and render GIFs.

    --verify runs three checks: the actions replay (catches any edit the environment can see), the
    hash chain over the log's lines (catches damage and edits that did not recompute it; anyone can
    recompute it, it is not a signature) and the agent re-run from the logged checkpoint and seed
    (the only check a forged plan with a recomputed chain cannot pass). A log is called reproduced
    only when all three ran."""
    from hplan.errors import HplanError, ReplayDivergence
    from hplan.io import check_out_file
    from hplan.render import EpisodeRenderer
    from hplan.replay import log_paths, replay_actions, verify_log
    from hplan.runner.logs import read_episode_log

    paths = log_paths(log)
    if render is not None and len(paths) != 1:
        raise HplanError(f"{log}: --render needs a single episode log, found {len(paths)}")
    if render is not None:
        check_out_file(render, option="--render")  # before the replay, not after it
    console = Console()
    table = Table(title="replay" + (" --verify" if verify else ""))
    for heading in ("log", "steps", "success", "violating steps", "actions replay", "agent replay"):
        table.add_column(heading, justify="left" if heading == "log" else "right",
                         no_wrap=heading == "log", min_width=len(heading) if heading != "log" else None)
    failures: list[str] = []
    unchecked: list[str] = []  # logs whose agent re-run was skipped in auto mode: not reproduced
    base = log if log.is_dir() else log.parent
    for path in paths:
        name = str(path.relative_to(base)) if path.is_relative_to(base) else path.name
        parsed = read_episode_log(path)
        renderer = EpisodeRenderer(max_steps=parsed.header.max_steps) if render is not None else None
        if verify:
            try:
                report = verify_log(path, mode="actions" if actions_only else "auto", device=device, frame=renderer)
            except ReplayDivergence as err:
                failures.append(str(err))
                table.add_row(name, str(parsed.record.num_steps), _yes(parsed.record.success),
                              str(parsed.record.violation_steps), "[red]diverged[/]", "–")
                continue
            agent = "[green]ok[/]" if report.agent_ok else report.agent_note
            actions = "[green]ok[/]"
            if report.agent_ok is None and not actions_only:
                unchecked.append(f"{path}: agent not re-run ({report.agent_note.removeprefix('skipped: ')})")
        else:
            problem = replay_actions(parsed, strict=False, frame=renderer)
            actions = "[green]ok[/]" if not problem else "[yellow]diverged[/]"
            agent = "not run (use --verify)"
            if problem:
                console.print(f"[yellow]warning:[/] {problem}", highlight=False, soft_wrap=True)
        table.add_row(name, str(parsed.record.num_steps), _yes(parsed.record.success),
                      str(parsed.record.violation_steps), actions, agent)
        if renderer is not None and render is not None:
            renderer.write_gif(render, fps=fps)
            console.print(f"wrote {render} ({len(renderer.frames)} frames)")
    console.print(table)
    if verify:
        passed = len(paths) - len(failures) - len(unchecked)
        if actions_only:
            console.print(f"{passed}/{len(paths)} episode logs pass the actions replay and line chain "
                          "(agent not re-run: --actions-only)")
        else:
            console.print(f"{passed}/{len(paths)} episode logs reproduced (actions replay, line chain and agent re-run)"
                          + (f"; {len(unchecked)} pass the actions replay and line chain only, the agent was not "
                             "re-run" if unchecked else ""))
    if failures:
        more = f" (and {len(failures) - 1} more diverging logs)" if len(failures) > 1 else ""
        raise ReplayDivergence(failures[0] + more)
    if unchecked:
        more = f" (and {len(unchecked) - 1} more such logs)" if len(unchecked) > 1 else ""
        raise HplanError(f"{unchecked[0]}{more}: its logged plans are unchecked (the agent re-run needs the "
                         "logged checkpoint, on CPU); pass --actions-only to accept the actions replay and line "
                         "chain alone")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_command)
