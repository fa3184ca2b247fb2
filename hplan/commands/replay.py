"""``hplan replay LOG [--verify] [--render out.gif]``: re-execute episode logs, check them, watch them.

``LOG`` is one episode log or a run directory (every ``*.jsonl`` below it). Without ``--verify``
the logged actions are re-executed and a divergence is only reported; with ``--verify`` the
first divergence (or a checkpoint whose hash changed) exits non-zero with one line naming the
file, step and field, and the agent itself is re-run when its checkpoint is available.
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
    """Re-execute logged episodes step by step; verify them and render GIFs."""
    from hplan.errors import HplanError, ReplayDivergence
    from hplan.render import EpisodeRenderer
    from hplan.replay import log_paths, replay_actions, verify_log
    from hplan.runner.logs import read_episode_log

    paths = log_paths(log)
    if render is not None and len(paths) != 1:
        raise HplanError(f"{log}: --render needs a single episode log, found {len(paths)}")
    console = Console()
    table = Table(title="replay" + (" --verify" if verify else ""))
    for heading in ("log", "steps", "success", "violating steps", "actions replay", "agent replay"):
        table.add_column(heading, justify="left" if heading == "log" else "right",
                         no_wrap=heading == "log", min_width=len(heading) if heading != "log" else None)
    failures: list[str] = []
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
        console.print(f"{len(paths) - len(failures)}/{len(paths)} episode logs reproduced")
    if failures:
        more = f" (and {len(failures) - 1} more diverging logs)" if len(failures) > 1 else ""
        raise ReplayDivergence(failures[0] + more)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_command)
