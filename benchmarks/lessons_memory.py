"""Peak resident memory of lessons 3 and 4 training over a table far larger than they may hold.

Writes a random float32 .npy of 12,849 columns (8 GB by default: 155,655 rows; straight to .npy, no CSV),
then runs `accelerate launch scripts/3_out_of_core_ann.py` and `scripts/4_multi_gpu_ann.py` on it for
--max-steps 200 with their default model and batch (lesson 4: 12,848 -> 1024 -> 256 -> 1, 256 rows per
step on tables of over 25,600 training rows; on fewer it halves its batch, see wideann.defaults: 128 on
the 1 GB table), one process each, then their validation and test passes over the held-out rows. The
table printed gives the model and the rows per step each run used (from its model.json), and
`--lesson-args "--batch-size 256"` makes the two sizes train alike. Peak RSS is the
largest process's `ru_maxrss` (with `--processes 2`, lesson 4 runs as two CPU processes and the number
is the larger of the two). Run it with `--gb 1` as well to see that the peak does not depend on the
table size. Target: under 3 GB.

    python benchmarks/lessons_memory.py [--gb 8] [--steps 200]
"""
import argparse
import json
import math
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lessons_common import REFERENCE_COLUMNS, ROOT, WORK, machine, run_with_peak_rss, write_random_table  # noqa: E402

LESSONS = ["3_out_of_core_ann.py", "4_multi_gpu_ann.py"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=8.0, help="size of the generated table in GB (1e9 bytes)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lessons", nargs="*", default=LESSONS)
    ap.add_argument("--keep-runs", action="store_true", help="keep the lessons' run folders (removed by default)")
    ap.add_argument("--lesson-args", default="", help="more options of every lesson run, e.g. \"--batch-size 256\"")
    ap.add_argument("--processes", type=int, default=1,
                    help="processes for lesson 4 (2+: scripts/configs/cpu_2proc.yaml's way, MULTI_GPU + cpu=True)")
    args = ap.parse_args()

    rows = math.ceil(args.gb * 1e9 / (REFERENCE_COLUMNS * 4))
    table = WORK / f"lessons_{rows}x{REFERENCE_COLUMNS}.npy"
    t0 = time.perf_counter()
    write_random_table(table, rows)
    size = table.stat().st_size
    print(f"table: {table} ({rows} x {REFERENCE_COLUMNS}, {size / 1e9:.2f} GB; "
          f"ready in {time.perf_counter() - t0:.0f} s)",
          flush=True)

    env = dict(os.environ, HF_HOME=str(WORK / "hf"))
    results = []
    for lesson in args.lessons:
        procs = args.processes if lesson.startswith("4") else 1
        out = WORK / f"memory_{Path(lesson).stem}_{rows}_{procs}proc"
        launch = ["--num_processes", "1"] if procs == 1 else ["--multi_gpu", "--num_processes", procs]
        cmd = [sys.executable, "-m", "accelerate.commands.launch", *launch,
               ROOT / "scripts" / lesson, "--data", table, "--max-steps", args.steps, "--checkpoint-every", 100000,
               "--output-dir", out, *shlex.split(args.lesson_args)]
        t0 = time.perf_counter()
        r, peak = run_with_peak_rss(cmd, env=env, cwd=ROOT)
        wall = time.perf_counter() - t0
        if r.returncode:
            sys.exit(f"{lesson} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
        m = json.loads((out / "metrics.json").read_text())
        card = json.loads((out / "model.json").read_text())  # what the run chose: its layers and batch
        widths = [card["n_inputs"]] + [l["out_features"] for l in card["layers"] if l["type"] == "Linear"]
        m["model"] = " -> ".join(f"{w:,}" for w in widths)
        m["batch_size"] = card["options"]["batch_size"]
        results.append((lesson if procs == 1 else f"{lesson} ({procs} processes)", peak, wall, m))
        if not args.keep_runs:
            shutil.rmtree(out, ignore_errors=True)  # checkpoints of lesson 4's model: hundreds of MB
        print(f"{lesson}: peak RSS {peak / 2**30:.2f} GiB, wall {wall:.0f} s, "
              f"{m['samples_per_second']:.0f} samples/s (training + evaluation)", flush=True)

    print()
    print(f"machine: {machine()}")
    print(f"table: {rows} rows x {REFERENCE_COLUMNS} columns float32 = {size / 1e9:.2f} GB; {args.steps} training "
          "steps, then validation and test passes")
    print("| lesson | model | rows per step | peak RSS | wall |")
    print("| --- | --- | ---: | ---: | ---: |")
    for lesson, peak, wall, m in results:
        per = " per process" if m.get("world_size", 1) > 1 else ""
        print(f"| `{lesson}` | {m['model']} | {m['batch_size']}{per} | {peak / 2**30:.2f} GiB | {wall:.0f} s |")
    worst = max(p for _, p, _, _ in results)
    print(f"target < 3 GB: {'met' if worst < 3e9 else 'NOT met'} (largest peak {worst / 1e9:.2f} GB)")
    print(f"(the table stays for the next run of this size: {table}, {size / 1e9:.2f} GB, and its stats file; "
          "remove them when done)")


if __name__ == "__main__":
    main()
