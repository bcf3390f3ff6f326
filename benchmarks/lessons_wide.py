"""Lesson 4 with its defaults on wide tables: the test R² reached, in how many rows, epochs and seconds.

Two kinds of table, both raw CSV normalized with `wideann normalize` as a user would:

- ``make-data``: `wideann make-data --noise 1` (Friedman #1 on the first 5 inputs, all other inputs noise;
  best possible R² about 0.96);
- ``wide``: `benchmarks/wide_table.py` (a dozen informative inputs at random positions, wildly different
  raw scales, sines, squares and products in the target; best possible R² 0.98).

For each table the lesson runs as a user would run it (`accelerate launch scripts/4_multi_gpu_ann.py
--data T.npy`, one process unless ``--launch-args`` says otherwise, every other option at its default),
and scikit-learn's `RidgeCV` is fitted on the same training + validation rows (skipped with --no-ridge or
above 5,000 columns). The validation loss the lesson prints after every epoch gives the validation R² per
epoch (1 - loss / variance of the validation targets), hence the first epoch at which it reached 0.9.
``--rows`` takes several values: each is a table of the first N rows of the largest one (its own stats).

    python benchmarks/lessons_wide.py                                  # 2,000 columns x 60,000 rows, both tables
    python benchmarks/lessons_wide.py --tables make-data --rows 15000 30000 60000
    python benchmarks/lessons_wide.py --tables wide --layout-seed 1        # another wide table: other inputs, scales
    # the reference width on one GPU (about 35 GB of CSV and 7 GB of float16 .npy on disk; see scripts/README.md):
    python benchmarks/lessons_wide.py --tables make-data --cols 12849 --rows 200000 --dtype float16 --no-ridge \\
        --delete-csv
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lessons_common import ROOT, WORK, machine, run_timed  # noqa: E402

EPOCH_LINE = re.compile(r"^epoch\s+(\d+)\s+training loss \(MSE\) ([0-9.e+-]+)\s+validation loss ([0-9.e+-]+)")


def make_csv(kind: str, path: Path, rows: int, cols: int, seed: int, layout_seed: int = 0) -> Path:
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "make-data":
        import wideann

        wideann.make_data(path, rows=rows, cols=cols, seed=seed, noise=1.0)
    else:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "wide_table.py"), "-o", str(path),
                        "--rows", str(rows), "--cols", str(cols), "--seed", str(seed),
                        "--layout-seed", str(layout_seed)], check=True)
    return path


def head_csv(src: Path, dst: Path, rows: int) -> Path:
    """The header and first ``rows`` rows of ``src``."""
    if not dst.is_file():
        tmp = dst.with_name(dst.name + ".tmp")
        with open(src) as f, open(tmp, "w") as g:
            for i, line in enumerate(f):
                if i > rows:
                    break
                g.write(line)
        os.replace(tmp, dst)
    return dst


def ridge_r2(npy: Path, seed: int) -> tuple[float, float]:
    import wideann
    from sklearn.linear_model import RidgeCV
    from wideann import data, metrics

    table = data.load_table(npy)
    stats = wideann.Stats.load(npy.with_suffix(".stats.json"))
    split = data.split_rows(len(table), test_fraction=0.2, val_fraction=0.1, seed=seed)
    train = np.concatenate([split.train, split.val])
    t0 = time.perf_counter()
    model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(table[train, :-1], table[train, -1])
    seconds = time.perf_counter() - t0
    return metrics.regression(table[split.test, -1], model.predict(table[split.test, :-1]), stats)["test_r2"], seconds


def val_variance(npy: Path, seed: int) -> float:
    from wideann import data

    with data.NpyTable(npy) as t:
        split = data.split_rows(t.n_rows, test_fraction=0.2, val_fraction=0.1, seed=seed)
        return float(np.var(t.read_index(split.val)[:, -1].astype(np.float64)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", nargs="+", choices=["make-data", "wide"], default=["make-data", "wide"])
    ap.add_argument("--cols", type=int, default=2000, help="columns, y included")
    ap.add_argument("--rows", type=int, nargs="+", default=[60000])
    ap.add_argument("--data-seed", type=int, default=1, help="seed of the generated rows")
    ap.add_argument("--layout-seed", type=int, default=0, help="the wide table's layout: which inputs are "
                    "informative, their scales (benchmarks/wide_table.py)")
    ap.add_argument("--seed", type=int, default=0, help="the lesson's --seed (split, shuffling, initial weights)")
    ap.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    ap.add_argument("--lesson", default="4_multi_gpu_ann.py")
    ap.add_argument("--launch-args", default="--num_processes 1", help="options of accelerate launch")
    ap.add_argument("--lesson-args", default="", help="extra options of the lesson (default: none)")
    ap.add_argument("--no-ridge", action="store_true")
    ap.add_argument("--delete-csv", action="store_true", help="delete each raw CSV once normalized")
    ap.add_argument("--out", type=Path, default=WORK / "wide")
    ap.add_argument("--idle-cores", type=float, default=0.25, help="before each run, wait until the other "
                    "processes use fewer cores than this ...")
    ap.add_argument("--idle-wait", type=float, default=120, help="... but at most this many seconds (0: no wait)")
    args = ap.parse_args()
    import wideann

    results = []
    for kind in args.tables:
        biggest = max(args.rows)
        tag = f"{kind}-layout{args.layout_seed}" if kind == "wide" and args.layout_seed else kind
        full_csv = args.out / f"{tag}_{args.cols}x{biggest}.csv"
        for rows in sorted(args.rows):
            name = f"{tag}_{args.cols}x{rows}"
            npy = args.out / f"{name}.{args.dtype}.npy"
            if not npy.is_file():
                make_csv(kind, full_csv, biggest, args.cols, args.data_seed, args.layout_seed)
                csv = full_csv if rows == biggest else head_csv(full_csv, args.out / f"{name}.csv", rows)
                t0 = time.perf_counter()
                wideann.normalize([csv], npy, dtype=args.dtype)
                print(f"{name}: normalized in {time.perf_counter() - t0:.0f} s -> {npy}", flush=True)
                if csv != full_csv:
                    csv.unlink()
            run = args.out / f"run_{name}_{Path(args.lesson).stem}"
            cmd = [sys.executable, "-m", "accelerate.commands.launch", *args.launch_args.split(),
                   str(ROOT / "scripts" / args.lesson), "--data", str(npy), "--seed", str(args.seed),
                   "--output-dir", str(run), *args.lesson_args.split()]
            env = dict(os.environ, HF_HOME=str(args.out / "hf"))  # no user accelerate config
            print("running: " + " ".join(cmd[3:]), flush=True)
            r, wall, others = run_timed(cmd, args.idle_cores, args.idle_wait, cwd=ROOT, env=env)
            (args.out / f"{run.name}.log").write_text(r.stdout + r.stderr)
            if r.returncode:
                sys.exit(f"{args.lesson} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
            m = json.loads((run / "metrics.json").read_text())
            var = val_variance(npy, args.seed)
            val_r2 = [1 - float(g.group(3)) / var for g in map(EPOCH_LINE.match, r.stdout.splitlines()) if g]
            first_09 = next((i + 1 for i, v in enumerate(val_r2) if v >= 0.9), None)
            ridge = ridge_r2(npy, args.seed) if not args.no_ridge and args.cols <= 5000 else (None, None)
            res = dict(table=tag, rows=rows, cols=args.cols, dtype=args.dtype, test_r2=m["test_r2"],
                       test_rmse=m["test_rmse"], epochs=m["epochs"], best_epoch=m["best_epoch"],
                       first_epoch_val_r2_09=first_09, train_seconds=m["train_seconds"], wall_seconds=wall,
                       samples_per_second=m["samples_per_second"], ridge_r2=ridge[0], ridge_seconds=ridge[1],
                       val_r2_per_epoch=[round(v, 4) for v in val_r2], others_cores_during=others,
                       machine=machine())
            results.append(res)
            with open(args.out / "results.jsonl", "a") as f:
                f.write(json.dumps(res) + "\n")
            print(f"{name}: test R² {m['test_r2']:.4f} "
                  f"(RidgeCV {ridge[0] if ridge[0] is None else round(ridge[0], 4)}), "
                  f"{m['epochs']} epochs, best {m['best_epoch']}, validation R² ≥ 0.9 from epoch {first_09}, "
                  f"train {m['train_seconds']:.0f} s, wall {wall:.0f} s, other processes used "
                  f"{'?' if others is None else f'{others:.2f}'} cores meanwhile", flush=True)
        if args.delete_csv:
            full_csv.unlink(missing_ok=True)

    print(f"\n{machine()}\n")
    print("| table | rows × columns | test R² | RidgeCV | epochs (best) | val R² ≥ 0.9 from epoch | train s | wall s "
          "| others' cores |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        ridge = "-" if r["ridge_r2"] is None else f"{r['ridge_r2']:.3f}"
        others = "?" if r["others_cores_during"] is None else f"{r['others_cores_during']:.2f}"
        print(f"| {r['table']} | {r['rows']:,} × {r['cols']:,} | {r['test_r2']:.3f} | {ridge} | "
              f"{r['epochs']} ({r['best_epoch']}) | {r['first_epoch_val_r2_09'] or '-'} | {r['train_seconds']:.0f} | "
              f"{r['wall_seconds']:.0f} | {others} |")


if __name__ == "__main__":
    main()
