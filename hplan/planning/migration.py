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
(``kind``, ``low``, ``high``, ``horizon``, ``device``, ``subgoal_reached``)."""


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
}
"""Flat keys that no longer exist. A record holding the constant's value means today's settings;
one holding another value cannot be reproduced and is refused."""


def retired_key(name: str, section: str = "planner") -> str | None:
    """The one-line message for a pre-nesting key ``name`` written in a file under ``section``
    (None when ``name`` was never a planner key)."""
    if name in MOVED:
        return f"moved to {section}.{MOVED[name]}" if section else f"moved to {MOVED[name]}"
    if name in REMOVED:
        return f"removed: {REMOVED[name].reason}"
    return None


def nest_planner(recorded: Mapping[str, Any], *, source: str, section: str = "planner") -> dict[str, Any]:
    """A recorded planner table, flat (before nesting) or nested (after), in today's nested form.

    Keys already in today's form pass through, so migrating twice changes nothing; a removed
    knob is dropped when it holds the constant it became and refused otherwise (``source`` and
    ``section`` name the record in that error). Validation is left to ``from_mapping``."""
    nested: dict[str, Any] = {}
    for key, value in recorded.items():
        if key in REMOVED:
            kept = REMOVED[key].value
            if value != kept or isinstance(value, bool) != isinstance(kept, bool):
                raise ConfigError(source, f"{section}.{key}" if section else key,
                                  f"recorded as {value!r}, but the knob was removed ({REMOVED[key].reason}) "
                                  f"and is always {kept!r} now; these settings cannot be reproduced")
            continue
        _put(nested, MOVED.get(key, key).split("."), value)
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
