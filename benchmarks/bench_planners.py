"""Planner throughput: predictor transitions/s, ms per plan, and achieved FLOP/s vs. dense-matmul peak.

For CEM and MPPI at 256, 1,024 and 4,096 candidates (flat low level, default horizon and
iterations, guardrails in penalty mode so every term of the energy is paid) it prints

* predictor transitions/s — ``model.predict`` alone on ``(N, H)`` candidates;
* ms per planning step — one full ``optimize`` call (sampling, predictor, temporal distance,
  guardrail heads, elite updates);
* achieved FLOP/s of that planning step as a fraction of this machine's dense float32 matmul
  peak, measured in the same run (best of several ``torch.mm`` of two 2048² matrices). FLOPs are
  counted by ``torch.utils.flop_counter`` (matmuls only, so the fraction is conservative);

then the cost of the episodic dynamics correction (``planner.correction.memory``; a CEM plan with
its memory full, against the same plan without it, in the same run), then times the *default*
agent (``PlannerConfig()``) end to end: one ``act`` of the hierarchical
planner (image observation in, action out), on a step where the high level replans and on a
step where it does not, and the flat planner for reference. Target on CPU: ≥ 40 % of peak at
4,096 candidates and a hierarchical plan step ≤ 100 ms.

The model is ``hplan.models.world_model.LatentWorldModel`` at its default size (random weights:
timing does not depend on them) when that package imports; otherwise an MLP predictor of the
same shape that implements the protocol. The output says which.

    python benchmarks/bench_planners.py [--device auto] [--repeats 3] [--candidates 256 1024 4096]
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import typer
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from hplan.device import resolve_device
from hplan.planning.agent import make_agent
from hplan.planning.budget import resolve_budget
from hplan.planning.config import CORRECTION_ACTION_WIDTH, CORRECTION_RADIUS, CodesConfig, GuardrailConfig, PlannerConfig
from hplan.planning.correction import ResidualMemory
from hplan.planning.energy import Energy
from hplan.vocabulary.protocol import ActionSpec
from hplan.planning.registry import Sizes, make_optimizer
from hplan.planning.types import SearchSpace

app = typer.Typer(add_completion=False)
console = Console(width=200)
GUARDRAILS = ("wall_contact", "restricted_zone")
IMAGE_SHAPE = (64, 64, 3)
CORRECTION_MEMORY = 32  # the two-rooms and maze scenarios' setting


def build_model(device: torch.device):
    """The default-size world model (image observations), or an equivalent MLP stand-in."""
    try:
        from hplan.models.config import ModelConfig
        from hplan.models.world_model import LatentWorldModel
    except ImportError as err:  # the models package has not landed: same-shaped MLPs instead
        return _MlpModel().to(device), f"protocol MLP stand-in (hplan.models unavailable: {err})"
    model = LatentWorldModel(ModelConfig(), obs_kind="image", obs_shape=IMAGE_SHAPE, action_spec=ActionSpec(2),
                             guardrail_names=GUARDRAILS, env_id="hplan/PointRooms-v0")
    for param in model.parameters():  # zero-initialised last layers would make rollouts trivial
        if param.dim() > 1:
            torch.nn.init.normal_(param, std=0.5 / param.shape[1] ** 0.5)
    cfg = model.cfg
    return model.to(device).eval(), (f"hplan.models LatentWorldModel (default ModelConfig: latent {cfg.latent_dim}, "
                                     f"hidden {cfg.hidden_dim}, predictor layers {cfg.predictor_layers}, "
                                     "random weights)")


class _MlpModel(torch.nn.Module):
    """Protocol-complete MLPs of the default shape (latent 32, hidden 256, two hidden layers)."""

    latent_dim, code_dim, subgoal_interval, guardrail_names = 32, 8, 8, GUARDRAILS
    action_spec = ActionSpec(2)

    def __init__(self) -> None:
        super().__init__()
        d, h = 32, 256

        def mlp(i: int, o: int) -> torch.nn.Sequential:
            return torch.nn.Sequential(torch.nn.Linear(i, h), torch.nn.ReLU(), torch.nn.Linear(h, h), torch.nn.ReLU(),
                                       torch.nn.Linear(h, o))

        self.enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(IMAGE_SHAPE)), d))
        self.p_lo, self.p_hi, self.dist, self.guard = mlp(d + 2, d), mlp(d + 8, d), mlp(d, 32), mlp(d + 2, 2)
        self.guard_state = mlp(d, 2)

    def encode(self, obs):
        return self.enc(obs.float() / 255.0)

    def predict(self, z, actions):
        out = []
        for t in range(actions.shape[1]):
            z = z + self.p_lo(torch.cat([z, actions[:, t]], -1))
            out.append(z)
        return torch.stack(out, 1)

    def predict_high(self, z, codes):
        out = []
        for t in range(codes.shape[1]):
            z = z + self.p_hi(torch.cat([z, codes[:, t]], -1))
            out.append(z)
        return torch.stack(out, 1)

    def heads(self, z, actions=None):
        if actions is None:
            return torch.sigmoid(self.guard_state(z))
        return torch.sigmoid(self.guard(torch.cat([z, actions.expand(*z.shape[:-1], 2)], -1)))

    def temporal_distance(self, z, z_goal):
        return (self.dist(z) - self.dist(z_goal)).norm(dim=-1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """Best-of-N wall seconds, and process CPU seconds of that same call.

    On a shared machine wall time measures the contention as much as the code; CPU seconds
    (all threads) divided by the thread count estimate the wall time the call would take with
    the cores to itself, and FLOP per CPU-second is comparable between the matmul peak and the
    planner measured under the same load. Both are printed. On CUDA only wall time is meaningful.
    """

    wall: float
    cpu: float

    @property
    def alone(self) -> float:
        """Estimated uncontended wall time (CPU seconds over threads; wall time on a GPU)."""
        return self.cpu / torch.get_num_threads() if self.cpu > 0 else self.wall


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> Timing:
    """Best-of-``repeats`` timing (after one warm-up call)."""
    fn()
    _sync(device)
    best = Timing(float("inf"), float("inf"))
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        if device.type != "cpu":
            cpu = 0.0
        if wall < best.wall:
            best = Timing(wall, cpu)
    return best


def matmul_peak(device: torch.device, size: int = 2048, repeats: int = 5) -> tuple[float, float]:
    """Dense float32 matmul FLOP/s on this device: (by wall time, by uncontended estimate)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    t = timed(lambda: torch.mm(a, b), device, repeats)
    return 2 * size**3 / t.wall, 2 * size**3 / t.alone


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def bench_optimizers(model, device, cfg: PlannerConfig, candidates: list[int], repeats: int,
                     peak: tuple[float, float]) -> Table:
    table = Table(title=f"flat planning step (horizon {cfg.horizon}, {cfg.search.iterations} iterations, guardrails: "
                  "penalty); wall | uncontended estimate (CPU s / threads)")
    for col in ("optimiser", "candidates", "predictor transitions/s", "ms / plan", "GFLOP / plan",
                "GFLOP/s", "% of peak (plan)", "% of peak (predictor)"):
        table.add_column(col, justify="right")
    energy = Energy(model, cfg, GuardrailConfig(mode="penalty"))
    z0 = torch.randn(model.latent_dim, device=device)
    goal = torch.randn(model.latent_dim, device=device)
    space = SearchSpace(cfg.horizon, model.action_spec.dim)
    for name in ("cem", "mppi"):
        for n in candidates:
            sizes = Sizes(population=n, iterations=cfg.search.iterations, elites=max(1, n // 8))
            optimizer = make_optimizer(name, space, cfg, sizes)
            objective = energy.low_objective(z0, goal)

            def plan() -> object:
                return optimizer.optimize(objective, space.initial_mean(device), torch.Generator(device).manual_seed(0))

            acts = torch.rand((n, cfg.horizon, model.action_spec.dim), device=device) * 2 - 1
            start = z0.expand(n, -1)

            def rollout() -> object:
                with torch.no_grad():
                    return model.predict(start, acts)

            t_pred, t_plan = timed(rollout, device, repeats), timed(plan, device, repeats)
            flops_pred, flops_plan = count_flops(rollout), count_flops(plan)
            both = lambda f: f"{f(t_plan.wall, 0)} | {f(t_plan.alone, 1)}"  # noqa: E731
            table.add_row(
                name, f"{n:,}",
                f"{n * cfg.horizon / t_pred.wall:,.0f} | {n * cfg.horizon / t_pred.alone:,.0f}",
                both(lambda t, i: f"{1000 * t:.0f}"), f"{flops_plan / 1e9:.2f}",
                both(lambda t, i: f"{flops_plan / t / 1e9:.1f}"),
                both(lambda t, i: f"{100 * flops_plan / t / peak[i]:.0f} %"),
                f"{100 * flops_pred / t_pred.wall / peak[0]:.0f} % | {100 * flops_pred / t_pred.alone / peak[1]:.0f} %")
    return table


def bench_correction(model, device, cfg: PlannerConfig, candidates: list[int], repeats: int) -> Table:
    """One CEM plan without and with a full correction memory (random residuals: the cost does not
    depend on their values) — what turning ``correction.memory`` on costs a planning step."""
    table = Table(title=f"dynamics correction: one CEM plan, memory of {CORRECTION_MEMORY} residuals vs none")
    for col in ("candidates", "ms / plan, off", "ms / plan, on", "on / off"):
        table.add_column(col, justify="right")
    energy = Energy(model, cfg, GuardrailConfig(mode="penalty"))
    memory = ResidualMemory(CORRECTION_MEMORY, CORRECTION_RADIUS, CORRECTION_ACTION_WIDTH)
    gen = torch.Generator(device).manual_seed(0)
    for _ in range(CORRECTION_MEMORY):
        z = torch.randn(model.latent_dim, device=device, generator=gen)
        a = torch.rand(model.action_spec.dim, device=device, generator=gen) * 2 - 1
        memory.add(z, a, z + torch.randn(z.shape, device=device, generator=gen), z)
    z0, goal = torch.randn(model.latent_dim, device=device), torch.randn(model.latent_dim, device=device)
    space = SearchSpace(cfg.horizon, model.action_spec.dim)
    for n in candidates:
        sizes = Sizes(population=n, iterations=cfg.search.iterations, elites=max(1, n // 8))
        optimizer = make_optimizer("cem", space, cfg, sizes)
        times = []
        for correction in (None, memory):
            energy.correction = correction
            objective = energy.low_objective(z0, goal)
            times.append(timed(lambda: optimizer.optimize(objective, space.initial_mean(device),
                                                          torch.Generator(device).manual_seed(0)), device, repeats).wall)
        table.add_row(f"{n:,}", f"{1000 * times[0]:.1f}", f"{1000 * times[1]:.1f}", f"{times[1] / times[0]:.2f}x")
    return table


def dev_is_cpu(device: torch.device) -> bool:
    return device.type == "cpu"


def bench_agent(model, device, kind: str, steps: int) -> dict[str, float]:
    """Per-``act`` wall time of the default agent on random image observations."""
    # codes.direct_reach = 0: with random weights the goal could look "near"; this keeps every step on
    # the subgoal path (the expensive one). Observations are one frame with a little pixel noise,
    # so the high level replans on its schedule (and when the subgoal is reached or lost).
    cfg = PlannerConfig(kind=kind, codes=CodesConfig(direct_reach=0.0))
    agent = make_agent(model, cfg, GuardrailConfig(), seed=0, device=device)
    rng = np.random.default_rng(0)
    base = rng.integers(8, 248, IMAGE_SHAPE)
    frame = lambda: (base + rng.integers(-8, 9, IMAGE_SHAPE)).astype(np.uint8)  # noqa: E731
    agent.reset(rng.integers(0, 256, IMAGE_SHAPE, dtype=np.uint8), seed=0)
    agent.act(frame())  # warm-up
    replan, other, evals, cpu = [], [], [], []
    for _ in range(steps):
        obs = frame()
        cpu_start = time.process_time()
        _, info = agent.act(obs)
        cpu.append(1000 * (time.process_time() - cpu_start) / torch.get_num_threads())
        (replan if info.replanned_high else other).append(info.plan_ms)
        evals.append(info.model_evals)
    every = replan + other
    budget = resolve_budget(cfg)
    return {"mean": statistics.fmean(every), "p50": statistics.median(every), "max": max(every),
            "alone": statistics.fmean(cpu) if dev_is_cpu(device) else float("nan"),
            "replan": statistics.fmean(replan) if replan else float("nan"),
            "no_replan": statistics.fmean(other) if other else float("nan"),
            "replans": len(replan), "steps": steps, "evals": statistics.fmean(evals),
            "low": budget.low, "high": budget.high}


def load_average() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs"
    except OSError:
        return "unknown"


@app.command()
def main(device: str = typer.Option("auto", help="torch device: auto, cpu, cuda, ..."),
         repeats: int = typer.Option(3, min=1, help="timed repetitions per cell (best is reported)"),
         candidates: list[int] = typer.Option([256, 1024, 4096], help="populations to benchmark"),
         agent_steps: int = typer.Option(24, min=2, help="act() calls timed per agent"),
         threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: torch's choice)")) -> None:
    """Print the planner benchmark tables."""
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    torch.manual_seed(0)
    model, which = build_model(dev)
    cfg = PlannerConfig()
    console.print(f"device: {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'}), "
                  f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    console.print(f"model: {which}")
    peak = matmul_peak(dev)
    console.print(f"dense float32 matmul peak (2048² torch.mm, best of 5): {peak[0] / 1e9:.1f} GFLOP/s wall, "
                  f"{peak[1] / 1e9:.1f} GFLOP/s uncontended estimate")
    console.print(f"load average now: {load_average()}")
    console.print(bench_optimizers(model, dev, cfg, candidates, repeats, peak))
    console.print(bench_correction(model, dev, cfg, candidates, repeats))
    table = Table(title="default agent, one act() (image obs → action), PlannerConfig() defaults")
    for col in ("planner", "mean ms", "p50 ms", "max ms", "uncontended est. mean ms", "ms on high replan",
                "ms otherwise", "replans/steps", "model evals/step", "low pop×iters", "high pop×iters"):
        table.add_column(col, justify="right")
    for kind in ("hier", "flat"):
        r = bench_agent(model, dev, kind, agent_steps)
        high = f"{r['high'].population}×{r['high'].iterations}" if r["high"] else "-"
        table.add_row(kind, f"{r['mean']:.1f}", f"{r['p50']:.1f}", f"{r['max']:.1f}", f"{r['alone']:.1f}",
                      f"{r['replan']:.1f}", f"{r['no_replan']:.1f}", f"{r['replans']}/{r['steps']}",
                      f"{r['evals']:.0f}", f"{r['low'].population}×{r['low'].iterations}", high)
    console.print(table)
    console.print(f"defaults: horizon {cfg.horizon}, codes.horizon {cfg.codes.horizon}, "
                  f"codes.replan_every {cfg.codes.replan_every}")


if __name__ == "__main__":
    app()
