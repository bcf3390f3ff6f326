"""Accuracy of the four lessons on the shipped example data, against the noise floor and Ridge.

Runs every lesson exactly as a user would (`accelerate launch scripts/N_*.py`, default options, one
process), fits scikit-learn's RidgeCV on the same training rows, and prints a Markdown table of test
RMSE and R² in original units of y, with wall times. The noise σ of the example data (the best RMSE
any model can reach) is read from data/README.md's generating command.

    python benchmarks/lessons_accuracy.py [--out benchmarks/work/accuracy]
"""
import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from lessons_common import machine, run_timed  # noqa: E402
LESSONS = ["1_first_ann.py", "2_deeper_ann.py", "3_out_of_core_ann.py", "4_multi_gpu_ann.py"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "work" / "accuracy"))
    ap.add_argument("--lessons", nargs="*", default=LESSONS)
    args = ap.parse_args()
    try:  # the baseline comes last: a missing scikit-learn is said before minutes of lessons, not after them
        import sklearn  # noqa: F401
    except ImportError:
        sys.exit("scikit-learn is needed for the RidgeCV baseline: pip install -e \".[bench]\"")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sigma = float(re.search(r"--noise ([0-9.]+)", (ROOT / "data" / "README.md").read_text()).group(1))

    rows = []
    env = dict(os.environ, HF_HOME=str(out / "hf"))  # no user accelerate config
    for lesson in args.lessons:
        run = out / Path(lesson).stem
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
               str(ROOT / "scripts" / lesson), "--output-dir", str(run)]
        r, wall, others = run_timed(cmd, cwd=ROOT, env=env)  # after waiting for the machine to be idle
        if r.returncode:
            sys.exit(f"{lesson} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
        m = json.loads((run / "metrics.json").read_text())
        rows.append((f"lesson {lesson[0]} (`{lesson}`)", m["test_rmse"], m["test_r2"], m["epochs"],
                     m["train_seconds"], wall))
        print(f"{lesson}: RMSE {m['test_rmse']:.3f}  R² {m['test_r2']:.4f}  wall {wall:.1f} s  (other processes "
              f"used {'?' if others is None else f'{others:.2f}'} cores meanwhile)", flush=True)

    # Ridge on the same split (the table normalized by lesson 1's run, or by the first lesson run)
    import wideann
    from sklearn.linear_model import RidgeCV
    from wideann import data, metrics

    first = out / Path(args.lessons[0]).stem / "data"
    table = data.load_table(first / "example.npy")
    stats = wideann.Stats.load(first / "example.stats.json")
    split = data.split_rows(len(table), test_fraction=0.2, val_fraction=0.1, seed=0)
    train = np.concatenate([split.train, split.val])
    t0 = time.perf_counter()
    ridge = RidgeCV(alphas=np.logspace(-6, 2, 17)).fit(table[train, :-1], table[train, -1])
    ridge_s = time.perf_counter() - t0
    res = metrics.regression(table[split.test, -1], ridge.predict(table[split.test, :-1]), stats)
    rows.append(("scikit-learn `RidgeCV` (linear baseline)", res["test_rmse"], res["test_r2"], "-", ridge_s, ridge_s))

    lines = [f"Example data: `data/example.csv`, noise σ = {sigma:g} (the best RMSE possible); "
             f"{len(split.test)} test rows; {machine()}, one process.", "",
             "| model | test RMSE | RMSE / σ | test R² | epochs | train s | wall s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, rmse, r2, ep, tr, wall in rows:
        lines.append(f"| {name} | {rmse:.3f} | {rmse / sigma:.2f} | {r2:.4f} | {ep} | {tr:.1f} | {wall:.1f} |")
    table_md = "\n".join(lines)
    print()
    print(table_md)
    (out / "results.md").write_text(table_md + "\n")


if __name__ == "__main__":
    main()
