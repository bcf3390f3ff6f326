"""Why lesson 4 learned nothing on wide tables, and what fixes it: the candidates, measured.

An in-memory copy of lesson 4's training on one process — lesson 4's own MLP and lasso step (imported from the
script; the uncentered variants skip its centering), Adam, the one-cycle schedule, mini-batches of 256 rows,
the best validation epoch kept, the same train / validation / test split — with one thing changed at a time:
input centering, the learning rate, the initial weight scale of the first layer, weight decay (Adam's L2
penalty or AdamW's decoupled decay), batch size, width, dropout, SGD, and the lasso on the first layer that
lesson 4 now uses. Each variant prints its test R² (the same in normalized and original units: R² is unchanged
by an affine map of y), its training and validation loss at the best epoch, and how the first layer's weights
of the informative inputs compare with those of the noise inputs: the mean norm of an input's column of
weights, and the norm of all noise inputs' weights together over that of one informative input (what the noise
inputs add to every hidden neuron, against what one useful input adds).

    python benchmarks/wide_candidates.py TABLE.npy [--epochs 15] [--hidden 256 64] [--only NAME ...]

TABLE.npy is a normalized table: `wideann make-data` (informative inputs x1..x5) or
`benchmarks/wide_table.py` (the informative inputs are read from the CSV's .json beside it). It is
loaded into memory (2,000 x 60,000 float32 is 480 MB). Run `benchmarks/lessons_wide.py` for the lessons
themselves.
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lessons_common import load_lesson, machine  # noqa: E402

# name -> changes to lesson 4's old defaults (uncentered inputs, Adam, no penalty)
CANDIDATES = {
    "old defaults (Adam, lr 1e-3, inputs in [0, 1])": {},
    "learning rate 1e-4": dict(lr=1e-4),
    "first layer initialized x0.1": dict(init_gain=0.1),
    "batch 1024, lr 2e-3": dict(batch=1024, lr=2e-3),
    "width 1024 256": dict(hidden=(1024, 256)),
    "width 32 32": dict(hidden=(32, 32)),
    "dropout 0.2": dict(dropout=0.2),
    "AdamW weight decay 1.0": dict(opt="adamw", wd=1.0),
    "centered to [-1, 1]": dict(center=True),
    "centered + AdamW weight decay 1.0": dict(center=True, opt="adamw", wd=1.0),
    "centered + Adam L2 0.01": dict(center=True, opt="adam", wd=0.01),
    "centered + SGD (momentum 0.9, lr 0.05)": dict(center=True, opt="sgd", lr=0.05),
    "lasso 0.1, not centered": dict(lasso=0.1),
    "centered + lasso 0.1 (lesson 4 now)": dict(center=True, lasso=0.1),
    "centered + lasso 0.3": dict(center=True, lasso=0.3),
}


LESSON4 = load_lesson("4_multi_gpu_ann.py")


class Uncentered(LESSON4.MLP):
    """Lesson 4's network with its inputs as they are, in [0, 1] (lesson 4 centers them to [-1, 1])."""
    def forward(self, x):
        return self.net(x)


def r2(y, p) -> float:
    y, p = np.asarray(y, np.float64).ravel(), np.asarray(p, np.float64).ravel()
    return float(1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def train(tables, informative, *, hidden=(256, 64), lr=1e-3, batch=256, epochs=15, seed=0, center=False,
          opt="adam", wd=0.0, dropout=0.0, init_gain=None, lasso=0.0):
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = tables
    torch.manual_seed(seed)
    model = (LESSON4.MLP if center else Uncentered)(x_tr.shape[1], hidden, dropout)
    first = model.net[0]
    if init_gain is not None:
        with torch.no_grad():
            first.weight.mul_(init_gain)
    if opt == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    else:
        optimizer = (torch.optim.AdamW if opt == "adamw" else torch.optim.Adam)(model.parameters(), lr=lr,
                                                                               weight_decay=wd)
    steps = math.ceil(len(x_tr) / batch)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, t0 = float("inf"), None, 0, time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order, train_sum = torch.randperm(len(x_tr), generator=gen), 0.0
        for s in range(steps):
            idx = order[s * batch:(s + 1) * batch]
            loss = ((model(x_tr[idx]) - y_tr[idx]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if lasso:  # lesson 4's step: the first layer's weights shrink by lasso x lr, stopping at 0
                LESSON4.shrink_towards_zero(first.weight, lasso * optimizer.param_groups[0]["lr"])
            scheduler.step()
            train_sum += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            val = ((model(x_va) - y_va) ** 2).mean().item()
        if val < best:
            best, best_epoch = val, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
            train_loss = train_sum / len(x_tr)
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        test_r2 = r2(y_te, model(x_te))
        col = model.net[0].weight.norm(dim=0)
    mask = torch.zeros(len(col), dtype=torch.bool)
    mask[informative] = True
    return dict(test_r2=test_r2, best_epoch=best_epoch, train_loss=train_loss, val_loss=best,
                informative_weight=col[mask].mean().item(), noise_weight=col[~mask].mean().item(),
                noise_together=col[~mask].norm().item() / col[mask].mean().item(), seconds=time.perf_counter() - t0)


def informative_columns(table: Path, n_inputs: int) -> list[int]:
    side = Path(str(table.with_suffix("")) + ".csv.json")
    if side.is_file():
        return [int(n[1:]) - 1 for n in json.loads(side.read_text())["informative"]]
    return [0, 1, 2, 3, 4]  # wideann make-data: Friedman #1 on x1..x5


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", type=Path)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 64],
                    help="default width of the variants (lesson 4's is 1024 256; 256 64 is 4x faster, and as good)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="run only the candidates whose name contains one of these")
    ap.add_argument("--json", type=Path, help="append one JSON line per result")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from wideann import data

    table = data.load_table(args.table)
    split = data.split_rows(len(table), test_fraction=0.2, val_fraction=0.1, seed=args.seed)
    parts = [(torch.from_numpy(table[rows, :-1]), torch.from_numpy(table[rows, -1:]))
             for rows in (split.train, split.val, split.test)]
    informative = informative_columns(args.table, table.shape[1] - 1)
    del table
    print(f"{args.table}: {len(split.train)} training rows, {parts[0][0].shape[1]} inputs "
          f"({len(informative)} informative); {args.epochs} epochs, hidden {args.hidden}, seed {args.seed}; "
          f"{machine()}, load {os.getloadavg()[0]:.1f}", flush=True)
    print("| variant | test R² | best epoch | train loss | val loss | first-layer weight, informative / noise input "
          "| all noise inputs / one informative | s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, change in CANDIDATES.items():
        if args.only and not any(o in name for o in args.only):
            continue
        cfg = {**dict(hidden=tuple(args.hidden), epochs=args.epochs, seed=args.seed), **change}
        r = train(parts, informative, **cfg)
        print(f"| {name} | {r['test_r2']:.3f} | {r['best_epoch']} | {r['train_loss']:.5f} | {r['val_loss']:.5f} | "
              f"{r['informative_weight']:.3f} / {r['noise_weight']:.4f} | {r['noise_together']:.2f} | "
              f"{r['seconds']:.0f} |",
              flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(dict(table=str(args.table), variant=name, **cfg, **r,
                                        load=os.getloadavg()[0])) + "\n")


if __name__ == "__main__":
    main()
