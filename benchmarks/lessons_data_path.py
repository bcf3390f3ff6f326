"""Lesson 4's data path: training samples/s reading batches from the .npy on disk vs. the table in memory.

The reference model 12,848 -> 1024 -> 256 -> 1 (lesson 4's `MLP`, imported from the script) trains with
lesson 4's step (summed loss over the nominal batch, Adam) on a random float32 table of 12,849 columns
written straight to .npy. Two data sources feed the same rows in the same order:

- disk: `wideann.data.ShardedBatches` (the native reader into recycled buffers, its read-ahead thread), as
  in lesson 4;
- memory: the whole table in one tensor, each batch gathered by row index (what a DataLoader over a
  TensorDataset does).

Each variant runs in its own process, the table read once before it (page cache warm: the memory variant
loads it before its clock starts, the disk variant reads it while timed); the two alternate for --rounds
rounds and the best round of each counts (other work on the machine only ever slows a round down). Each
timed step includes the fetch of its batch. Both report a checksum of the batches they fed, and the
script stops if they differ. Target: disk >= 90% of memory.

    python benchmarks/lessons_data_path.py [--rows 16384] [--steps 40] [--batch-size 256]
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lessons_common import REFERENCE_COLUMNS, WORK, load_lesson, machine, write_random_table  # noqa: E402
from normalize_vs_peers import warm_cache  # noqa: E402


def worker(args):
    import numpy as np
    import torch
    from torch import nn

    from wideann import data

    lesson4 = load_lesson("4_multi_gpu_ann.py")

    torch.manual_seed(0)
    table = data.NpyTable(args.table)
    rows = np.arange(table.n_rows)
    batches = data.ShardedBatches(table, rows, args.batch_size, seed=0, prefetch=4)
    model = lesson4.MLP(table.n_inputs, [1024, 256])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = nn.MSELoss(reduction="sum")

    def step(x, y):
        loss = loss_fn(model(x), y) / args.batch_size
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    if args.variant == "disk":
        source = batches.epoch(0)
    else:  # the whole table in memory, the same rows in the same order
        whole = torch.from_numpy(data.load_table(args.table))
        order = batches.epoch_order(0)

        def gen():
            for s in range(len(batches)):
                idx = torch.from_numpy(batches.step_rows(order, s))
                b = whole[idx]
                yield b[:, :-1], b[:, -1:]
        source = gen()
    # The timed steps each with the fetch of their batch (the clock starts before the first timed batch is
    # asked for); a checksum of every batch fed, so that the driver can tell that both sources fed the same rows.
    source = iter(source)
    check = np.zeros(3)
    seen, t0 = 0, time.perf_counter()
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            t0, seen = time.perf_counter(), 0
        x, y = next(source)
        step(x, y)
        seen += len(x)
        check += [float(y.double().sum()), float(x[:, 0].double().sum()), float(x[:, -1].double().sum())]
    dt = time.perf_counter() - t0
    if hasattr(source, "close"):
        source.close()
    import resource

    print(json.dumps({"variant": args.variant, "samples_per_second": seen / dt, "seconds": dt, "rows": seen,
                      "checksum": check.tolist(),  # ru_maxrss: KiB on Linux
                      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16384, help="rows of the generated table (16384 = 0.84 GB)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--table", default=None)
    ap.add_argument("--variant", choices=["disk", "memory"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        return worker(args)
    if (args.warmup + args.steps) * args.batch_size > args.rows:
        sys.exit("--rows must cover (warmup + steps) x batch-size rows (one epoch)")

    table = Path(args.table or WORK / f"lessons_{args.rows}x{REFERENCE_COLUMNS}.npy")
    print(f"table: {table} ({args.rows} x {REFERENCE_COLUMNS} float32, "
          f"{args.rows * REFERENCE_COLUMNS * 4 / 1e9:.2f} GB)",
          flush=True)
    write_random_table(table, args.rows)
    best, sums, peak = {}, {}, {}
    for r in range(args.rounds):
        for variant in ("memory", "disk"):
            warm_cache(table)  # the page cache holds the table for both (memory loads it untimed, disk reads it timed)
            cmd = [sys.executable, __file__, "--variant", variant, "--table", str(table), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--batch-size", str(args.batch_size), "--rows", str(args.rows)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.exit(out.stderr[-4000:])
            res = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"round {r + 1}: {variant:6s} {res['samples_per_second']:8.1f} samples/s", flush=True)
            sums.setdefault(tuple(res["checksum"]), []).append(variant)
            if len(sums) > 1:
                sys.exit(f"the two sources fed different rows (checksums of y and of two input columns: {sums})")
            best[variant] = max(best.get(variant, 0.0), res["samples_per_second"])
            peak[variant] = max(peak.get(variant, 0.0), res["peak_rss_gib"])
    ratio = best["disk"] / best["memory"]
    print()
    print(f"machine: {machine()}")
    print(f"model 12,848 -> 1024 -> 256 -> 1, batch {args.batch_size}, {args.steps} timed steps after {args.warmup}, "
          f"best of {args.rounds} rounds")
    print("| data source | samples/s | vs. in memory | peak RSS (largest of the rounds) |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| whole table in memory (tensor, gathered by index) | {best['memory']:.1f} | 100% | "
          f"{peak['memory']:.2f} GiB |")
    print(f"| `.npy` on disk via `wideann.data.ShardedBatches` (lesson 4) | {best['disk']:.1f} | {100 * ratio:.0f}% | "
          f"{peak['disk']:.2f} GiB |")
    print(f"target >= 90%: {'met' if ratio >= 0.9 else 'NOT met'}")
    print(f"(the table stays for the next run: {table}, {table.stat().st_size / 1e9:.2f} GB; remove it when done)")


if __name__ == "__main__":
    main()
