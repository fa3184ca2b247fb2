"""hplan's sampling planners against pytorch-mppi on one point-mass problem: time per plan, success, ratios.

The problem (issue 26): a 2-D point mass, state (x, y, vx, vy), force u in [-1, 1]², unit mass,
dt 0.1, semi-implicit Euler (v += dt·u, then p += dt·v); start (0, 0) at rest, goal (1, 1);
success when |p − g| ≤ 0.05 within 100 steps; running cost |p − g| + 0.05|v|² + 0.001|u|²;
horizon 15. Problem ``wall`` adds a wall at x = 0.5 with a door below the straight line to the
goal (a crossing outside the door is stopped: x stays, vx = 0), so a greedy plan presses into
the wall. Receding horizon: each step plans, executes the first action, and warm-starts the
next plan (pytorch-mppi shifts its nominal sequence, hplan's ``RecedingHorizon`` its mean).

* **peer**: ``pytorch_mppi.MPPI`` (0.9.1; ``pip install -e ".[bench]"``) with noise σ² = 0.5·I,
  λ = 0.1, the box as ``u_min``/``u_max``, its defaults otherwise. It calls ``dynamics(state, u)``
  and ``running_cost(state, u)`` once per time step (its API).
* **hplan**: CEM and MPPI built by name through ``hplan.planning.registry.make_optimizer`` with
  ``PlannerConfig()``'s search settings, elites = K / 8, wrapped in ``RecedingHorizon``. Its
  objective steps the *same* ``dynamics`` function and applies the *same* ``stage_cost`` once to
  the stacked trajectory (as ``hplan.planning.energy`` scores a predicted latent trajectory);
  ``--per-step-cost`` adds hplan MPPI calling ``running_cost`` per step like the peer, which
  separates what the optimiser saves from what the objective's shape saves.

Everything runs in one process on one thread (``torch.set_num_threads(1)``). Episodes are
interleaved: episode i of every configuration runs before episode i + 1 of any, in a rotating
order, so drift of a shared machine hits all alike. Time per plan is the median over every plan
call of a configuration (the wall time of the call, nothing else); ratios are hplan / peer.

Tables per problem: (1) equal samples per plan — hplan at 1 iteration of K candidates against
the peer's K samples, and at ``PlannerConfig().search.iterations`` for reference; (2) equal success —
per success level the peer reaches, the fastest configuration of each side that reaches it
(``--ladder`` adds hplan configurations to choose from); (3) every configuration. Figures only;
nothing is asserted (issue 26's target: ratio ≤ 0.5 at K = 256 and 4,096, and at equal
success). 7 to 10 minutes on the 2-core CPU with other jobs running (the ratios moved by up to
0.2 between two such runs); ``--quick`` under a minute.

    python benchmarks/bench_vs_pytorch_mppi.py [--quick] [--episodes 20] [--samples 64 256 4096]
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from hplan.planning.config import PlannerConfig
from hplan.planning.mpc import RecedingHorizon
from hplan.planning.registry import Sizes, make_optimizer
from hplan.planning.types import Evaluation, SearchSpace

app = typer.Typer(add_completion=False)
console = Console(width=160)

DT = 0.1
HORIZON = 15
MAX_STEPS = 100
TOLERANCE = 0.05
GOAL = (1.0, 1.0)
NOISE_SIGMA2 = 0.5
LAMBDA = 0.1
VELOCITY_WEIGHT, FORCE_WEIGHT = 0.05, 0.001
WALL_X = 0.5


@dataclass(frozen=True)
class Problem:
    """The point mass, optionally behind a wall at x = 0.5 with a door ``door`` (a y interval)."""

    name: str
    door: Optional[tuple[float, float]] = None

    def dynamics(self, state: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``(K, 4)`` states and ``(K, 2)`` forces → ``(K, 4)`` next states (semi-implicit Euler)."""
        u = u.clamp(-1.0, 1.0)
        vel = state[:, 2:] + DT * u
        pos = state[:, :2] + DT * vel
        if self.door is not None:
            before, after = state[:, 0] - WALL_X, pos[:, 0] - WALL_X
            frac = before.abs() / (before.abs() + after.abs()).clamp_min(1e-12)
            y_cross = state[:, 1] + frac * (pos[:, 1] - state[:, 1])
            blocked = (before * after < 0) & ((y_cross < self.door[0]) | (y_cross > self.door[1]))
            pos = torch.stack([torch.where(blocked, state[:, 0], pos[:, 0]), pos[:, 1]], 1)
            vel = torch.stack([vel[:, 0].masked_fill(blocked, 0.0), vel[:, 1]], 1)
        return torch.cat([pos, vel], 1)

    def running_cost(self, state: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``(K,)`` cost of arriving in ``state`` by force ``u`` (the peer's per-step callback)."""
        return stage_cost(state, u.clamp(-1.0, 1.0))

    def trajectory_cost(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``(N,)`` summed running cost of ``(N, H, 2)`` force sequences from one ``(4,)`` state:
        the same ``dynamics`` stepped H times, the same cost applied once to the stacked states."""
        current = state.expand(actions.shape[0], -1)
        states = []
        for t in range(actions.shape[1]):
            current = self.dynamics(current, actions[:, t])
            states.append(current)
        return stage_cost(torch.stack(states, 1), actions.clamp(-1.0, 1.0)).sum(1)

    def per_step_cost(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The same sum with ``running_cost`` called once per step (the peer's shape)."""
        current = state.expand(actions.shape[0], -1)
        total = torch.zeros(actions.shape[0])
        for t in range(actions.shape[1]):
            current = self.dynamics(current, actions[:, t])
            total = total + self.running_cost(current, actions[:, t])
        return total

    def distance(self, state: torch.Tensor) -> float:
        return float((state[:2] - state.new_tensor(GOAL)).norm())


def stage_cost(state: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """|p − g| + 0.05|v|² + 0.001|u|² over the last axis of states ``(..., 4)`` and forces ``(..., 2)``
    (per coordinate: a norm over an axis of two is several times slower in torch on a CPU)."""
    return (torch.hypot(state[..., 0] - GOAL[0], state[..., 1] - GOAL[1])
            + VELOCITY_WEIGHT * (state[..., 2] ** 2 + state[..., 3] ** 2) + FORCE_WEIGHT * (u[..., 0] ** 2 + u[..., 1] ** 2))


PROBLEMS = {"open": Problem("open"), "wall": Problem("wall", door=(0.05, 0.3))}

Planner = Callable[[torch.Tensor], torch.Tensor]
"""One episode's controller: state ``(4,)`` → force ``(2,)``, planning on every call."""


@dataclass(frozen=True)
class Arm:
    """A configuration: who plans (``peer`` or ``hplan``), with what, and how much."""

    side: str
    optimizer: str
    samples: int
    iterations: int
    start: Callable[[Problem, int], Planner] = field(compare=False, repr=False)

    @property
    def label(self) -> str:
        its = "" if self.side == "peer" else f" x{self.iterations}"
        return f"{self.side} {self.optimizer} K={self.samples:,}{its}"


def peer_arm(samples: int) -> Arm:
    from pytorch_mppi import MPPI

    def start(problem: Problem, seed: int) -> Planner:
        torch.manual_seed(seed)  # the peer draws from torch's global generator (its initial U too)
        ctrl = MPPI(problem.dynamics, problem.running_cost, 4, noise_sigma=NOISE_SIGMA2 * torch.eye(2),
                    num_samples=samples, horizon=HORIZON, lambda_=LAMBDA, u_min=-torch.ones(2),
                    u_max=torch.ones(2), device="cpu")
        return ctrl.command

    return Arm("peer", "mppi", samples, 1, start)


def hplan_arm(name: str, samples: int, iterations: int, per_step: bool = False) -> Arm:
    space = SearchSpace(HORIZON, 2)
    sizes = Sizes(population=samples, iterations=iterations, elites=max(1, samples // 8))

    def start(problem: Problem, seed: int) -> Planner:
        mpc = RecedingHorizon(make_optimizer(name, space, PlannerConfig(), sizes), torch.device("cpu"))
        gen = torch.Generator().manual_seed(seed)
        score = problem.per_step_cost if per_step else problem.trajectory_cost

        def plan(state: torch.Tensor) -> torch.Tensor:
            def objective(actions: torch.Tensor) -> Evaluation:
                return Evaluation.unconstrained(score(state, actions), actions.shape[0] * actions.shape[1])

            return mpc.plan(objective, gen).actions[0]

        return plan

    return Arm("hplan" + (" per-step" if per_step else ""), name, samples, iterations, start)


@dataclass
class Cell:
    """What one configuration did on one problem."""

    plan_seconds: list[float] = field(default_factory=list)
    successes: int = 0
    episodes: int = 0

    @property
    def ms(self) -> float:
        return 1000 * statistics.median(self.plan_seconds)


def play(problem: Problem, arm: Arm, seed: int, cell: Cell) -> None:
    """One episode; plan-call wall times and the outcome go into ``cell``."""
    planner = arm.start(problem, seed)
    state = torch.zeros(4)
    success = False
    for _ in range(MAX_STEPS):
        t0 = time.perf_counter()
        action = planner(state)
        cell.plan_seconds.append(time.perf_counter() - t0)
        state = problem.dynamics(state[None], action.detach()[None])[0]
        if problem.distance(state) <= TOLERANCE:
            success = True
            break
    cell.successes += success
    cell.episodes += 1


def measure(problem: Problem, arms: list[Arm], episodes: int, progress: Progress) -> dict[Arm, Cell]:
    """Every arm's episodes 0..episodes-1, interleaved (episode-major, rotating order)."""
    cells = {arm: Cell() for arm in arms}
    task = progress.add_task(f"{problem.name}: {len(arms)} configurations x {episodes} episodes",
                             total=episodes * len(arms))
    for episode in range(episodes):
        shift = episode % len(arms)
        for arm in arms[shift:] + arms[:shift]:
            play(problem, arm, seed=1000 + episode, cell=cells[arm])
            progress.advance(task)
    return cells


def equal_samples_table(problem: Problem, cells: dict[Arm, Cell], samples: list[int]) -> Table:
    table = Table(title=f"{problem.name}: equal samples per plan (median ms per plan; ratio = hplan / peer)")
    for col in ("K", "peer ms", "peer success", "hplan configuration", "hplan ms", "hplan success", "ratio"):
        table.add_column(col, justify="right")
    for k in samples:
        peer = next(c for a, c in cells.items() if a.side == "peer" and a.samples == k)
        rows = sorted((a for a in cells if a.side != "peer" and a.samples == k),
                      key=lambda a: (a.iterations, a.side, a.optimizer))
        for i, arm in enumerate(rows):
            cell = cells[arm]
            table.add_row(f"{k:,}" if i == 0 else "", f"{peer.ms:.2f}" if i == 0 else "",
                          f"{peer.successes}/{peer.episodes}" if i == 0 else "", arm.label.split(" K=")[0]
                          + f" x{arm.iterations}", f"{cell.ms:.2f}", f"{cell.successes}/{cell.episodes}",
                          f"{cell.ms / peer.ms:.2f}")
    return table


def fastest(cells: dict[Arm, Cell], side: Callable[[Arm], bool], successes: int) -> Optional[tuple[Arm, Cell]]:
    reaching = [(a, c) for a, c in cells.items() if side(a) and c.successes >= successes]
    return min(reaching, key=lambda ac: ac[1].ms, default=None)


def equal_success_table(problem: Problem, cells: dict[Arm, Cell]) -> Table:
    table = Table(title=f"{problem.name}: equal success — the fastest configuration of each side reaching the "
                  "peer's success levels (ratio = hplan / peer)")
    for col in ("success", "peer fastest", "peer ms", "hplan fastest", "hplan ms", "ratio"):
        table.add_column(col, justify="right")
    levels = sorted({c.successes for a, c in cells.items() if a.side == "peer"}, reverse=True)
    for level in levels:
        peer = fastest(cells, lambda a: a.side == "peer", level)
        ours = fastest(cells, lambda a: a.side == "hplan", level)
        assert peer is not None
        episodes = peer[1].episodes
        if ours is None:
            table.add_row(f"{level}/{episodes}", peer[0].label, f"{peer[1].ms:.2f}", "none reaches it", "", "")
            continue
        table.add_row(f"{level}/{episodes}", peer[0].label, f"{peer[1].ms:.2f}",
                      f"{ours[0].label} ({ours[1].successes}/{episodes})", f"{ours[1].ms:.2f}",
                      f"{ours[1].ms / peer[1].ms:.2f}")
    return table


def every_table(problem: Problem, cells: dict[Arm, Cell]) -> Table:
    table = Table(title=f"{problem.name}: every configuration (median and mean ms per plan)")
    for col in ("configuration", "median ms", "mean ms", "success", "plans"):
        table.add_column(col, justify="right")
    for arm, cell in sorted(cells.items(), key=lambda ac: ac[1].ms):
        table.add_row(arm.label, f"{cell.ms:.2f}", f"{1000 * statistics.fmean(cell.plan_seconds):.2f}",
                      f"{cell.successes}/{cell.episodes}", f"{len(cell.plan_seconds):,}")
    return table


def parse_ladder(items: list[str]) -> list[tuple[int, int]]:
    """``["16x1", "1024x3"]`` → ``[(16, 1), (1024, 3)]``."""
    try:
        return [(int(k), int(i)) for k, i in (item.lower().split("x") for item in items)]
    except ValueError as err:
        raise typer.BadParameter(f"--ladder takes KxITERATIONS items such as 1024x2 ({err})") from None


def arms_for(samples: list[int], iterations: list[int], ladder: list[tuple[int, int]], per_step: bool) -> list[Arm]:
    arms = [peer_arm(k) for k in samples]
    search = sorted({(k, its) for k in samples for its in iterations} | set(ladder))
    arms += [hplan_arm(name, k, its) for name in ("cem", "mppi") for k, its in search]
    if per_step:
        arms += [hplan_arm("mppi", k, 1, per_step=True) for k in samples]
    return arms


@app.command()
def main(episodes: int = typer.Option(20, min=1, help="seeded episodes per configuration and problem"),
         samples: list[int] = typer.Option([64, 256, 4096], help="K: samples per plan compared at equal samples"),
         ladder: list[str] = typer.Option(["16x1", "32x1", "1024x2"],
                                          help="more hplan configurations (KxITERATIONS), for equal success"),
         problems: list[str] = typer.Option(["open", "wall"], help=f"of {', '.join(PROBLEMS)}"),
         per_step_cost: bool = typer.Option(False, help="also hplan MPPI with the cost called per step"),
         quick: bool = typer.Option(False, help="5 episodes, K <= 256, open problem only (a first look)")) -> None:
    """Print the tables per problem: equal samples, equal success, every configuration."""
    try:
        import pytorch_mppi  # noqa: F401
    except ImportError:
        console.print('error: pytorch-mppi is not installed: pip install -e ".[bench]"')
        raise typer.Exit(1) from None
    torch.set_num_threads(1)
    rungs = parse_ladder(ladder)
    if quick:
        episodes, problems = min(episodes, 5), ["open"]
        samples, rungs = [k for k in samples if k <= 256] or samples[:1], [r for r in rungs if r[0] <= 256]
    unknown = sorted(set(problems) - set(PROBLEMS))
    if unknown:
        raise typer.BadParameter(f"--problems: unknown {unknown} (known: {', '.join(PROBLEMS)})")
    iterations = sorted({1, PlannerConfig().search.iterations})
    arms = arms_for(samples, iterations, rungs, per_step_cost)
    console.print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, horizon {HORIZON}, "
                  f"{episodes} episodes per configuration, {len(arms)} configurations, "
                  f"peer σ² = {NOISE_SIGMA2}, λ = {LAMBDA}")
    results = {}
    with Progress(console=console, transient=True) as progress:
        for name in problems:
            results[name] = measure(PROBLEMS[name], arms, episodes, progress)
    for name, cells in results.items():
        console.print(equal_samples_table(PROBLEMS[name], cells, samples))
        console.print(equal_success_table(PROBLEMS[name], cells))
        console.print(every_table(PROBLEMS[name], cells))


if __name__ == "__main__":
    app()
