"""Planner and guardrail settings ([planner] and [guardrails] in a scenario file).

Defaults are tuned so that one hierarchical plan step of the default model fits 100 ms on a
2-core CPU (see ``benchmarks/bench_planners.py``). Every field is documented; the scenario loader
checks the bounds and names the file and field on a bad value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hplan.configio import meta


MAX_POPULATION = 65536
"""Upper bound of candidate counts: 512x the largest shipped search, still chunked by ``max_batch``.
Without a bound a typo (a population of 10^9) passed ``scenario check`` and failed mid-episode."""
MAX_ITERATIONS = 1000
"""Upper bound of optimiser iterations / steps per plan (shipped files use at most 20)."""


@dataclass(frozen=True)
class PlannerConfig:
    """How the agent plans: flat (low level straight at the goal) or hierarchical."""

    kind: Literal["flat", "hier"] = field(default="hier", metadata=meta("flat baseline or hierarchical planner"))
    low: Literal["cem", "mppi", "grad", "cem_discrete"] = field(
        default="cem", metadata=meta(
        "low-level optimiser; on discrete action spaces cem/mppi mean categorical CEM (cem_discrete)"))
    horizon: int = field(default=10, metadata=meta("low-level planning horizon (steps)", ge=1, le=512))
    population: int = field(default=128, metadata=meta("candidates per iteration", ge=2, le=MAX_POPULATION))
    iterations: int = field(default=3, metadata=meta("optimiser iterations per plan", ge=1, le=MAX_ITERATIONS))
    elites: int = field(default=16, metadata=meta("elite candidates kept by CEM (and weighted by MPPI)", ge=1))
    device: str = field(default="auto", metadata=meta("torch device: auto, cpu, cuda, ..."))
    # --- sampling-based optimisers -------------------------------------------------------------
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
        "0 = auto: 256 on CPU (cache-sized chunks ran ~1.7x faster at 4,096 candidates), 16384 on a GPU", ge=0))
    # --- gradient planner ------------------------------------------------------------------------
    grad_lr: float = field(default=0.1, metadata=meta("Adam step size on the action sequence (grad planner)", gt=0.0))
    grad_restarts: int = field(default=8, metadata=meta(
        "action sequences optimised in parallel by the grad planner; the best is kept", ge=1, le=MAX_POPULATION))
    grad_steps: int = field(default=20, metadata=meta("Adam steps per plan (grad planner)", ge=1, le=MAX_ITERATIONS))
    # --- energy -----------------------------------------------------------------------------------
    task_cost: Literal["temporal", "l2"] = field(default="temporal", metadata=meta(
        "distance to the goal/subgoal: learned temporal distance or latent L2"))
    running_weight: float = field(default=1.0, metadata=meta(
        "weight of the mean per-step distance added to the terminal distance (0 = terminal only)", ge=0.0))
    goal_ends_episode: bool = field(default=True, metadata=meta(
        "going for the episode's goal, risk predicted after arriving (distance <= subgoal_reached) is not "
        "counted: the episode ends there"))
    correction_memory: int = field(default=32, metadata=meta(
        "transitions of the episode whose prediction error (observed minus predicted next latent) corrects "
        "the low level's rollouts near where they were seen (0 = off; see hplan.planning.correction). "
        "32 was chosen on val in two and four rooms (benchmarks/results.toml, recipe tables)", ge=0, le=1024))
    correction_radius: float = field(default=1.0, metadata=meta(
        "kernel width of that correction in latent space, in median one-step moves of the episode", gt=0.0))
    correction_action_width: float = field(default=0.5, metadata=meta(
        "kernel width of that correction over actions (continuous actions in their own units)", gt=0.0))
    correction_threshold: float = field(default=0.25, metadata=meta(
        "errors smaller than this many median one-step moves are not remembered (the model's noise)", ge=0.0))
    # --- hierarchical planner -------------------------------------------------------------------
    high: Literal["codes", "landmarks", "imagined"] = field(default="codes", metadata=meta(
        "hierarchical high level: `codes` (MPC over subgoal codes rolled out with P_hi), `landmarks` "
        "(shortest routes over the model's waypoint latents under the temporal distance; no predictor "
        "evaluations) or `imagined` (the same routes over a graph of P_hi subgoals grown from the agent's "
        "own latent: no memory of training data; hplan.planning.imagination)"))
    landmark_edge: float = field(default=16.0, metadata=meta(
        "`landmarks`: steps along the route to the waypoint handed to the low level (and, for a model "
        "without an experience graph, longest temporal distance of an edge)", gt=0.0))
    landmark_attach: float = field(default=4.0, metadata=meta(
        "`landmarks` with the model's experience graph: temporal distance within which the agent and "
        "the goal attach to a waypoint, and the goal is approached directly", gt=0.0))
    landmark_patience: int = field(default=12, metadata=meta(
        "`landmarks`: steps without progress along the route (or towards the goal, going straight) after "
        "which the agent gives up the waypoints it was handed meanwhile and reroutes (0 = never)", ge=0))
    landmark_edge_samples: int = field(default=0, metadata=meta(
        "`landmarks` with guardrails: points on the latent segment between two joined waypoints at which the "
        "heads price the edge (0 = price the waypoints only)", ge=0, le=64))
    landmark_slack: float = field(default=4.0, metadata=meta(
        "`landmarks` with the model's experience graph: drop an edge whose temporal distance exceeds the "
        "steps the data took by more than this (a visit counted across a wall)", gt=0.0))
    imagine_branches: int = field(default=16, metadata=meta(
        "`imagined`: subgoals sampled from the prior at each frontier node per round", ge=1, le=1024))
    imagine_frontier: int = field(default=48, metadata=meta(
        "`imagined`: nodes expanded, and most new nodes taken, per round (best first)", ge=1, le=1024))
    imagine_depth: int = field(default=32, metadata=meta("`imagined`: most rounds of growth", ge=1, le=256))
    imagine_nodes: int = field(default=512, metadata=meta("`imagined`: most nodes in the graph", ge=2, le=4096))
    imagine_merge: float = field(default=0.5, metadata=meta(
        "`imagined`: a subgoal within this many k-step jumps (learned distance, both ways) of a node is that node",
        gt=0.0))
    imagine_reach: float = field(default=1.5, metadata=meta(
        "`imagined`: a subgoal the learned distance puts more than this many k-step jumps from its parent is "
        "dropped", gt=0.0))
    imagine_rebuild: int = field(default=0, metadata=meta(
        "`imagined`: regrow the graph from the current latent every this many steps (0 = only when the route "
        "runs out: every node handed so far was given up)", ge=0))
    imagine_regrow_on_stall: bool = field(default=True, metadata=meta(
        "`imagined`: regrow the graph from the agent's latent when the progress watch gives waypoints up "
        "(fresh subgoals sampled where the agent is, instead of the rest of a graph imagined from afar)"))
    high_optimizer: Literal["cem", "mppi"] = field(default="cem", metadata=meta("optimiser over subgoal codes"))
    high_horizon: int = field(default=4, metadata=meta(
        "L: high-level steps planned (each jumps subgoal_interval low-level steps)", ge=1, le=64))
    high_population: int = field(default=128, metadata=meta("candidate code sequences per high-level iteration", ge=2,
                                                                              le=MAX_POPULATION))
    high_iterations: int = field(default=3, metadata=meta("high-level optimiser iterations", ge=1, le=MAX_ITERATIONS))
    high_elites: int = field(default=16, metadata=meta("high-level elites", ge=1))
    code_bound: float = field(default=3.0, metadata=meta(
        "subgoal codes are searched in [-code_bound, code_bound]^code_dim (codes are whitened: N(0, I) prior)",
        gt=0.0))
    high_init_std: float = field(default=1.0, metadata=meta(
        "initial sampling std of the high-level search over codes (absolute; 1 = the codes' prior)", gt=0.0))
    high_running_weight: float = field(default=0.5, metadata=meta(
        "high level: weight of the mean distance of the predicted subgoals to the goal (rewards early progress)",
        ge=0.0))
    reach_weight: float = field(default=1.0, metadata=meta(
        "weight of the per-step reachability cost relu(d(z_l, z_l+1) - k) in the high-level energy", ge=0.0))
    replan_every: int = field(default=8, metadata=meta(
        "replan the high level at least every this many low-level steps", ge=1))
    subgoal_reached: float = field(default=2.0, metadata=meta(
        "temporal distance below which the subgoal counts as reached (triggers a high-level replan)", ge=0.0))
    subgoal_lost: float = field(default=3.0, metadata=meta(
        "replan the high level when the distance to the subgoal grew by more than this since the last step",
        gt=0.0))
    direct_reach: float = field(default=8.0, metadata=meta(
        "when the goal's temporal distance is below this, the low level goes straight for the goal", ge=0.0))
    # --- fair comparisons -----------------------------------------------------------------------
    eval_budget: int = field(default=0, metadata=meta(
        "predictor evaluations per agent step (0 = use population/iterations as given); sets the "
        "populations of flat and hierarchical planners so both spend at most this many. Not together with "
        "population/high_population in one file; a later layer (suite, study, --set) that sets a population "
        "turns it off (`hplan scenario check` prints the resulting search)", ge=0, le=10_000_000))
    high_share: float = field(default=0.25, metadata=meta(
        "hierarchical planner: fraction of eval_budget spent on the high level when it replans", gt=0.0, lt=1.0))

    def __post_init__(self) -> None:
        if self.elites > self.population:
            raise ValueError(f"elites ({self.elites}) must be <= population ({self.population})")
        if self.high_elites > self.high_population:
            raise ValueError(f"high_elites ({self.high_elites}) must be <= high_population ({self.high_population})")
        if self.min_std > self.init_std:
            raise ValueError(f"min_std ({self.min_std}) must be <= init_std ({self.init_std})")


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
