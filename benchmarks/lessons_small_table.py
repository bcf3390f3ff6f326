"""Lessons 2 and 3 with their defaults on a small real table, against scikit-learn's RidgeCV, over many splits.

The table is scikit-learn's diabetes data (442 patients, 10 inputs — age, sex, body mass index, blood
pressure, six blood serum measurements — and a measure of disease progression one year later; Efron,
Hastie, Johnstone and Tibshirani, "Least Angle Regression", Annals of Statistics 2004). It ships inside
scikit-learn; this script writes it, unscaled, to ``benchmarks/work/diabetes.csv`` and normalizes it once
with ``wideann normalize``. For every seed, each lesson runs as a user would run it
(``accelerate launch scripts/N_*.py --data diabetes.npy --seed S``, one process, all other options at
their defaults), and ``RidgeCV`` is fitted on the same training and validation rows and tested on the same
test rows (``wideann.data.split_rows`` with the seed). A 442-row table has an 88-row test set, so one split
says little: the table shows every seed and the mean.

    python benchmarks/lessons_small_table.py [--seeds 20] [--lessons 2_deeper_ann.py 3_out_of_core_ann.py]
    python benchmarks/lessons_small_table.py --lessons 3_out_of_core_ann.py \\
        --lesson-args "--epochs 30 --patience 5 --dropout 0"
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lessons_common import ROOT, WORK, machine  # noqa: E402

LESSONS = ["2_deeper_ann.py", "3_out_of_core_ann.py"]


def write_diabetes(path: Path) -> Path:
    """The diabetes table as a raw CSV (original units, header, target ``y`` last)."""
    from sklearn.datasets import load_diabetes

    if path.is_file():
        return path
    d = load_diabetes(scaled=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(",".join(list(d.feature_names) + ["y"]) + "\n")
        for row, y in zip(d.data, d.target):
            f.write(",".join(f"{v:.10g}" for v in row) + f",{y:.10g}\n")
    os.replace(tmp, path)
    return path


def ridge_r2(npy: Path, seed: int) -> float:
    import wideann
    from sklearn.linear_model import RidgeCV
    from wideann import data, metrics

    table = data.load_table(npy)
    stats = wideann.Stats.load(npy.with_suffix(".stats.json"))
    split = data.split_rows(len(table), test_fraction=0.2, val_fraction=0.1, seed=seed)
    train = np.concatenate([split.train, split.val])
    model = RidgeCV(alphas=np.logspace(-6, 3, 19)).fit(table[train, :-1], table[train, -1])
    return metrics.regression(table[split.test, -1], model.predict(table[split.test, :-1]), stats)["test_r2"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 (split, shuffling, initial weights)")
    ap.add_argument("--lessons", nargs="*", default=LESSONS)
    ap.add_argument("--lesson-args", default="", help="extra options of every lesson run, e.g. the defaults "
                    "before the small-table rule: '--epochs 30 --patience 5 --dropout 0' (lesson 3)")
    ap.add_argument("--out", type=Path, default=WORK / "small_table")
    args = ap.parse_args()
    import wideann

    csv = write_diabetes(WORK / "diabetes.csv")
    npy = args.out / "diabetes.npy"
    if not npy.is_file():
        args.out.mkdir(parents=True, exist_ok=True)
        wideann.normalize([csv], npy)
    env = dict(os.environ, HF_HOME=str(args.out / "hf"), OMP_NUM_THREADS="1")  # no user accelerate config
    rows, t0 = [], time.perf_counter()
    for seed in range(args.seeds):
        row = {"seed": seed, "ridge": ridge_r2(npy, seed)}
        for lesson in args.lessons:
            run = args.out / f"{Path(lesson).stem}_seed{seed}"
            cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
                   str(ROOT / "scripts" / lesson), "--data", str(npy), "--seed", str(seed), "--output-dir", str(run),
                   *args.lesson_args.split()]
            r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"{lesson} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
            m = json.loads((run / "metrics.json").read_text())
            row[lesson] = (m["test_r2"], m["epochs"])
        rows.append(row)
        print(f"seed {seed}: RidgeCV {row['ridge']:.3f}  " + "  ".join(
            f"{Path(l).stem} {row[l][0]:.3f} ({row[l][0] - row['ridge']:+.3f}, {row[l][1]} epochs)"
            for l in args.lessons), flush=True)

    head = "| seed | RidgeCV | " + " | ".join(f"lesson {l[0]} | − Ridge" for l in args.lessons) + " |"
    lines = [f"Diabetes table (scikit-learn): 442 rows, 10 inputs; per seed 88 test rows, 44 validation rows, "
             f"310 training rows; lesson options: {args.lesson_args or 'the defaults'}; {machine()}; "
             f"{time.perf_counter() - t0:.0f} s in all.", "",
             head, "| ---: " * (2 + 2 * len(args.lessons)) + "|"]
    for row in rows:
        lines.append(f"| {row['seed']} | {row['ridge']:.3f} | " + " | ".join(
            f"{row[l][0]:.3f} | {row[l][0] - row['ridge']:+.3f}" for l in args.lessons) + " |")
    ridge = np.array([r["ridge"] for r in rows])
    summary = [f"| mean | {ridge.mean():.3f} |"]
    for lesson in args.lessons:
        r2 = np.array([r[lesson][0] for r in rows])
        d = r2 - ridge
        summary.append(f" {r2.mean():.3f} | {d.mean():+.3f} |")
        lines_note = (f"{Path(lesson).stem}: mean test R² {r2.mean():.3f}, RidgeCV {ridge.mean():.3f}; "
                      f"difference mean {d.mean():+.3f}, worst {d.min():+.3f}, within 0.05 of RidgeCV on "
                      f"{(d >= -0.05).sum()} of {len(d)} splits")
        print(lines_note)
    lines.append("".join(summary))
    text = "\n".join(lines)
    print()
    print(text)
    (args.out / "results.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
