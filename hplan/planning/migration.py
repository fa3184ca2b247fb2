"""Planner settings recorded flat (before ``[planner]`` was nested by concern) → today's nested form.

Until the planner was split into sections, every record of it was one flat table: ``run.json``'s
``planner``, episode-log headers (and the scenario in them), trained models' ``config.json`` and
the parameters of study trials. Those records must stay readable, and an evaluation cached from
a flat record must compare equal to the same settings written the new way, or hours of cached
episodes would be played again. So every place that reads a *recorded* planner passes it through
:func:`nest_planner` first; files a user edits are not migrated silently: an old key there is an
error naming its new place (:func:`retired_key`), because a scenario should read one way only.

Nothing here imports hplan's config classes (they import :func:`retired_key` for their errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from hplan.errors import ConfigError

MOVED: dict[str, str] = {
    # the low level's search (sizes, and the sampling shape both levels share)
    "population": "search.population", "iterations": "search.iterations", "elites": "search.elites",
    "init_std": "search.init_std", "min_std": "search.min_std", "momentum": "search.momentum",
    "temperature": "search.temperature", "noise_beta": "search.noise_beta", "execute_mean": "search.execute_mean",
    "warm_start": "search.warm_start", "max_batch": "search.max_batch",
    "grad_lr": "grad.lr", "grad_restarts": "grad.restarts", "grad_steps": "grad.steps",
    "task_cost": "energy.task_cost", "running_weight": "energy.running_weight",
    "goal_ends_episode": "energy.goal_ends_episode",
    "correction_memory": "correction.memory", "correction_radius": "correction.radius",
    "correction_action_width": "correction.action_width", "correction_threshold": "correction.threshold",
    "high_optimizer": "codes.optimizer", "high_horizon": "codes.horizon", "high_population": "codes.population",
    "high_iterations": "codes.iterations", "high_elites": "codes.elites", "code_bound": "codes.bound",
    "high_running_weight": "codes.running_weight", "reach_weight": "codes.reach_weight",
    "replan_every": "codes.replan_every", "subgoal_lost": "codes.subgoal_lost", "direct_reach": "codes.direct_reach",
    "landmark_edge": "route.edge", "landmark_attach": "route.attach", "landmark_patience": "route.patience",
    "landmark_edge_samples": "route.edge_samples", "landmark_slack": "route.slack",
    "imagine_branches": "imagined.branches", "imagine_frontier": "imagined.frontier",
    "imagine_depth": "imagined.depth", "imagine_nodes": "imagined.nodes", "imagine_merge": "imagined.merge",
    "imagine_reach": "imagined.reach", "imagine_regrow_on_stall": "imagined.regrow_on_stall",
    "eval_budget": "budget.evals", "high_share": "budget.high_share",
}
"""Flat key → its dotted place under ``planner``. Keys not listed kept their name and place
(``kind``, ``low``, ``high``, ``horizon``, ``device``; ``subgoal_reached`` did too, and is a constant now)."""


@dataclass(frozen=True)
class Removed:
    """A knob that became a constant: the one value it may still be recorded with, and why."""

    value: Any
    reason: str


REMOVED: dict[str, Removed] = {
    "high_init_std": Removed(1.0, "the codes are whitened, so the search over them starts at their prior's "
                                  "std (hplan.planning.config.CODE_PRIOR_STD)"),
    "imagine_rebuild": Removed(0, "the imagined graph is regrown when the agent leaves it or stalls, "
                                  "never on a timer"),
    # hplan's own thresholds, constants since no shipped file set them (hplan.planning.config says why)
    "subgoal_reached": Removed(2.0, "a constant now, hplan.planning.config.SUBGOAL_REACHED"),
    "codes.subgoal_lost": Removed(3.0, "a constant now, hplan.planning.config.SUBGOAL_LOST"),
    "correction.radius": Removed(1.0, "a constant now, hplan.planning.config.CORRECTION_RADIUS"),
    "correction.action_width": Removed(0.5, "a constant now, hplan.planning.config.CORRECTION_ACTION_WIDTH"),
    "route.slack": Removed(4.0, "a constant now, hplan.planning.config.ROUTE_SLACK"),
    "imagined.merge": Removed(0.5, "a constant now, hplan.planning.config.IMAGINED_MERGE"),
    "imagined.reach": Removed(1.5, "a constant now, hplan.planning.config.IMAGINED_REACH"),
    "budget.high_share": Removed(0.25, "a constant now, hplan.planning.config.HIGH_SHARE"),
}
"""Keys that no longer exist: flat ones from before the nesting, dotted ones (under ``planner``)
from after it. A record holding the constant's value means today's settings; one holding another
value cannot be reproduced and is refused."""


def retired_key(name: str, section: str = "planner") -> str | None:
    """The one-line message for a key ``name`` that a planner table under ``section`` (``planner``,
    ``planner.route``, or "" for a record's bare planner table) no longer has: a pre-nesting key
    that moved, or a knob that became a constant. None when ``name`` was never a planner key."""
    parts = [part for part in section.split(".") if part]
    inner = parts[1:] if parts[:1] == ["planner"] else parts
    path = ".".join([*inner, name])
    if path in REMOVED:
        return f"removed: {REMOVED[path].reason}"
    if inner:  # a nested section: pre-nesting keys were never written there
        return None
    if name in MOVED:
        if MOVED[name] in REMOVED:
            return f"removed: {REMOVED[MOVED[name]].reason}"
        return f"moved to {section}.{MOVED[name]}" if section else f"moved to {MOVED[name]}"
    return None


def nest_planner(recorded: Mapping[str, Any], *, source: str, section: str = "planner") -> dict[str, Any]:
    """A recorded planner table, flat (before nesting) or nested (after), in today's nested form.

    Keys already in today's form pass through, so migrating twice changes nothing; a removed
    knob is dropped when it holds the constant it became and refused otherwise (``source`` and
    ``section`` name the record in that error). Validation is left to ``from_mapping``."""
    nested: dict[str, Any] = {}
    for key, value in recorded.items():
        _put(nested, MOVED.get(key, key).split("."), value)
    for path, removed in REMOVED.items():
        *parents, last = path.split(".")
        table: Any = nested
        for part in parents:
            table = table.get(part) if isinstance(table, dict) else None
        if not isinstance(table, dict) or last not in table:
            continue
        value = table.pop(last)
        if value != removed.value or isinstance(value, bool) != isinstance(removed.value, bool):
            raise ConfigError(source, ".".join(part for part in (section, path) if part),
                              f"recorded as {value!r}, but the knob was removed ({removed.reason}) "
                              f"and is always {removed.value!r} now; these settings cannot be reproduced")
    return nested


def nest_scenario_planner(recorded: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """A recorded whole-scenario table (``config.json``, an episode log's ``scenario``) with its
    ``planner`` table passed through :func:`nest_planner`."""
    planner = recorded.get("planner")
    if not isinstance(planner, Mapping):
        return dict(recorded)
    return {**recorded, "planner": nest_planner(planner, source=source)}


def nest_target(target: str) -> str:
    """A recorded dotted target (a study trial's parameter name, ``planner.population``) in
    today's form (``planner.search.population``); any other target is returned unchanged."""
    section, _, key = target.partition(".")
    if section == "planner" and key in MOVED:
        return f"planner.{MOVED[key]}"
    return target


def _put(table: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``table[path[0]][path[1]]... = value``, merging into sub-tables already there."""
    for part in path[:-1]:
        node = table.get(part)
        if not isinstance(node, dict):
            node = table[part] = {}
        table = node
    last = path[-1]
    if isinstance(value, Mapping) and isinstance(table.get(last), dict):
        for key, inner in value.items():
            _put(table[last], [key], inner)
    else:
        table[last] = dict(value) if isinstance(value, Mapping) else value
