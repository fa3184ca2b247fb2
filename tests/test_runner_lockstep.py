"""Lockstep evaluation: episodes stepped together are the episodes played alone, bit for bit.

The model is the tests' tiny untrained ``LatentWorldModel`` (its guardrail sigmoid over two values
a row and its SiLU MLPs are exactly the ops whose floats depend on a row's neighbours when
batching is careless), the planner the tests' tiny one.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from cli_support import TINY_TWO_ROOMS_TOML, run_cli
from test_runner_support import TINY_PLANNER, one_torch_thread, tiny_checkpoint, toml_lines, two_rooms  # noqa: F401

from hplan.envs.factory import make_env
from hplan.models.checkpoint import load_world_model
from hplan.planning.agent import make_agent
from hplan.replay import verify_log
from hplan.runner import read_episode_log, run_episodes
from hplan.runner.episodes import RUN_SUMMARY, episode_log_path, episode_seed
from hplan.runner.lockstep import Lockstep, LockstepCancelled, _Call, run_calls

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 12
PLANNERS = [("flat", "codes"), ("hier", "codes"), ("hier", "landmarks")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """An untrained tiny checkpoint (with 16 waypoints) and its model."""
    root = tmp_path_factory.mktemp("lockstep")
    ckpt = tiny_checkpoint(root / "ckpt", two_rooms(max_steps=STEPS, planner=TINY_PLANNER))
    return ckpt, load_world_model(ckpt, device="cpu")


def scenario_for(kind: str, high: str, steps: int = STEPS) -> Any:
    return two_rooms(max_steps=steps, planner={**TINY_PLANNER, "kind": kind, "high": high})


def without_timing(value: Any) -> Any:
    """A logged value with every wall-time field (``*_ms``) dropped."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if not k.endswith("_ms")}
    return value


def trajectories(log_dir: Path, episodes: int) -> list[list[dict[str, Any]]]:
    """Every logged step of every episode (actions, env outcome, the agent's PlanInfo), timing dropped."""
    out = []
    for index in range(episodes):
        log = read_episode_log(episode_log_path(log_dir, index))
        out.append([without_timing({**vars(step)}) for step in log.record.steps])
    return out


def outcome(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame.columns if c.endswith("_ms") or c == "log"])


def play(scenario: Any, model: Any, ckpt: Path, episodes: int, lockstep: int, seed: int, log_dir: Path) -> pd.DataFrame:
    return run_episodes(scenario, model, episodes=episodes, seed=seed, lockstep=lockstep, log_dir=log_dir,
                        checkpoint=ckpt, device="cpu")


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(planner=st.sampled_from(PLANNERS), episodes=st.integers(2, 4), lockstep=st.integers(2, 4),
       seed=st.integers(0, 10_000))
def test_episodes_in_lockstep_are_the_episodes_played_alone(tiny: tuple[Path, Any], planner: tuple[str, str],
                                                            episodes: int, lockstep: int, seed: int) -> None:
    ckpt, model = tiny
    scenario = scenario_for(*planner)
    with tempfile.TemporaryDirectory() as tmp:
        alone = play(scenario, model, ckpt, episodes, 1, seed, Path(tmp) / "alone")
        together = play(scenario, model, ckpt, episodes, lockstep, seed, Path(tmp) / "together")
        assert trajectories(Path(tmp) / "alone", episodes) == trajectories(Path(tmp) / "together", episodes)
        pd.testing.assert_frame_equal(outcome(alone), outcome(together))
        summaries = [json.loads((Path(tmp) / way / RUN_SUMMARY).read_text()) for way in ("alone", "together")]
    assert [s["lockstep"] for s in summaries] == [1, min(lockstep, episodes)]
    timing = [k for k in summaries[0]["summary"] if "ms" in k.split("_")]
    assert {k: v for k, v in summaries[0]["summary"].items() if k not in timing} == \
        {k: v for k, v in summaries[1]["summary"].items() if k not in timing}


def test_lockstep_identity_holds_at_two_torch_threads(tiny: tuple[Path, Any], tmp_path: Path) -> None:
    """Two threads split matrix products and element-wise ops differently; the padding still keeps
    an episode's floats apart from its neighbours'."""
    ckpt, model = tiny
    scenario = scenario_for("hier", "landmarks", steps=6)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        play(scenario, model, ckpt, 3, 1, 7, tmp_path / "alone")
        play(scenario, model, ckpt, 3, 3, 7, tmp_path / "together")
    finally:
        torch.set_num_threads(previous)
    assert trajectories(tmp_path / "alone", 3) == trajectories(tmp_path / "together", 3)


def test_lockstep_logs_replay_with_the_agent_and_record_lockstep(tiny: tuple[Path, Any], tmp_path: Path) -> None:
    ckpt, model = tiny
    play(scenario_for("hier", "landmarks"), model, ckpt, 3, 3, 11, tmp_path)
    for index in range(3):
        path = episode_log_path(tmp_path, index)
        assert read_episode_log(path).header.lockstep == 3
        report = verify_log(path, mode="agent")
        assert report.actions_ok and report.agent_ok


def test_logs_of_direct_model_calls_still_replay_directly(tiny: tuple[Path, Any], tmp_path: Path) -> None:
    """A log recorded without the lockstep view (the runner before it, or an injected factory)
    says so, and the replay calls the model directly as the recording did."""
    ckpt, model = tiny
    scenario = scenario_for("hier", "codes")
    run_episodes(scenario, None, episodes=2, seed=3, log_dir=tmp_path, checkpoint=ckpt, device="cpu",
                 make_agent=lambda _model, *args: make_agent(model, *args))
    for index in range(2):
        path = episode_log_path(tmp_path, index)
        assert read_episode_log(path).header.lockstep is None
        assert verify_log(path, mode="agent").agent_ok


class RecordingHook:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_reset(self, env: Any, obs: Any, info: Any) -> None:
        self.calls.append(("reset", np.asarray(obs).tobytes()))

    def on_step(self, event: Any) -> None:
        self.calls.append(("step", event.t, tuple(np.asarray(event.action).ravel().tolist())))

    def on_episode_end(self, record: Any) -> None:
        self.calls.append(("end", record.seed, record.num_steps))


def test_hooks_see_the_episodes_in_order_as_when_played_alone(tiny: tuple[Path, Any]) -> None:
    ckpt, model = tiny
    scenario = scenario_for("flat", "codes", steps=6)
    hooks = {n: RecordingHook() for n in (1, 3)}
    for n, hook in hooks.items():
        run_episodes(scenario, model, episodes=3, seed=2, lockstep=n, hooks=[hook], device="cpu")
    assert hooks[1].calls == hooks[3].calls
    assert [c[1] for c in hooks[3].calls if c[0] == "end"] == [episode_seed(2, i) for i in range(3)]


class FailingAgent:
    """The real agent, raising on its third step."""

    def __init__(self, agent: Any) -> None:
        self.agent, self.steps = agent, 0

    def reset(self, goal_obs: Any, seed: int) -> None:
        self.agent.reset(goal_obs, seed)

    def set_goal(self, goal_obs: Any) -> None:
        self.agent.set_goal(goal_obs)

    def act(self, obs: Any) -> Any:
        self.steps += 1
        if self.steps == 3:
            raise ValueError("the planner fell over")
        return self.agent.act(obs)


def finishes(target: Any, timeout: float = 120.0) -> BaseException | None:
    """Run ``target`` in a thread; fail the test if it hangs (a deadlock), else return what it raised."""
    raised: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "lockstep run deadlocked"
    return raised[0] if raised else None


def test_an_exception_in_one_episode_is_reported_with_its_index(tiny: tuple[Path, Any]) -> None:
    ckpt, model = tiny
    failing = episode_seed(5, 2)

    def factory(view: Any, planner: Any, guard: Any, seed: int, device: Any) -> Any:
        agent = make_agent(view, planner, guard, seed, device)
        return FailingAgent(agent) if seed == failing else agent

    error = finishes(lambda: run_episodes(scenario_for("hier", "landmarks"), model, episodes=4, seed=5, lockstep=4,
                                          make_agent=factory, device="cpu"))
    assert isinstance(error, ValueError) and str(error) == "episode 2: the planner fell over"
    assert isinstance(error.__cause__, ValueError)


def test_an_exception_in_a_batched_model_call_is_reported_once(tiny: tuple[Path, Any]) -> None:
    """A model call that fails for the whole batch is one error, for the first episode in it; the
    others are stopped, not left waiting."""
    ckpt, model = tiny

    class Broken:
        def __getattr__(self, name: str) -> Any:
            return getattr(model, name)

        def predict(self, z: Any, actions: Any) -> Any:
            raise RuntimeError("predictor exploded")

    error = finishes(lambda: run_episodes(scenario_for("flat", "codes"), Broken(), episodes=3, seed=1, lockstep=3,
                                          device="cpu", checkpoint=ckpt))
    assert isinstance(error, RuntimeError) and not isinstance(error, LockstepCancelled)
    assert str(error) == "episode 0: predictor exploded"


def test_an_environment_failing_mid_episode_stops_the_batch(tiny: tuple[Path, Any]) -> None:
    ckpt, model = tiny

    class FailsOnItsFourthStep(gym.Wrapper):
        def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
            self.seed, self.count = seed, 0
            return super().reset(seed=seed, options=options)

        def step(self, action: Any) -> Any:
            self.count += 1
            if self.count == 4 and self.seed == episode_seed(0, 1):
                raise OSError("simulator lost")
            return super().step(action)

    def broken_env(scenario: Any, **overrides: Any) -> Any:
        return FailsOnItsFourthStep(make_env(scenario, **overrides))

    error = finishes(lambda: run_episodes(scenario_for("hier", "codes"), model, episodes=3, seed=0, lockstep=3,
                                          make_env=broken_env, device="cpu"))
    assert isinstance(error, OSError) and str(error) == "episode 1: simulator lost"


def test_cli_run_lockstep_then_replay_verify(tiny: tuple[Path, Any], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt, _ = tiny
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY_TWO_ROOMS_TOML.format(planner=toml_lines(TINY_PLANNER)))
    outputs = {}
    for lockstep in ("1", "3"):
        out_dir = tmp_path / f"out{lockstep}"
        code, _, err = run_cli(monkeypatch, capsys, "run", str(scenario), "--checkpoint", str(ckpt), "--episodes", "3",
                               "--lockstep", lockstep, "--out", str(out_dir), "--device", "cpu", "--threads", "1")
        assert code == 0, err
        assert json.loads((out_dir / RUN_SUMMARY).read_text())["lockstep"] == int(lockstep)
        outputs[lockstep] = trajectories(out_dir, 3)
        code, out, err = run_cli(monkeypatch, capsys, "replay", str(out_dir), "--verify")
        assert code == 0, err
        assert out.count(" ok ") >= 6  # actions and agent replay, three episodes
    assert outputs["1"] == outputs["3"]
    code, _, err = run_cli(monkeypatch, capsys, "run", str(scenario), "--checkpoint", str(ckpt), "--lockstep", "0",
                           "--out", str(tmp_path / "refused"))
    assert code != 0 and "--lockstep" in err and not (tmp_path / "refused").exists()


# -- the batching itself ------------------------------------------------------------------------
def _calls(method: str, tensors: list[tuple[Any, ...]], static: tuple = ()) -> list[_Call]:
    return [_Call(method, t, static, order) for order, t in enumerate(tensors)]


def _each_alone(model: Any, method: str, tensors: list[tuple[Any, ...]], static: tuple = ()) -> list[Any]:
    outs = []
    for call in _calls(method, tensors, static):
        run_calls(model, [call])
        outs.append(call.result)
    return outs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.integers(1, 70), min_size=1, max_size=5), seed=st.integers(0, 2**16))
def test_a_row_gets_the_same_floats_alone_and_in_any_batch(tiny: tuple[Path, Any], rows: list[int], seed: int) -> None:
    """Each protocol method: a call batched with others returns exactly what it returns alone,
    and within float noise what the model returns called directly."""
    _, model = tiny
    gen = torch.Generator().manual_seed(seed)
    d, a, m = model.latent_dim, model.action_spec.dim, model.code_dim

    def z(*lead: int) -> torch.Tensor:
        return torch.randn(*lead, d, generator=gen)

    cases = {
        "heads": [(z(r, 3), torch.rand(r, 3, a, generator=gen) * 2 - 1) for r in rows],
        "heads_marginal": [(z(r), None) for r in rows],
        "predict": [(z(r), torch.rand(r, 4, a, generator=gen) * 2 - 1) for r in rows],
        "predict_high": [(z(r), torch.randn(r, 2, m, generator=gen)) for r in rows],
        "encode": [(torch.rand(r, *model.input_shape, generator=gen) * 4,) for r in rows],
        # temporal distance batches calls of equal shapes: a goal against many latents, one against many
        "distance_goal": [(z(rows[0], 3), z()) for _ in rows],
        "distance_points": [(z(1), z(rows[0])) for _ in rows],
        "distance_pairs": [(z(rows[0], 1), z(1, rows[0])) for _ in rows],
    }
    with torch.no_grad():
        for name, tensors in cases.items():
            method = {"heads_marginal": "heads"}.get(name, "temporal_distance" if name.startswith("distance") else name)
            group = _calls(method, tensors)
            run_calls(model, group)
            alone = _each_alone(model, method, tensors)
            for call, single, args in zip(group, alone, tensors):
                assert call.error is None
                assert torch.equal(call.result, single), name
                direct = getattr(model, method)(*args)
                assert call.result.shape == direct.shape, name
                torch.testing.assert_close(call.result, direct, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def image_model() -> Any:
    """The four-rooms image model's architecture (keypoint encoder on two 64x64 frames), untrained."""
    from hplan.config import load_scenario
    from hplan.models.world_model import LatentWorldModel
    from hplan.vocabulary.protocol import ActionSpec

    torch.manual_seed(0)
    cfg = load_scenario("point_four_rooms").model
    return LatentWorldModel(cfg, obs_kind="image", obs_shape=(64, 64, 3), action_spec=ActionSpec(dim=2),
                            guardrail_names=("wall_contact", "restricted_zone")).eval()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.integers(1, 12), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_an_image_encoder_gets_the_same_floats_alone_and_in_any_batch(image_model: Any, rows: list[int],
                                                                      seed: int) -> None:
    """Convolutions pick their kernels by batch size (1-7 frames gave other bits than 64 on one
    thread): the view pads ``encode`` so that never shows."""
    gen = torch.Generator().manual_seed(seed)
    tensors = [(torch.randint(0, 256, (r, *image_model.input_shape), generator=gen, dtype=torch.uint8),) for r in rows]
    with torch.no_grad():
        group = _calls("encode", tensors)
        run_calls(image_model, group)
        for call, single in zip(group, _each_alone(image_model, "encode", tensors)):
            assert call.error is None and torch.equal(call.result, single)


def test_calls_wait_for_every_live_episode_and_run_as_one(tiny: tuple[Path, Any]) -> None:
    """Three threads' heads calls run as one model call; attributes pass straight through."""
    _, model = tiny
    seen: list[int] = []

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(model, name)

        def heads(self, z: Any, actions: Any = None) -> Any:
            seen.append(len(z))
            return model.heads(z, actions)

    lockstep = Lockstep(Counting(), 3)
    views = [lockstep.view() for _ in range(3)]
    assert views[0].latent_dim == model.latent_dim and views[0].guardrail_names == model.guardrail_names
    out: dict[int, Any] = {}

    def member(i: int) -> None:
        views[i].order = i
        with torch.no_grad():
            out[i] = views[i].heads(torch.full((2, model.latent_dim), float(i)))
        lockstep.leave()

    threads = [threading.Thread(target=member, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert seen == [32]  # one call: the three episodes' 2 rows each, padded to 32
    for i in range(3):
        with torch.no_grad():
            torch.testing.assert_close(out[i], model.heads(torch.full((2, model.latent_dim), float(i))))


@settings(max_examples=30, deadline=None)
@given(shares=st.lists(st.integers(1, 64), min_size=1, max_size=6), graph_ms=st.floats(0.0, 1e4),
       rows=st.integers(0, 10_000))
def test_a_shared_step_divides_every_time_it_reports_and_no_count(shares: list[int], graph_ms: float,
                                                                  rows: int) -> None:
    """Lockstep records an episode's share of each step: the runner's ``act_ms`` and the agent's own
    times (graph, heads, the build) alike, since all were measured while the other episodes ran;
    head rows are work done, whoever shared the cores, and stay whole."""
    from hplan.runner.lockstep import SharedTime
    from hplan.runner.loop import EpisodeRecord, StepRecord

    def step(t: int) -> StepRecord:
        compute = {"graph_ms": graph_ms, "distance_evals": rows, "distance_ms": 2 * graph_ms}
        if t == 0:
            compute |= {"setup_ms": 3 * graph_ms, "setup_distance_evals": rows}
        return StepRecord(t=t, action=[0.0, 0.0], reward=0.0, cost=0.0, violations={}, success=False,
                          terminated=False, truncated=False, true_state=[0.0], pos=None, obs_sha256="",
                          goal_changed=False, act_ms=10.0, plan={"reason": "route", "compute": compute})

    record = EpisodeRecord(seed=0, reset_obs_sha256="", reset_true_state=[0.0], goal_obs_sha256="",
                           steps=[step(t) for t in range(len(shares))])
    shared = SharedTime(agent=None, view=None)
    shared.shares = list(shares)
    out = shared.amortise(record)
    for t, (n, s) in enumerate(zip(shares, out.steps)):
        compute = s.plan["compute"]
        assert s.act_ms == pytest.approx(10.0 / n, abs=1e-4) and s.plan["reason"] == "route"
        assert compute["graph_ms"] == pytest.approx(graph_ms / n, abs=1e-4)
        assert compute["distance_ms"] == pytest.approx(2 * graph_ms / n, abs=1e-4)
        assert compute["distance_evals"] == rows
        if t == 0:
            assert compute["setup_ms"] == pytest.approx(3 * graph_ms / n, abs=1e-4)
            assert compute["setup_distance_evals"] == rows


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
