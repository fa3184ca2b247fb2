"""Every ``hplan`` command in the README runs, as written, with workloads shrunk to seconds.

The README is the user's guide; a command in it that no longer works is a bug. This test
extracts every ``hplan …`` line from the README's bash blocks and runs them in order in a scratch
folder (they build on each other: collect → train → run → replay → stress …). Only workload sizes
are substituted (the table below) — the subcommands, arguments and flags are the README's own.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TINY_SCENARIO = ROOT / "tests" / "fixtures" / "tiny_four_rooms.toml"
TINY_RESULTS = ROOT / "tests" / "fixtures" / "tiny_results.toml"

# (pattern, replacement): shrink workloads only.
SUBSTITUTIONS: tuple[tuple[str, str], ...] = (
    (r"^(hplan (?:collect|train|run)) point_four_rooms\b", rf"\1 {TINY_SCENARIO}"),
    (r"scenarios/point_four_rooms\.toml", str(TINY_SCENARIO)),
    (r"--episodes \d+", "--episodes 2"),
    (r"--workers \d+", "--workers 1"),
    (r"^hplan results", f"hplan results --definition {TINY_RESULTS}"),
    (r"--only two_rooms", "--only tiny_planning"),
)
# Extra flags appended per command prefix, to shrink what the README leaves at its defaults.
EXTRA_FLAGS: tuple[tuple[str, str], ...] = (
    ("hplan stress ", "--episodes 1 --max-steps 4"),
    ("hplan study run ", "--n-trials 1 --seeds 1 --episodes 1 --max-epochs 1 --collect-episodes 4 "
                         "--set env.max_steps=4 --set collect.steps_per_episode=16 --set planner.search.population=16 "
                         "--set planner.search.iterations=1 --set planner.codes.population=16 --set planner.codes.iterations=1 "
                         "--set train.guardrail_fit_steps=5 --set train.distance_fit_steps=5 "
                         "--set train.subgoal_fit_steps=5 --set train.predictor_fit_steps=5"),
    ("hplan demo", "--quick"),
)
# A stress suite's exit code is its verdict: 1 means "a threshold failed", which a model trained for
# seconds is expected to do. The command itself worked if it printed the verdict table.
VERDICT_PREFIXES = ("hplan stress ",)
SKIP_PREFIXES = (
    "hplan study run search --storage",  # needs a PostgreSQL server: covered by tests/test_studies_workers.py
    "hplan demo",                        # covered by tests/test_demo.py with an even smaller profile
)


def readme_commands() -> list[str]:
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("hplan "):
                commands.append(line)
    return commands


def shrink(command: str) -> str:
    for pattern, replacement in SUBSTITUTIONS:
        command = re.sub(pattern, replacement, command)
    for prefix, flags in EXTRA_FLAGS:
        if command.startswith(prefix):
            command = f"{command} {flags}"
    return command


def test_readme_has_commands_for_every_user() -> None:
    commands = readme_commands()
    for verb in ("collect", "train", "inspect", "run", "replay", "stress", "study run", "study show",
                 "study export", "study plots", "scenario check", "envs"):
        assert any(c.startswith(f"hplan {verb}") for c in commands), f"README shows no `hplan {verb}`"


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path: Path) -> None:
    for folder in ("scenarios", "stress", "studies"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    ran = []
    for original in readme_commands():
        if original.startswith(SKIP_PREFIXES):
            continue
        command = shrink(original)
        argv = [sys.executable, "-m", "hplan", *shlex.split(command)[1:]]
        result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        accepted = (0, 1) if command.startswith(VERDICT_PREFIXES) else (0,)
        if result.returncode == 1 and command.startswith(VERDICT_PREFIXES):
            assert "threshold(s) failed" in result.stderr, result.stderr
        assert result.returncode in accepted, (
            f"README command failed: {original}\n  ran: {command}\n  stdout: {result.stdout[-2000:]}\n"
            f"  stderr: {result.stderr[-2000:]}")
        ran.append(original)
    # The commands left real outputs behind, not just exit codes.
    assert (tmp_path / "runs/point_four_rooms/model.pt").exists()
    assert (tmp_path / "runs/point_four_rooms/collapse.png").exists()
    assert list((tmp_path / "runs/eval/replayable/episodes").glob("ep-*.jsonl"))
    assert (tmp_path / "runs/ep0.gif").stat().st_size > 0
    assert (tmp_path / "runs/stress-smoke/report.html").exists()
    assert (tmp_path / "runs/studies/smoke/trials.parquet").exists()
    assert len(ran) >= 15
