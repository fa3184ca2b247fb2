"""Bad inputs from issue 25: each is refused in one line (file and field), before any work.

Tiny workloads only: logs of a few steps from a greedy controller or an untrained checkpoint, the
synthetic study pipeline, no training.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from test_runner_support import TINY_PLANNER, make_greedy_agent, one_torch_thread, tiny_checkpoint, two_rooms  # noqa: F401

from hplan.runner import run_episodes
from hplan.runner.episodes import episode_log_path
from hplan.runner.logs import _chain
from cli_support import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rewrite(path: Path, edit: Callable[[list[dict[str, Any]]], None]) -> None:
    """Edit a log's JSON lines and recompute the chain (as a careful forger would)."""
    objects = [json.loads(line) for line in path.read_text().splitlines()]
    edit(objects)
    previous = ""
    for obj in objects:
        obj.pop("chain", None)
        obj["chain"] = previous = _chain(previous, obj)
    path.write_text("\n".join(json.dumps(o) for o in objects) + "\n")


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


# ------------------------------------------------------------------ item 7: replay --verify
@pytest.fixture(scope="module")
def greedy_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 6-step episode log of the greedy controller (no checkpoint recorded)."""
    root = tmp_path_factory.mktemp("greedy")
    run_episodes(two_rooms(max_steps=6), None, episodes=1, seed=0, log_dir=root, make_agent=make_greedy_agent)
    return episode_log_path(root, 0)


@pytest.mark.parametrize(("edit", "where"), [
    (lambda o: o[3].update(cost="x"), "line 4: 'cost': expected a number"),
    (lambda o: o[3].update(action="abc"), "line 4: 'action'"),
    (lambda o: o[3].update(plan=[1]), "line 4: 'plan': expected a table"),
    (lambda o: o[3].update(violations=[1]), "line 4: 'violations': expected a table"),
    (lambda o: o[0].update(scenario="x"), "line 1: 'scenario': expected a table"),
    (lambda o: o[0].update(env=[1]), "line 1: 'env': expected a table"),
    (lambda o: o[0].update(checkpoint_path=5), "line 1: 'checkpoint_path': expected a string"),
    (lambda o: o[1].update(violation_names=5), "line 2: 'violation_names': expected a list"),
    (lambda o: o[-1].update(final_geodesic="x"), "'final_geodesic': expected a number"),
])
def test_replay_verify_names_a_wrongly_typed_log_value(greedy_log: Path, tmp_path: Path, edit: Any, where: str,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ep.jsonl"
    shutil.copy(greedy_log, path)
    _rewrite(path, edit)
    code, out, err = run_cli(monkeypatch, capsys, "replay", str(path), "--verify")
    line = _one_line_error(code, err)
    assert str(path) in line and where in line
    assert "reproduced" not in out


def test_replay_verify_never_reports_a_skipped_agent_rerun_as_reproduced(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A forged plan with a recomputed chain passes the actions replay and the chain; with the
    checkpoint gone the agent cannot be re-run, so --verify must fail rather than say reproduced."""
    from hplan.models.checkpoint import load_world_model

    scenario = two_rooms(max_steps=6, planner=TINY_PLANNER)
    ckpt = tiny_checkpoint(tmp_path / "ckpt", scenario)
    run_episodes(scenario, load_world_model(ckpt, device="cpu"), planner_kind="hier", guardrails="penalty",
                 episodes=1, seed=4, log_dir=tmp_path / "run", checkpoint=ckpt, device="cpu")
    path = episode_log_path(tmp_path / "run", 0)
    _rewrite(path, lambda o: o[3]["plan"].update(subgoal_index=o[3]["plan"]["subgoal_index"] + 7))
    (ckpt / "model.pt").unlink()
    code, out, err = run_cli(monkeypatch, capsys, "replay", str(tmp_path / "run"), "--verify")
    line = _one_line_error(code, err)
    assert str(path) in line and "agent not re-run" in line and "not available" in line
    assert "0/1 episode logs reproduced" in out
    code, out, err = run_cli(monkeypatch, capsys, "replay", str(tmp_path / "run"), "--verify", "--actions-only")
    assert code == 0, err
    assert "reproduced" not in out and "agent not re-run: --actions-only" in out
