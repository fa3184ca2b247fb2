"""What a label budget permits with a perfect representation: guardrail-head AUROC on the *true* state.

A guardrail head learns "does this (state, action) step violate" from a few labelled transitions.
How many labels that takes depends on the violation as much as on the latent: wall contact in
PointRooms is a sharp function of where the walls are, and a random label budget samples the wall
map thinly. This fits the world model's head (the same two-layer MLP with class-balanced BCE) on
the true state and action of N random labelled transitions and prints the held-out AUROC per N, so
a latent head's figure from ``hplan inspect`` can be read against what the labels alone allow.

Measured 2026-11-26 (100k training transitions, 20k held out, 3 draws; 1 min per violation on one
core). Four rooms, wall contact: 250 labels 0.69, 1,000 0.80, 5,000 0.93, all 100,000 0.98.
Four rooms with zones: wall contact 0.68 / 0.82 / 0.93 / 0.98, restricted zone 0.67 / 0.95 / 0.995
/ 0.999. With 1,000 labels the world models' *latent* heads do better than these (wall 0.87-0.89,
zone 0.97): their predictor, trained on every unlabelled transition, has learnt where walls stop
the point, and the head reads the predicted next latent.

    python benchmarks/guardrail_label_ceiling.py --data DIR --heldout DIR [--labels 250,1000,5000,all]
        [--draws 3] [--steps 2000] [--max-episodes 1000] [--out ceiling.csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from hplan.data.shards import load_episodes
from hplan.metrics.scores import auroc
from hplan.errors import HplanError
from hplan.models.heads import balanced_bce, head_mlp, positive_weight


def transitions(root: Path, max_episodes: int | None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``[true state, action]`` of every valid transition, its violation flags, and their names."""
    data = load_episodes(root, max_episodes=max_episodes)
    arrays = data.arrays
    state, action = arrays["true_state"][:, :-1], arrays["action"]
    valid = arrays["valid"].astype(bool)
    features = np.concatenate([state, action.reshape(*action.shape[:2], -1)], axis=-1)[valid]
    flags = arrays["violations"][valid]
    return (torch.from_numpy(features.astype(np.float32)), torch.from_numpy(flags.astype(np.float32)),
            list(data.manifest["violation_names"]))


def fit_head(x: torch.Tensor, y: torch.Tensor, steps: int, seed: int, hidden: int = 256) -> torch.nn.Module:
    """The guardrail head's MLP and loss (:func:`~hplan.models.heads.balanced_bce`), Adam, minibatches
    of at most 2,048 rows. Weight decay 1e-4, not the refit's 1e-2: on the raw state the stronger
    decay fits worse (four rooms, wall contact, all labels: 0.76 against 0.98), and this is a ceiling."""
    torch.manual_seed(seed)
    head = head_mlp(x.shape[1], hidden, 1, 2)
    optim = torch.optim.Adam(head.parameters(), lr=3e-3, weight_decay=1e-4)
    pos_weight = positive_weight(y.mean())
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randint(len(x), (min(len(x), 2048),), generator=gen)
        loss = balanced_bce(head(x[batch])[:, 0], y[batch], pos_weight)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
    return head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="training dataset (hplan collect)")
    parser.add_argument("--heldout", type=Path, required=True, help="held-out dataset of the same scenario")
    parser.add_argument("--labels", default="250,1000,5000,all", help="label budgets, comma-separated ('all')")
    parser.add_argument("--draws", type=int, default=3, help="random label draws per budget")
    parser.add_argument("--steps", type=int, default=2000, help="Adam steps per head")
    parser.add_argument("--max-episodes", type=int, default=1000, help="training episodes to load")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the table as CSV")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    try:
        asked = [None if b.strip() == "all" else int(b) for b in args.labels.split(",")]  # None: all
    except ValueError:
        parser.error(f"--labels: {args.labels!r} is not a comma-separated list of counts and 'all'")
    if any(b is not None and b < 1 for b in asked):
        parser.error(f"--labels: counts must be at least 1, got {args.labels!r}")
    try:
        x, y, names = transitions(args.data, args.max_episodes)
        x_test, y_test, test_names = transitions(args.heldout, None)
    except HplanError as err:
        parser.error(str(err))
    if test_names != names:
        parser.error(f"--heldout: violations {test_names} do not match --data's {names}")
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x, x_test = (x - mean) / std, (x_test - mean) / std
    budgets = [len(x) if b is None else b for b in asked]

    rows = []
    for g, name in enumerate(names):
        if not (0 < float(y[:, g].mean()) < 1) or not (0 < float(y_test[:, g].mean()) < 1):
            continue  # a violation this scenario never (or always) shows
        for budget in budgets:
            draws = 1 if budget >= len(x) else args.draws
            for draw in range(draws):
                pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(draw))[:budget]
                head = fit_head(x[pick], y[pick, g], args.steps, seed=draw)
                with torch.no_grad():
                    score = head(x_test)[:, 0].numpy()
                rows.append({"violation": name, "labels": min(budget, len(x)), "draw": draw,
                             "auroc": auroc(score, y_test[:, g].numpy())})
    frame = pd.DataFrame(rows)
    summary = frame.groupby(["violation", "labels"])["auroc"].agg(["mean", "std", "count"]).reset_index()
    table = Table(title=f"guardrail head on the true state: held-out AUROC ({len(x_test):,} transitions)")
    for column in ("violation", "labels", "AUROC mean", "std", "draws"):
        table.add_column(column)
    for row in summary.itertuples():
        table.add_row(row.violation, f"{row.labels:,}", f"{row.mean:.3f}",
                      "-" if np.isnan(row.std) else f"{row.std:.3f}", str(row.count))
    Console().print(table)
    if args.out:
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(args.out)


if __name__ == "__main__":
    main()
