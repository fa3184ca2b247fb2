"""Planner and guardrail settings ([planner] and [guardrails] in a scenario file).

Defaults are tuned so that one hierarchical plan step of the default model fits 100 ms on a
2-core CPU (see ``benchmarks/bench_planners.py``). Every field is documented; the scenario loader
checks the bounds and names the file and field on a bad value.

Why ``[planner]`` is nested: flat, it had 54 fields, most of which matter only for one optimiser
or one high level, and a reader could not tell which. Each section is one concern that is read
(and tuned) on its own: ``search`` (the low level's sampling search), ``grad`` (the gradient
optimiser), ``energy`` (what a plan costs), ``correction`` (the episode's own prediction errors),
``codes`` / ``route`` / ``imagined`` (one section per high level, named as ``high`` names it;
``imagined`` routes with the ``route`` settings too) and ``budget`` (equal-compute comparisons).
Why a few fields stay on top: they are what nearly every scenario file and command line sets
(``kind``, ``low``, ``high``, ``horizon``) and where a run executes (``device``). The search
sizes live in ``search`` beside ``codes``' own sizes so that the two levels read alike.

Records written before the nesting are flat; :mod:`hplan.planning.migration` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hplan.configio import meta
from hplan.planning.migration import retired_key


MAX_POPULATION = 65536
"""Upper bound of candidate counts: 512x the largest shipped search, still chunked by ``max_batch``.
Without a bound a typo (a population of 10^9) passed ``scenario check`` and failed mid-episode."""
MAX_ITERATIONS = 1000
"""Upper bound of optimiser iterations / steps per plan (shipped files use at most 20)."""
CODE_PRIOR_STD = 1.0
"""Initial sampling std of the ``codes`` search (absolute). Subgoal codes are whitened, N(0, I)
under the prior, so 1 is their prior's own spread; it was a knob (``high_init_std``) that nothing
ever set to anything else."""

# hplan's own thresholds and kernel widths. Why constants and not settings: a setting stays a
# setting when it sizes the compute (populations, iterations, graph sizes, batches), chooses a
# method or an ablation arm (optimiser, cost, switches), or is a published method's hyperparameter
# (CEM / iCEM / MPPI / Adam / PID-Lagrangian). These are none of those; no scenario, suite, study
# or results table ever set them, and a setting no one sets invites tuning one layout on the
# episodes it reports. Records that hold them at these values still read (planning.migration).
SUBGOAL_REACHED = 2.0
"""Temporal distance (steps) below which a subgoal or waypoint counts as reached: the ``codes``
level replans, routes hand the next waypoint, and going for the goal, risk predicted after arriving
is not counted. Two steps: the learned distance's own resolution (it is trained on integer gaps)."""
SUBGOAL_LOST = 3.0
"""``codes`` level: replan when the distance to the subgoal grew by more than this in one step
(a step moves the distance by one at most, so three is a jump no real step makes)."""
CORRECTION_RADIUS = 1.0
"""Kernel width of the dynamics correction in latent space, in median one-step moves of the episode
(an error corrects rollouts about one step from where it was seen)."""
CORRECTION_ACTION_WIDTH = 0.5
"""Kernel width of the dynamics correction over continuous actions, in their own units (half the
normalised action range's half-width: two actions that far apart move the agent differently)."""
ROUTE_SLACK = 4.0
"""Experience graph: an edge whose temporal distance exceeds the steps the data took by more than
this is dropped (a visit counted across a wall, not a way the data walked)."""
LONG_HOP_PRICE = 1.0
"""Routes: a hop of ``s`` steps between waypoints costs ``s · (1 + LONG_HOP_PRICE · s / route.edge)``,
so a route takes a chain of short hops over one long one of the same length. Why: a long hop is
where the data went round something (a doorway's corner) that the low level, handed a waypoint
beyond it, tries to cut; the chain passes the waypoints in between. Spiral, training seed 0, 50
``val`` episodes: 15 → 35 won (21 won, 1 lost; CHANGELOG)."""
IMAGINED_MERGE = 0.5
"""Imagined graph: a subgoal within this many k-step jumps (learned distance, both ways) of a node
is that node."""
IMAGINED_REACH = 1.5
"""Imagined graph: a subgoal the learned distance puts more than this many k-step jumps from its
parent is dropped (P_hi was trained on one jump; half a jump more is what it can be trusted with)."""
HIGH_SHARE = 0.25
"""Equal-compute budgets: the share of the per-step budget a hierarchical agent may spend on its
high level on the steps where it replans (the low level keeps the rest every step)."""


class PlannerSection:
    """What every ``[planner]`` table shares: an unknown key that the table had before (moved by the
    nesting, or a knob made a constant) is explained by ``from_mapping`` and study targets, not just
    listed as unknown."""

    retired_key = staticmethod(retired_key)


@dataclass(frozen=True)
class SearchConfig(PlannerSection):
    """The low level's sampling search (CEM, MPPI, categorical CEM): its size, and the sampling
    shape both levels share (the ``codes`` high level has sizes of its own in ``[planner.codes]``)."""

    population: int = field(default=128, metadata=meta("candidates per iteration", ge=2, le=MAX_POPULATION))
    iterations: int = field(default=3, metadata=meta("optimiser iterations per plan", ge=1, le=MAX_ITERATIONS))
    elites: int = field(default=16, metadata=meta("elite candidates kept by CEM (and weighted by MPPI)", ge=1))
    init_std: float = field(default=0.5, metadata=meta(
        "initial sampling std, as a fraction of the action range's half-width", gt=0.0, le=4.0))
    min_std: float = field(default=0.05, metadata=meta(
        "floor on the sampling std (fraction of half-width): keeps exploring after convergence", ge=0.0, le=4.0))
    momentum: float = field(default=0.1, metadata=meta(
        "CEM/MPPI smoothing: new mean = momentum*old + (1-momentum)*elite mean", ge=0.0, lt=1.0))
    temperature: float = field(default=0.5, metadata=meta(
        "MPPI temperature, relative to the elites' cost std (smaller = greedier)", gt=0.0))
    noise_beta: float = field(default=0.0, metadata=meta(
        "CEM/MPPI: colour of the sampling noise along time, power ∝ 1/f^beta (0 = white, 2 = smooth; iCEM)",
        ge=0.0, le=4.0))
    execute_mean: bool = field(default=False, metadata=meta(
        "CEM/MPPI: execute the final mean (smoother) when it is feasible, else the best candidate evaluated "
        "(scoring the mean costs one more rollout pass per plan; off, the plan is the best candidate evaluated)"))
    warm_start: bool = field(default=True, metadata=meta(
        "start each plan from the previous plan shifted by one step (receding horizon)"))
    max_batch: int = field(default=0, metadata=meta(
        "candidates evaluated per tensor op; larger populations are chunked so memory stays bounded. "
        "0 = auto: 256 on CPU (chunks that fit the cache), 16384 on a GPU", ge=0))

    def __post_init__(self) -> None:
        if self.elites > self.population:
            raise ValueError(f"elites ({self.elites}) must be <= population ({self.population})")
        if self.min_std > self.init_std:
            raise ValueError(f"min_std ({self.min_std}) must be <= init_std ({self.init_std})")


@dataclass(frozen=True)
class GradConfig(PlannerSection):
    """The gradient optimiser (``low = "grad"``): it replaces the search's population and
    iterations by restarts and Adam steps."""

    lr: float = field(default=0.1, metadata=meta("Adam step size on the action sequence", gt=0.0))
    restarts: int = field(default=8, metadata=meta(
        "action sequences optimised in parallel; the best is kept", ge=1, le=MAX_POPULATION))
    steps: int = field(default=20, metadata=meta("Adam steps per plan", ge=1, le=MAX_ITERATIONS))


@dataclass(frozen=True)
class EnergyConfig(PlannerSection):
    """What a low-level plan costs besides its guardrail risk (``[guardrails]``)."""

    task_cost: Literal["temporal", "l2"] = field(default="temporal", metadata=meta(
        "distance to the goal/subgoal: learned temporal distance or latent L2"))
    running_weight: float = field(default=1.0, metadata=meta(
        "weight of the mean per-step distance added to the terminal distance (0 = terminal only)", ge=0.0))
    goal_ends_episode: bool = field(default=True, metadata=meta(
        "going for the episode's goal, risk predicted after arriving (distance <= SUBGOAL_REACHED) is not "
        "counted: the episode ends there"))


@dataclass(frozen=True)
class CorrectionConfig(PlannerSection):
    """Correcting the low level's rollouts with the episode's own prediction errors
    (:mod:`hplan.planning.correction`)."""

    memory: int = field(default=32, metadata=meta(
        "transitions of the episode whose prediction error (observed minus predicted next latent) corrects "
        "the low level's rollouts near where they were seen (0 = off). "
        "32 was chosen on val in two and four rooms (benchmarks/results.toml, recipe tables)", ge=0, le=1024))
    threshold: float = field(default=0.25, metadata=meta(
        "errors smaller than this many median one-step moves are not remembered (the model's noise)", ge=0.0))


@dataclass(frozen=True)
class CodesConfig(PlannerSection):
    """The ``codes`` high level: MPC over subgoal codes rolled out with P_hi, and when it replans."""

    optimizer: Literal["cem", "mppi"] = field(default="cem", metadata=meta("optimiser over subgoal codes"))
    horizon: int = field(default=4, metadata=meta(
        "L: high-level steps planned (each jumps subgoal_interval low-level steps)", ge=1, le=64))
    population: int = field(default=128, metadata=meta("candidate code sequences per high-level iteration", ge=2,
                                                       le=MAX_POPULATION))
    iterations: int = field(default=3, metadata=meta("high-level optimiser iterations", ge=1, le=MAX_ITERATIONS))
    elites: int = field(default=16, metadata=meta("high-level elites", ge=1))
    bound: float = field(default=3.0, metadata=meta(
        "subgoal codes are searched in [-bound, bound]^code_dim (codes are whitened: N(0, I) prior)", gt=0.0))
    running_weight: float = field(default=0.5, metadata=meta(
        "weight of the mean distance of the predicted subgoals to the goal (rewards early progress)", ge=0.0))
    reach_weight: float = field(default=1.0, metadata=meta(
        "weight of the per-step reachability cost relu(d(z_l, z_l+1) - k) in the high-level energy", ge=0.0))
    replan_every: int = field(default=8, metadata=meta(
        "replan the high level at least every this many low-level steps", ge=1))
    direct_reach: float = field(default=8.0, metadata=meta(
        "when the goal's temporal distance is below this, the low level goes straight for the goal", ge=0.0))

    def __post_init__(self) -> None:
        if self.elites > self.population:
            raise ValueError(f"elites ({self.elites}) must be <= population ({self.population})")


@dataclass(frozen=True)
class RouteConfig(PlannerSection):
    """Routes over a waypoint graph under the temporal distance: the ``landmarks`` high level
    (the model's waypoints) and the ``imagined`` one (a graph grown from P_hi, ``[planner.imagined]``)."""

    edge: float = field(default=16.0, metadata=meta(
        "steps along the route to the waypoint handed to the low level (and, for a graph without "
        "experience edges, longest temporal distance of an edge)", gt=0.0))
    attach: float = field(default=4.0, metadata=meta(
        "with an experience graph (the model's, or an imagined one): temporal distance within which the agent "
        "and the goal attach to a waypoint, and the goal is approached directly", gt=0.0))
    patience: int = field(default=12, metadata=meta(
        "steps without progress along the route (or towards the goal, going straight) after which the agent "
        "gives up the waypoints it was handed meanwhile and reroutes (0 = never)", ge=0))
    edge_samples: int = field(default=0, metadata=meta(
        "with guardrails: points on the latent segment between two joined waypoints at which the heads price "
        "the edge (0 = price the waypoints only)", ge=0, le=64))


@dataclass(frozen=True)
class ImaginedConfig(PlannerSection):
    """How the ``imagined`` high level grows its graph of P_hi subgoals (:mod:`hplan.planning.imagination`)."""

    branches: int = field(default=16, metadata=meta(
        "subgoals sampled from the prior at each frontier node per round", ge=1, le=1024))
    frontier: int = field(default=48, metadata=meta(
        "nodes expanded, and most new nodes taken, per round (best first)", ge=1, le=1024))
    depth: int = field(default=32, metadata=meta("most rounds of growth", ge=1, le=256))
    nodes: int = field(default=512, metadata=meta("most nodes in the graph", ge=2, le=4096))
    regrow_on_stall: bool = field(default=True, metadata=meta(
        "regrow the graph from the agent's latent when the progress watch gives waypoints up (fresh subgoals "
        "sampled where the agent is, instead of the rest of a graph imagined from afar)"))


@dataclass(frozen=True)
class BudgetConfig(PlannerSection):
    """Equal-compute comparisons: search sizes derived from predictor evaluations per step."""

    evals: int = field(default=0, metadata=meta(
        "predictor evaluations per agent step (0 = use the populations as given); sets the populations of "
        "flat and hierarchical planners so both spend at most this many. Not together with "
        "search.population/codes.population in one file; a later layer (suite, study, --set) that sets a "
        "population turns it off (`hplan scenario check` prints the resulting search)", ge=0, le=10_000_000))


@dataclass(frozen=True)
class PlannerConfig(PlannerSection):
    """How the agent plans: flat (low level straight at the goal) or hierarchical."""

    kind: Literal["flat", "hier"] = field(default="hier", metadata=meta("flat baseline or hierarchical planner"))
    low: Literal["cem", "mppi", "grad", "cem_discrete"] = field(
        default="cem", metadata=meta(
        "low-level optimiser; on discrete action spaces cem/mppi mean categorical CEM (cem_discrete)"))
    high: Literal["codes", "landmarks", "imagined"] = field(default="codes", metadata=meta(
        "hierarchical high level: `codes` (MPC over subgoal codes rolled out with P_hi; [planner.codes]), "
        "`landmarks` (shortest routes over the model's waypoint latents under the temporal distance; no "
        "predictor evaluations; [planner.route]) or `imagined` (the same routes over a graph of P_hi subgoals "
        "grown from the agent's own latent: no memory of training data; [planner.imagined])"))
    horizon: int = field(default=10, metadata=meta("low-level planning horizon (steps)", ge=1, le=512))
    device: str = field(default="auto", metadata=meta("torch device: auto, cpu, cuda, ..."))
    search: SearchConfig = field(default_factory=SearchConfig, metadata=meta("[planner.search] section"))
    grad: GradConfig = field(default_factory=GradConfig, metadata=meta("[planner.grad] section"))
    energy: EnergyConfig = field(default_factory=EnergyConfig, metadata=meta("[planner.energy] section"))
    correction: CorrectionConfig = field(default_factory=CorrectionConfig,
                                         metadata=meta("[planner.correction] section"))
    codes: CodesConfig = field(default_factory=CodesConfig, metadata=meta("[planner.codes] section"))
    route: RouteConfig = field(default_factory=RouteConfig, metadata=meta("[planner.route] section"))
    imagined: ImaginedConfig = field(default_factory=ImaginedConfig, metadata=meta("[planner.imagined] section"))
    budget: BudgetConfig = field(default_factory=BudgetConfig, metadata=meta("[planner.budget] section"))



@dataclass(frozen=True)
class GuardrailConfig:
    """How guardrail-head predictions enter the planner's energy."""

    mode: Literal["off", "penalty", "hard", "lagrangian"] = field(
        default="penalty", metadata=meta("off, weighted penalty, hard constraint or Lagrangian"))
    weight: float = field(default=3.0, metadata=meta(
        "penalty weight on predicted violation probability (steps of distance one predicted violation is worth)",
        ge=0.0))
    threshold: float = field(default=0.5, metadata=meta("probability above which a candidate is unsafe", gt=0.0, lt=1.0))
    risk: float | None = field(default=None, metadata=meta(
        "risk level δ: each head's threshold becomes its conformal one (at most δ of held-out violating "
        "transitions fall under it; the model's calibration.json); replaces `threshold`. Hard mode rules out "
        "what it flags; penalty and Lagrangian modes price only the margin over it, (p - τ)/(1 - τ)", gt=0.0, lt=1.0))
    budget: float = field(default=0.02, metadata=meta("Lagrangian mode: allowed mean violation probability", ge=0.0, le=1.0))
    multiplier_init: float = field(default=1.0, metadata=meta("Lagrangian mode: initial multiplier", ge=0.0))
    multiplier_max: float = field(default=100.0, metadata=meta("Lagrangian mode: cap on the multiplier", gt=0.0))
    multiplier_update: Literal["dual", "pid"] = field(default="pid", metadata=meta(
        "Lagrangian mode: plain dual ascent or a PID controller on (predicted risk - budget)"))
    lagrangian_lr: float = field(default=5.0, metadata=meta(
        "Lagrangian mode: dual-ascent step / PID integral gain per planning step", ge=0.0))
    pid_kp: float = field(default=10.0, metadata=meta("Lagrangian PID mode: proportional gain", ge=0.0))
    pid_kd: float = field(default=0.0, metadata=meta("Lagrangian PID mode: derivative gain", ge=0.0))
    names: tuple[str, ...] = field(default=(), metadata=meta(
        "the guardrail heads the planner heeds, by name (empty = all the model has); the others are still logged"))
    members: Literal["mean", "max"] = field(default="mean", metadata=meta(
        "a model with a guardrail ensemble ([model] guardrail_members > 1): heed the members' mean "
        "probability, or the largest (pessimistic: a way is risky when any member says so)"))
