"""PointRooms throughput: vectorised (PointRoomsVec) vs. the single-env loop, state and 64×64 images.

Targets (issue 3, on the 2-core CI machine): ≥ 100,000 transitions/s with state observations and
≥ 20,000/s with 64×64 image observations, vectorised. Both modes are measured in one process so
the ratio vectorised / single is like-for-like. Random actions are drawn before timing; each
measurement runs for at least ``--seconds`` of wall time and reports the best of ``--repeats``.

    python benchmarks/bench_envs.py [--num-envs 1024] [--layout four_rooms] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from hplan.envs.point_rooms import PointRoomsEnv
from hplan.envs.vector import PointRoomsVec


def _rate(run_block: Callable[[], int], seconds: float, repeats: int) -> float:
    """Best transitions/s over ``repeats`` timings of at least ``seconds`` each."""
    best = 0.0
    for _ in range(repeats):
        done, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            done += run_block()
        best = max(best, done / elapsed)
    return best


def bench_single(obs_mode: str, layout: str, seconds: float, repeats: int) -> float:
    env = PointRoomsEnv(layout=layout, obs_mode=obs_mode, terminate_on_success=False)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(256, 2)).astype(np.float32)

    def block() -> int:
        for action in actions:
            env.step(action)
        return len(actions)

    return _rate(block, seconds, repeats)


def bench_vector(obs_mode: str, layout: str, num_envs: int, seconds: float, repeats: int) -> float:
    vec = PointRoomsVec(num_envs, layout=layout, obs_mode=obs_mode, terminate_on_success=False)
    vec.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(8, num_envs, 2))

    def block() -> int:
        for step_actions in actions:
            vec.step(step_actions)
        return actions.shape[0] * num_envs

    return _rate(block, seconds, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--layout", default="four_rooms")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    targets = {"state": 100_000, "image": 20_000}
    print(f"PointRooms {args.layout}, vectorised over {args.num_envs} envs vs. single-env loop "
          f"(best of {args.repeats} x {args.seconds:.1f} s)")
    print(f"{'obs':<6} {'vectorised/s':>14} {'single/s':>10} {'ratio':>7} {'target':>8}  met")
    for mode, target in targets.items():
        vector = bench_vector(mode, args.layout, args.num_envs, args.seconds, args.repeats)
        single = bench_single(mode, args.layout, args.seconds, args.repeats)
        status = "yes" if vector >= target else "NO"
        print(f"{mode:<6} {vector:>14,.0f} {single:>10,.0f} {vector / single:>6.0f}x {target:>8,}  {status}")


if __name__ == "__main__":
    main()
