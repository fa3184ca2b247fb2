"""Full validation of a scenario file, as ``hplan scenario check`` and ``hplan collect`` run it.

Three layers, each raising a one-line :class:`~hplan.errors.ConfigError` naming file and field:
the file's structure and types (:func:`hplan.config.load_scenario`), the environment semantics
(``hplan.envs.factory.validate_scenario_env``: env id, layout, kwargs, task fields), and the
collection settings against the env actually built (policy vs. action space, start placement).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from hplan.config import ScenarioConfig, load_scenario
from hplan.data.policies import policy_for
from hplan.data.sources import VECTOR_BACKENDS, seek_indices
from hplan.envs.registry import ENVS, env_entry
from hplan.errors import ConfigError, HplanError

MIN_PIXELS_PER_CELL = 3.3
"""Below this the point covers too few pixels to locate (the built-in maps render at 3.37)."""


@dataclass(frozen=True)
class ScenarioReport:
    """A validated scenario plus facts about its env, for the ``check`` summary."""

    scenario: ScenarioConfig
    observation_space: gym.Space
    action_space: gym.Space
    num_rooms: int | None
    layout: str | None
    image_size: int | None = None
    pixels_per_cell: float | None = None

    def summary_rows(self) -> list[tuple[str, str]]:
        s = self.scenario
        rows = [("env", f"{s.env.id}  obs_mode={s.env.obs_mode}  max_steps={s.env.max_steps}"),
                ("observation", _space_text(self.observation_space)),
                ("action", _space_text(self.action_space))]
        if self.layout is not None:
            rows.append(("layout", self.layout))
        task = {k: v for k, v in vars(s.task).items() if v not in (None, 0)}
        rows.append(("task", ", ".join(f"{k}={v}" for k, v in task.items()) or "env defaults"))
        c = s.collect
        rows.append(("collect", f"{c.episodes} episodes × {c.steps_per_episode} steps, policy={c.policy}, "
                                f"start={c.start}, {c.num_envs} envs, {c.episodes_per_shard} episodes/shard"))
        rows.append(("model", f"latent_dim={s.model.latent_dim} regularizer={s.model.regularizer} "
                              f"subgoal_interval={s.model.subgoal_interval}"))
        rows.append(("planner", f"{s.planner.kind}/{s.planner.low} high={s.planner.high} horizon={s.planner.horizon} "
                                f"device={s.planner.device}"))
        rows += budget_rows(s.planner)
        if self.pixels_per_cell is not None:
            note = "" if self.pixels_per_cell >= MIN_PIXELS_PER_CELL else (
                f"  [warning: below {MIN_PIXELS_PER_CELL:.1f}, the encoder cannot place the point well; "
                "raise env.kwargs.image_size or leave it unset (it then adapts to the map)]")
            rows.append(("rendering", f"{self.image_size}×{self.image_size} px, "
                                      f"{self.pixels_per_cell:.1f} px per cell{note}"))
        rows.append(("guardrails", f"mode={s.guardrails.mode} threshold={s.guardrails.threshold}"))
        rows.append(("seed", str(s.seed)))
        return rows


def budget_rows(planner: Any) -> list[tuple[str, str]]:
    """The search each planner kind gets under the documented budget rule (``resolve_budget``)."""
    import dataclasses

    from hplan.planning.budget import outside_search, plan_cost, resolve_budget

    rows = []
    for kind in ("flat", "hier"):
        cfg = dataclasses.replace(planner, kind=kind)
        try:
            budget = resolve_budget(cfg)
        except HplanError as err:
            rows.append((f"search ({kind})", f"[invalid: {err}]"))
            continue
        low = f"low {budget.low.population}×{budget.low.iterations} ({plan_cost(cfg.low, budget.low, cfg.horizon, outside_search(cfg, 'low'))} evals)"
        high = "" if budget.high is None else (
            f", high {budget.high.population}×{budget.high.iterations} "
            f"({plan_cost(cfg.codes.optimizer, budget.high, cfg.codes.horizon, outside_search(cfg, 'high'))} evals when it replans)")
        if kind == "hier" and cfg.high == "landmarks":
            high = ", high `landmarks`: no predictor evaluations (distance and guardrail heads, graph search)"
        elif kind == "hier" and cfg.high == "imagined":
            grow = cfg.imagined
            high = (f", high `imagined`: ≤ {grow.depth * grow.frontier * grow.branches} P_hi "
                    "evaluations each time it grows its graph (distance and guardrail heads, graph search)")
        source = f"budget.evals {cfg.budget.evals}" if cfg.budget.evals > 0 else "populations as given"
        rows.append((f"search ({kind})", f"{low}{high}; {source}"))
    return rows


def validate_scenario(name_or_path: str | Path, sets: Sequence[str] = ()) -> ScenarioReport:
    """Load and fully validate a scenario; returns facts for a summary."""
    from hplan.envs.factory import make_env, validate_scenario_env

    scenario = load_scenario(name_or_path, sets=sets)
    validate_scenario_env(scenario)
    env = make_env(scenario)
    try:
        check_collect_fits(scenario, env.action_space, tuple(getattr(env.unwrapped, "state_names", ())))
        unwrapped: Any = env.unwrapped
        world = getattr(unwrapped, "world", None)
        layout = getattr(world, "layout", None)
        layout_text = None
        spec = getattr(getattr(unwrapped, "worlds", None), "spec", None)
        if spec is not None:
            layout_text = (f"generated: a new {spec.rows}×{spec.cols} room-maze per episode ({layout.width}×"
                           f"{layout.height} cells, rooms {spec.room} cells, doors {spec.door}, loops {spec.loops:g})")
        elif layout is not None:
            layout_text = (f"{layout.name} ({layout.width}×{layout.height} cells, {layout.num_rooms} rooms, "
                           f"{int(world.restricted.sum())} restricted cells)")
        image_size = getattr(world, "image_size", None) if scenario.env.obs_mode != "state" else None
        density = None if image_size is None or layout is None else image_size / max(layout.width, layout.height)
        return ScenarioReport(scenario=scenario, observation_space=env.observation_space,
                              action_space=env.action_space, num_rooms=None if layout is None else layout.num_rooms,
                              layout=layout_text, image_size=image_size, pixels_per_cell=density)
    finally:
        env.close()


def check_collect_fits(scenario: ScenarioConfig, action_space: gym.Space, state_names: Sequence[str]) -> None:
    """``[collect]`` settings that parse but do not fit the env raise a ConfigError naming the field."""
    collect = scenario.collect
    if collect.seek_prob > 0 and (collect.policy != "momentum" or seek_indices(state_names) is None):
        raise ConfigError(scenario.source, "collect.seek_prob",
                          f"seeking needs the momentum policy and an env with an object to push "
                          f"({scenario.env.id} with policy {collect.policy!r} has none); set it to 0")
    if collect.policy == "expert" and not env_entry(scenario.env.id).expert:
        raise ConfigError(scenario.source, "collect.policy",
                          f"'expert' follows an env's own oracle; {scenario.env.id} has none "
                          f"(envs with one: {', '.join(e.id for e in ENVS.values() if e.expert)})")
    if collect.start == "anywhere" and scenario.env.id not in VECTOR_BACKENDS:
        raise ConfigError(scenario.source, "collect.start",
                          f"'anywhere' needs a PointRooms map; {scenario.env.id} places its own starts "
                          "(use start = \"task\")")
    try:
        policy_for(collect, action_space)
    except HplanError as err:
        raise ConfigError(scenario.source, "collect.policy", str(err)) from None


def _space_text(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Discrete):
        return f"Discrete({space.n})"
    if isinstance(space, gym.spaces.Box):
        return f"Box{tuple(space.shape)} {space.dtype}"
    if isinstance(space, gym.spaces.Dict):
        return ", ".join(f"{k}: {_space_text(v)}" for k, v in space.spaces.items())
    return str(space)
