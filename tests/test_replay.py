"""Replay: logged episodes re-execute exactly; tampering, truncation and model changes are caught."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import pytest
from cli_support import TINY_TWO_ROOMS_TOML
from test_runner_support import TINY_PLANNER, make_greedy_agent, one_torch_thread, tiny_checkpoint, toml_lines, two_rooms  # noqa: F401

from hplan.errors import CheckpointError, ConfigError, HplanError, ReplayDivergence
from hplan.replay import log_paths, replay_actions, verify_log
from hplan.runner import read_episode_log, run_episodes
from hplan.runner.episodes import episode_log_path
from hplan.runner.logs import _chain

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 8


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two episodes of the real hierarchical agent on an untrained tiny checkpoint, with logs."""
    import torch

    from hplan.models.checkpoint import load_world_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("replay")
        scenario = two_rooms(max_steps=STEPS, planner=TINY_PLANNER)
        ckpt = tiny_checkpoint(root / "ckpt", scenario)
        model = load_world_model(ckpt, device="cpu")
        run_episodes(scenario, model, planner_kind="hier", guardrails="penalty", episodes=2, seed=4,
                     log_dir=root / "run", checkpoint=ckpt, device="cpu")
    finally:
        torch.set_num_threads(threads)
    return root / "run", ckpt


def _copy_log(logged_run: tuple[Path, Path], tmp_path: Path, episode: int = 0) -> Path:
    target = tmp_path / f"ep-{episode}.jsonl"
    shutil.copy(episode_log_path(logged_run[0], episode), target)
    return target


def _edit(path: Path, t: int, edit: Any, *, rechain: bool = False) -> None:
    """Apply ``edit(step_dict)`` to step ``t``; with ``rechain`` recompute every chain digest
    (a careful forger), so only re-execution can catch the change."""
    objects = [json.loads(line) for line in path.read_text().splitlines()]
    step = next(o for o in objects if o["type"] == "step" and o["t"] == t)
    edit(step)
    _write(path, objects, rechain=rechain)


def _write(path: Path, objects: list[dict[str, Any]], *, rechain: bool = True) -> None:
    if rechain:
        previous = ""
        for obj in objects:
            obj.pop("chain")
            obj["chain"] = previous = _chain(previous, obj)
    path.write_text("\n".join(json.dumps(o) for o in objects) + "\n")


def test_every_logged_episode_replays_exactly_with_the_agent(logged_run: tuple[Path, Path]) -> None:
    paths = log_paths(logged_run[0])
    assert len(paths) == 2
    for path in paths:
        report = verify_log(path)
        assert report.verified and report.agent_ok is True and report.steps == STEPS


def _flat_planner(nested: dict[str, Any]) -> dict[str, Any]:
    """A planner table as the code before the nesting recorded it: one flat table, removed knobs included."""
    from hplan.planning.migration import MOVED, REMOVED

    def at(path: str) -> Any:
        if path in REMOVED:  # a knob that became a constant after the nesting: recorded at that value
            return REMOVED[path].value
        section, key = path.split(".")
        return nested[section][key]

    kept = {key: value for key, value in nested.items() if not isinstance(value, dict)}
    removed = {key: r.value for key, r in REMOVED.items() if "." not in key}
    return {**kept, **{old: at(new) for old, new in MOVED.items()}, **removed}


def test_a_log_recorded_before_the_planner_was_nested_replays_with_the_agent(logged_run: tuple[Path, Path],
                                                                             tmp_path: Path) -> None:
    path = _copy_log(logged_run, tmp_path)
    objects = [json.loads(line) for line in path.read_text().splitlines()]
    header = objects[0]
    assert isinstance(header["planner"]["search"], dict)  # recorded nested today
    header["planner"] = _flat_planner(header["planner"])
    header["scenario"]["planner"] = _flat_planner(header["scenario"]["planner"])
    _write(path, objects)
    report = verify_log(path)
    assert report.verified and report.agent_ok is True and report.steps == STEPS


def _bump_action(step: dict[str, Any]) -> None:
    step["action"] = [-v if abs(v) > 0.05 else 0.9 for v in step["action"]]


def _bump_state(step: dict[str, Any]) -> None:
    step["true_state"][0] += 0.25


def _flip_cost(step: dict[str, Any]) -> None:
    step["cost"] = 1.0 - step["cost"]


def _change_digest(step: dict[str, Any]) -> None:
    step["obs_sha256"] = "0" * 64


@pytest.mark.parametrize(("edit", "field"), [
    (_bump_action, "true_state"),  # the logged action no longer produces the logged state
    (_bump_state, "true_state"),
    (_flip_cost, "cost"),
    (_change_digest, "obs_sha256"),
])
def test_tampered_step_is_named_by_the_actions_replay(logged_run: tuple[Path, Path], tmp_path: Path,
                                                      edit: Any, field: str) -> None:
    path = _copy_log(logged_run, tmp_path)
    _edit(path, 5, edit, rechain=True)
    with pytest.raises(ReplayDivergence, match=rf"step 5 \(line 8\): {field} diverges") as err:
        verify_log(path, mode="actions")
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_edit_invisible_to_the_env_is_caught_by_the_chain(logged_run: tuple[Path, Path], tmp_path: Path) -> None:
    path = _copy_log(logged_run, tmp_path)
    _edit(path, 3, lambda s: s["plan"]["guardrail_probs"].update(wall_contact=0.0))
    assert replay_actions(read_episode_log(path)) == ""  # the env cannot see it...
    with pytest.raises(ReplayDivergence, match=r"step 3 \(line 6\): content digest mismatch"):
        verify_log(path, mode="actions")


def test_forged_plan_with_valid_chain_is_caught_by_the_agent_replay(logged_run: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    path = _copy_log(logged_run, tmp_path)
    _edit(path, 2, lambda s: s["plan"].update(subgoal_index=s["plan"]["subgoal_index"] + 7), rechain=True)
    verify_log(path, mode="actions")  # env-visible fields and chain are consistent
    with pytest.raises(ReplayDivergence, match=r"step 2 \(line 5\): plan.subgoal_index diverges"):
        verify_log(path, mode="agent")


def test_agent_that_chooses_differently_is_a_divergence(logged_run: tuple[Path, Path], tmp_path: Path) -> None:
    path = _copy_log(logged_run, tmp_path)
    with pytest.raises(ReplayDivergence, match=r"step 0 \(line 3\): action diverges .* the agent chose differently"):
        verify_log(path, mode="agent", make_agent=make_greedy_agent)


def test_divergence_after_a_code_change_says_so(logged_run: tuple[Path, Path], tmp_path: Path) -> None:
    path = _copy_log(logged_run, tmp_path)
    objects = [json.loads(line) for line in path.read_text().splitlines()]
    assert objects[0]["source_sha256"]  # recorded by the runner
    with pytest.raises(ReplayDivergence) as same_code:
        verify_log(path, mode="agent", make_agent=make_greedy_agent)
    assert "source code changed" not in str(same_code.value)
    objects[0]["source_sha256"] = "f" * 64
    _write(path, objects)
    with pytest.raises(ReplayDivergence, match="the hplan source code changed since this log was recorded"):
        verify_log(path, mode="agent", make_agent=make_greedy_agent)


def test_changed_checkpoint_is_refused(logged_run: tuple[Path, Path], tmp_path: Path) -> None:
    import torch

    path = _copy_log(logged_run, tmp_path)
    ckpt = tmp_path / "ckpt"
    shutil.copytree(logged_run[1], ckpt)
    objects = [json.loads(line) for line in path.read_text().splitlines()]
    objects[0]["checkpoint_path"] = str(ckpt)
    _write(path, objects)
    payload = torch.load(ckpt / "model.pt", weights_only=False)
    key = next(iter(payload["state_dict"]))
    payload["state_dict"][key] = payload["state_dict"][key] + 1.0
    torch.save(payload, ckpt / "model.pt")
    with pytest.raises(CheckpointError, match=r"has sha256 .*\(model changed since\)"):
        verify_log(path)
    (ckpt / "model.pt").unlink()  # auto mode: no checkpoint, so the agent replay is skipped, with a note
    report = verify_log(path)
    assert report.agent_ok is None and "not available" in report.agent_note
    with pytest.raises(CheckpointError, match="cannot re-run the agent"):
        verify_log(path, mode="agent")


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda lines: lines[:-1], r"line 10: log ends without a summary line"),
    (lambda lines: lines[:6] + lines[7:], r"line 7: step t=5 out of order \(expected 4\)"),
    (lambda lines: lines[:4] + ["{not json"] + lines[5:], r"line 5: not valid JSON"),
    (lambda lines: lines[1:], r"line 1: not an hplan episode log"),
    (lambda lines: [], r"empty episode log"),
])
def test_malformed_logs_fail_with_file_and_line(logged_run: tuple[Path, Path], tmp_path: Path,
                                                mangle: Any, message: str) -> None:
    path = _copy_log(logged_run, tmp_path)
    path.write_text("\n".join(mangle(path.read_text().splitlines())))
    with pytest.raises(ConfigError, match=message) as err:
        verify_log(path)
    assert str(err.value).startswith(str(path))


def test_log_cut_after_a_step_is_detected(tmp_path: Path) -> None:
    """A log whose summary was rewritten after dropping the last steps: the episode had not ended."""
    scenario = two_rooms(max_steps=30)
    run_episodes(scenario, None, episodes=1, seed=0, log_dir=tmp_path, make_agent=make_greedy_agent)
    path = episode_log_path(tmp_path, 0)
    objects = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(objects) > 6
    _write(path, objects[:5] + [objects[-1]])  # header, reset, steps 0-2, summary
    with pytest.raises(ReplayDivergence, match="log ends after 3 steps but the episode had not ended"):
        verify_log(path)


# ------------------------------------------------------------------------------------ CLI
def _cli(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    from hplan.cli import main

    monkeypatch.setattr(sys, "argv", ["hplan", *args])
    monkeypatch.setenv("COLUMNS", "200")
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_replay_verify_passes_and_names_the_tampered_step(logged_run: tuple[Path, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = _cli(["replay", str(logged_run[0]), "--verify"], capsys, monkeypatch)
    assert code == 0 and out.count("ep-000") == 2 and "diverged" not in out
    path = _copy_log(logged_run, tmp_path)
    _edit(path, 6, _bump_action)
    code, _, err = _cli(["replay", str(path), "--verify"], capsys, monkeypatch)
    assert code == ReplayDivergence.exit_code == 3
    assert "step 6 (line 9): true_state diverges" in err and len(err.strip().splitlines()) == 1


def test_cli_replay_renders_a_gif(logged_run: tuple[Path, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    gif = tmp_path / "episode.gif"
    code, out, _ = _cli(["replay", str(episode_log_path(logged_run[0], 1)), "--render", str(gif)], capsys, monkeypatch)
    assert code == 0 and "wrote" in out
    frames = imageio.mimread(gif)
    assert len(frames) == STEPS + 1  # reset + every step
    assert frames[0].shape[0] > frames[0].shape[1]  # caption band above the map
    assert any((a != b).any() for a, b in zip(frames, frames[1:]))  # the agent moves
    assert list(tmp_path.glob(".*tmp")) == []  # atomic: no temp file left




def _tiny_scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TWO_ROOMS_TOML.format(planner=toml_lines(TINY_PLANNER)))
    return path


def test_cli_run_then_replay_verify(logged_run: tuple[Path, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = _tiny_scenario_file(tmp_path)
    out_dir = tmp_path / "out"
    code, out, err = _cli(["run", str(scenario), "--checkpoint", str(logged_run[1]), "--episodes", "2",
                           "--planner", "flat", "--guardrails", "hard", "--out", str(out_dir), "--device", "cpu",
                           "--threads", "1"], capsys, monkeypatch)
    assert code == 0, err
    assert "plan ms/step" in out and "tiny_two_rooms flat guardrails=hard" in out
    header = json.loads(episode_log_path(out_dir, 1).read_text().splitlines()[0])
    assert header["planner"]["kind"] == "flat" and header["guardrails"]["mode"] == "hard"
    assert header["torch_threads"] == 1 and header["checkpoint_path"] == str(logged_run[1].resolve())
    code, out, err = _cli(["replay", str(out_dir), "--verify"], capsys, monkeypatch)
    assert code == 0, err
    assert out.count(" ok ") >= 4  # actions and agent replay, two episodes


@pytest.mark.parametrize(("args", "message"), [
    (["run", "no_such_scenario", "--checkpoint", "{ckpt}"], "no_such_scenario"),
    (["run", "{scenario}", "--checkpoint", "{missing}"], "model.pt: no world model checkpoint"),
    (["run", "{scenario}", "--checkpoint", "{ckpt}", "--guardrails", "maybe"], "unknown guardrail setting 'maybe'"),
    (["run", "{scenario}", "--checkpoint", "{ckpt}", "--planner", "deep"], "unknown planner 'deep'"),
    (["replay", "{missing}.jsonl"], "episode log not found"),
])
def test_cli_user_errors_are_one_line_and_leave_nothing(logged_run: tuple[Path, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                       message: str) -> None:
    values = {"ckpt": str(logged_run[1]), "missing": str(tmp_path / "missing"),
              "scenario": str(_tiny_scenario_file(tmp_path))}
    out_dir = tmp_path / "out"
    argv = [a.format(**values) for a in args] + (["--out", str(out_dir)] if args[0] == "run" else [])
    code, _, err = _cli(argv, capsys, monkeypatch)
    assert code == HplanError.exit_code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out_dir.exists()


class RandomDiscreteAgent:
    """Uniform random discrete actions from the episode seed (MiniGrid has 3+ actions)."""

    def reset(self, goal_obs: Any, seed: int) -> None:
        import numpy as np

        self.rng = np.random.default_rng(seed)

    def set_goal(self, goal_obs: Any) -> None:
        pass

    def act(self, obs: Any) -> tuple[int, None]:
        return int(self.rng.integers(0, 3)), None


def test_discrete_image_episode_replays_and_renders(tmp_path: Path) -> None:
    from hplan.config import load_scenario
    from hplan.render import EpisodeRenderer

    scenario = load_scenario("minigrid_lavacrossing", overrides={"env": {"max_steps": 12}})
    frame = run_episodes(scenario, None, episodes=2, seed=3, log_dir=tmp_path,
                         make_agent=lambda *a: RandomDiscreteAgent())
    log = read_episode_log(episode_log_path(tmp_path, 1))
    assert all(isinstance(s.action, int) for s in log.record.steps)
    assert log.record.num_steps == frame.loc[1, "steps"]
    renderer = EpisodeRenderer(size=96)
    report = verify_log(log.path, frame=renderer)
    assert report.actions_ok and report.agent_ok is None  # no checkpoint: actions replay only
    assert len(renderer.frames) == log.record.num_steps + 1 and renderer.frames[0].shape[1] == 96
    path = renderer.write_gif(tmp_path / "lava.gif")
    assert len(imageio.mimread(path)) == len(renderer.frames)
    # An action changed to another legal action: the agent ends up elsewhere (or the log is caught by the chain).
    _edit(log.path, 0, lambda s: s.update(action=(s["action"] + 1) % 3), rechain=True)
    with pytest.raises(ReplayDivergence, match=r"step 0 \(line 3\)"):
        verify_log(log.path)
