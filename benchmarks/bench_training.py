"""Training throughput of the world model: samples/s of full training steps (forward + backward + Adam).

A *sample* is one training window (``rollout_horizon + 1`` observations, one far frame for the
distance head); transitions/s = samples/s × window_stride is the rate at which an epoch covers a
dataset. Data come from a dataset directory (``--data``, e.g. from ``hplan collect``) or, by
default, are synthetic 64×64 PointRooms-like frames so the benchmark runs anywhere. The device is
``auto`` (CUDA when present), so the same command measures CPU and GPU throughput.

    python benchmarks/bench_training.py                       # synthetic 64x64 images, auto device
    python benchmarks/bench_training.py --data runs/data/point_four_rooms --steps 20 --threads 1

``--end-to-end`` trains the scenario for real on ``--data`` (every epoch, refit and validation, as
``hplan train`` does) into a temporary directory and prints the wall time, with the seconds of each
stage summed over the epochs from the run's ``metrics.csv`` (issue 26's bar: the 200k-transition
four-rooms model in ≤ 4 minutes on the 2-core CPU)::

    python benchmarks/bench_training.py --end-to-end --data runs/results/data/point_four_rooms-2000ep
    python benchmarks/bench_training.py --end-to-end --data DIR --set train.refit_every=2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="dataset directory (default: synthetic 64x64 images)")
    parser.add_argument("--scenario", default="point_four_rooms", help="scenario whose [model]/[train] settings to use")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (after 2 warm-up steps)")
    parser.add_argument("--batch-size", type=int, default=None, help="override [train] batch_size")
    parser.add_argument("--regularizer", default=None, help="override [model] regularizer")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--end-to-end", action="store_true",
                        help="train the scenario for real on --data and print the wall time per stage")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="--end-to-end: a [model] / [train] override, as `hplan train --set`")
    args = parser.parse_args()
    if args.end_to_end:
        end_to_end(args)
        return

    from hplan.config import load_scenario
    from hplan.device import resolve_device
    from hplan.models.data import EpisodeDataModule
    from hplan.models.module import WorldModelModule
    from hplan.models.training import apply_overrides

    if args.threads:
        torch.set_num_threads(args.threads)
    scenario = apply_overrides(load_scenario(args.scenario), {"batch_size": args.batch_size,
                                                              "regularizer": args.regularizer})
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data
        if data_dir is None:
            from synthetic_episodes import make_dataset

            data_dir = make_dataset(Path(tmp) / "data", episodes=64, steps=64, obs="image", image_size=64,
                                    env_id=scenario.env.id)
        data = EpisodeDataModule(data_dir, scenario.model, scenario.train, scenario.seed)
        data.setup("fit")
        module = WorldModelModule(scenario.model, scenario.train, data.info, scenario.seed).to(device)
        optim = module.configure_optimizers()
        batches = iter(data.train_dataloader())

        def step() -> int:
            nonlocal batches
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(data.train_dataloader())
                batch = next(batches)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            out, _ = module._losses(batch, "train")
            optim.zero_grad(set_to_none=True)
            out["loss"].backward()
            optim.step()
            module.on_train_batch_end(None, batch, 0)
            return len(batch["obs_seq"])

        for _ in range(2):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, samples = time.perf_counter(), 0
        for _ in range(args.steps):
            samples += step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    rate = samples / seconds
    frames = rate * (data.window + 1)
    stride = scenario.train.window_stride
    print(f"device {device} ({torch.get_num_threads()} threads) | regularizer {scenario.model.regularizer} | "
          f"batch {scenario.train.batch_size} | obs {data.info.obs_kind} {data.info.obs_shape}")
    print(f"samples/s {rate:,.1f}  (windows of {data.window} observations; {frames:,.0f} frames encoded/s)")
    print(f"transitions/s covered per epoch {rate * stride:,.0f} (window_stride {stride}); "
          f"200k-transition epoch ≈ {200_000 / (rate * stride):,.0f} s")


def end_to_end(args: argparse.Namespace) -> None:
    """Train ``args.scenario`` on ``args.data`` into a temporary directory; print wall time and stages."""
    import pandas as pd

    from hplan.config import load_scenario
    from hplan.errors import HplanError
    from hplan.models.training import train_world_model

    if args.data is None:
        sys.exit("error: --end-to-end needs --data (a collected dataset)")
    try:
        scenario = load_scenario(args.scenario, sets=args.sets)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            run = train_world_model(scenario, args.data, Path(tmp) / "run")
            seconds = time.perf_counter() - start
            metrics = pd.read_csv(run / "metrics.csv")
    except HplanError as err:  # a bad scenario, setting or dataset: one line, as the CLI says it
        sys.exit(f"error: {err}")
    stages = metrics[[c for c in metrics.columns if c.startswith("time/")]].sum()
    print(f"{args.scenario} on {args.data}: {len(metrics)} epochs, {torch.get_num_threads()} threads, "
          f"sets {args.sets or 'none'}")
    print(f"wall time {seconds:,.1f} s ({seconds / 60:.2f} min)")
    for name, value in stages.sort_values(ascending=False).items():
        print(f"  {name[len('time/'):-len('_s')]:<26} {value:8.1f} s")
    print("  (the two refit branches run at once on two cores or more: the stages can sum to more than the wall time;"
          " the rest of it is loading the data, the first batches and saving)")


if __name__ == "__main__":
    main()
