"""The reference case at scale: raw CSV shards to a trained model, every step timed and measured.

The sharded workflow of the README, as a user with several machines (or one large table) runs it:

    wideann make-data  -o raw/shard_K.csv --rows R --cols C --seed K     # K = 1..N: one distribution
    wideann stats      raw/shard_K.csv -o stats/shard_K.json            # per shard (each on its machine)
    wideann merge-stats stats/shard_*.json -o stats/merged.json         # exact: min of mins, max of maxes
    wideann normalize  raw/shard_K.csv -o npy_<dtype>/shard_K.npy --stats stats/merged.json --dtype <dtype>
    accelerate launch scripts/4_multi_gpu_ann.py --data npy_<dtype>/ --test-data test_<dtype>/test.npy ...

(plus a test shard from another seed, normalized with the same merged stats). Every step runs as its own
process; the script reports, per step, the wall time (all shards), the MB/s read (make-data: written), the
largest peak RSS of one process, and the disk its outputs use, then the test R² that lesson 4 reached. Run it
at two sizes (say `--gb 2` and `--gb 20`) to see that each engine step's peak RSS does not grow with the rows.

    python benchmarks/reference_scale.py --gb 20 --cols 12849 --shards 8 --train-dtype float32 \
        --train-args "--epochs 1 --max-steps 200"
    python benchmarks/reference_scale.py --rows-per-shard 20000 --shards 4 --cols 2000 --json r.json

Sizes: `--gb G` sets the rows per shard so that the raw training CSV is about G GB (1e9 bytes) in all
(the bytes per row are measured on a small sample of make-data's output first). Everything is written
under `--work` (default `benchmarks/work/reference_scale/`, which git ignores) and removed at the end,
a failed or interrupted run's too, unless `--keep`; a `--work` that holds files this script did not make
is refused, not emptied. Free space is checked before anything is written. Wall times are the commands'
own (without the start of the process that measures each); MB/s is given for the steps that read their
inputs once (make-data: the CSV written), not for merge-stats or lesson 4.
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
from lessons_common import ROOT, WORK, machine, run_measured, run_with_peak_rss  # noqa: E402

WIDEANN = [sys.executable, "-m", "wideann"]
MARK = ".reference_scale"  # in --work: the folder is this script's, to empty


def wideann(*args):
    return [*WIDEANN, *map(str, args)]


def bytes_per_row(cols: int, folder: Path) -> float:
    """Bytes of one raw CSV row of make-data at this width (measured on a small sample)."""
    sample = folder / "sample.csv"
    r, _ = run_with_peak_rss(wideann("make-data", "-o", sample, "--rows", 200, "--cols", cols, "--seed", 999, "-q"))
    if r.returncode:
        sys.exit(f"make-data failed: {r.stderr.strip()}")
    with open(sample, "rb") as f:
        header = len(f.readline())
    per_row = (sample.stat().st_size - header) / 200
    sample.unlink()
    return per_row


def du(paths) -> int:
    return sum(Path(p).stat().st_size for p in paths)


class Steps:
    """Runs commands as steps and keeps one row of results per step."""

    def __init__(self):
        self.rows = []

    def run(self, name, commands, inputs=(), outputs=(), env=None, cwd=None, rate=True):
        """Run ``commands`` one after the other (the shards of one step); record wall, MB/s, peak RSS, disk.
        The wall is the sum of the commands' own (each measured by the process that starts it, so without
        that process's start). ``rate``: give MB/s (the inputs read once, or for make-data the CSV written);
        not for a step that reads its inputs other than once (merge-stats: a few KB; lesson 4: epochs)."""
        peak, wall = 0, 0.0
        for cmd in commands:
            r, p, w = run_measured(cmd, env=env, cwd=cwd)
            if r.returncode:
                sys.exit(f"{name} failed ({shlex.join(map(str, cmd))}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
            peak, wall = max(peak, p or 0), wall + w
        in_bytes, out_bytes = du(inputs), du(outputs)
        moved = in_bytes or out_bytes  # make-data reads nothing: its rate is the CSV it writes
        row = dict(step=name, processes=len(commands), wall_s=wall, input_bytes=in_bytes,
                   mb_per_s=moved / 1e6 / wall if moved and rate else None, peak_rss_bytes=peak, disk_bytes=out_bytes)
        self.rows.append(row)
        mbs = f"{row['mb_per_s']:,.0f} MB/s" if row["mb_per_s"] else "-"
        print(f"{name}: {wall:,.1f} s, {mbs}, peak RSS {peak / 2**20:,.0f} MiB, "
              f"{row['disk_bytes'] / 1e9:,.2f} GB written", flush=True)
        return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    size = ap.add_mutually_exclusive_group(required=True)
    size.add_argument("--gb", type=float, help="raw training CSV in all, GB (1e9 bytes)")
    size.add_argument("--rows-per-shard", type=int)
    ap.add_argument("--shards", type=int, default=4, help="raw CSV shards of the training table")
    ap.add_argument("--cols", type=int, default=12_849, help="columns, y included (12,849: the reference width)")
    ap.add_argument("--test-rows", type=int, default=0, help="rows of the test shard (default: a tenth of the "
                    "training rows, at most 20,000)")
    ap.add_argument("--noise", type=float, default=1.0)
    ap.add_argument("--dtypes", nargs="+", default=["float16", "float32"], choices=["float16", "float32"],
                    help="normalize the shards to these dtypes")
    ap.add_argument("--train-dtype", default="float16", choices=["float16", "float32", "none"],
                    help="the shards lesson 4 trains on ('none': no training)")
    ap.add_argument("--train-args", default="", help="more options for lesson 4, e.g. \"--epochs 3 --max-steps 500\"")
    ap.add_argument("--launch-args", default="--num_processes 1",
                    help="options for accelerate launch (e.g. \"--config_file scripts/configs/4gpu.yaml\")")
    ap.add_argument("--threads", type=int, default=0, help="engine threads (0: all cores)")
    ap.add_argument("--work", type=Path, default=WORK / "reference_scale")
    ap.add_argument("--keep", action="store_true", help="keep the files (default: removed at the end)")
    ap.add_argument("--json", type=Path, help="write the results as JSON")
    ap.add_argument("--markdown", type=Path, help="write the results table as Markdown")
    args = ap.parse_args()
    if args.train_dtype != "none" and args.train_dtype not in args.dtypes:
        ap.error(f"--train-dtype {args.train_dtype} needs --dtypes to include it")

    work = args.work
    if work.exists() and any(work.iterdir()) and not (work / MARK).exists():
        sys.exit(f"{work}: a folder this script did not make (no {MARK} in it), and not empty: it would be "
                 "emptied and removed; give another --work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / MARK).write_text("made by benchmarks/reference_scale.py: emptied and removed by its next run\n")
    try:
        run(args, work)
    finally:  # a failed or interrupted run does not leave tens of GB behind either
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path):
    row_bytes = bytes_per_row(args.cols, work)
    rows = args.rows_per_shard or math.ceil(args.gb * 1e9 / row_bytes / args.shards)
    test_rows = args.test_rows or min(20_000, max(1, rows * args.shards // 10))
    raw_gb = rows * args.shards * row_bytes / 1e9
    npy_bytes = sum((rows * args.shards + test_rows) * args.cols * (2 if d == "float16" else 4) for d in args.dtypes)
    need = (rows * args.shards + test_rows) * row_bytes + npy_bytes
    free = shutil.disk_usage(work).free
    print(f"{args.shards} shards x {rows:,} rows x {args.cols:,} columns: {raw_gb:,.1f} GB of raw CSV "
          f"({row_bytes:,.0f} bytes a row), test shard {test_rows:,} rows; needs {need / 1e9:,.1f} GB of disk, "
          f"{free / 1e9:,.1f} GB free", flush=True)
    if need * 1.05 > free:
        sys.exit(f"{work}: not enough free space ({need / 1e9:,.1f} GB needed, {free / 1e9:,.1f} GB free); "
                 "choose a smaller --gb")

    threads = ["--threads", args.threads] if args.threads else []
    raw = [work / "raw" / f"shard_{k:03d}.csv" for k in range(1, args.shards + 1)]
    test_raw = work / "raw" / "test.csv"
    stats = [work / "stats" / f"shard_{k:03d}.json" for k in range(1, args.shards + 1)]
    merged = work / "stats" / "merged.json"
    for d in ("raw", "stats"):
        (work / d).mkdir()

    s = Steps()
    s.run("make-data (raw CSV shards + test shard)",
          [wideann("make-data", "-o", p, "--rows", rows, "--cols", args.cols, "--seed", k, "--noise", args.noise,
                   "-q", *threads) for k, p in enumerate(raw, start=1)]
          + [wideann("make-data", "-o", test_raw, "--rows", test_rows, "--cols", args.cols, "--seed", 10_000,
                     "--noise", args.noise, "-q", *threads)],
          outputs=raw + [test_raw])
    s.run("stats per shard", [wideann("stats", p, "-o", o, "-q", *threads) for p, o in zip(raw, stats)],
          inputs=raw, outputs=stats)
    s.run("merge-stats", [wideann("merge-stats", *stats, "-o", merged)], inputs=stats, outputs=[merged], rate=False)
    tables = {}
    for dtype in args.dtypes:
        folder, test_folder = work / f"npy_{dtype}", work / f"test_{dtype}"
        folder.mkdir()
        test_folder.mkdir()
        outs = [folder / (p.stem + ".npy") for p in raw]
        test_out = test_folder / "test.npy"
        s.run(f"normalize per shard ({dtype}, merged stats)",
              [wideann("normalize", p, "-o", o, "--stats", merged, "--stats-out", o.with_suffix(".stats.json"),
                       "--dtype", dtype, "-q", *threads) for p, o in zip(raw, outs)]
              + [wideann("normalize", test_raw, "-o", test_out, "--stats", merged, "--dtype", dtype, "-q", *threads)],
              inputs=raw + [test_raw], outputs=outs + [test_out])
        tables[dtype] = (folder, test_out)

    result, log = None, None
    if args.train_dtype != "none":
        folder, test_out = tables[args.train_dtype]
        run_dir = work / "run"
        env = dict(os.environ, HF_HOME=str(WORK / "hf"))
        cmd = [sys.executable, "-m", "accelerate.commands.launch", *shlex.split(args.launch_args),
               ROOT / "scripts" / "4_multi_gpu_ann.py", "--data", folder, "--test-data", test_out,
               "--stats", merged, "--output-dir", run_dir, *shlex.split(args.train_args)]
        shards = sorted(folder.glob("*.npy"))
        r = s.run(f"lesson 4 on the {args.train_dtype} shards", [cmd], inputs=shards + [test_out],
                  env=env, cwd=ROOT, rate=False)
        # what the lesson chose and how each epoch went (the epochs the model needed)
        log = [ln for ln in r.stdout.splitlines() if ln.startswith(("device", "table", "data tier", "defaults",
                                                                       "  batch size", "global batch", "epoch",
                                                                       "early stop", "test RMSE", "trained"))]
        print("\n".join("    " + ln for ln in log), flush=True)
        s.rows[-1]["disk_bytes"] = du(p for p in run_dir.rglob("*") if p.is_file())
        result = json.loads((run_dir / "metrics.json").read_text())
        print(f"lesson 4: test R² {result['test_r2']:.4f}, RMSE {result['test_rmse']:.4f} "
              f"after {result['epochs']} epoch(s), {result['train_seconds']:,.0f} s of training", flush=True)

    report = dict(machine=machine(), shards=args.shards, rows_per_shard=rows, test_rows=test_rows, cols=args.cols,
                  raw_bytes=du(raw), steps=s.rows, train_args=args.train_args, launch_args=args.launch_args,
                  lesson4=result, lesson4_log=log if result else None)
    md = markdown(report)
    print()
    print(md)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(md + "\n")


def markdown(r) -> str:
    lines = [f"machine: {r['machine']}",
             f"table: {r['shards']} raw CSV shards x {r['rows_per_shard']:,} rows x {r['cols']:,} columns "
             f"({r['raw_bytes'] / 1e9:,.1f} GB of raw CSV), test shard {r['test_rows']:,} rows", "",
             "| step | processes | wall s | MB/s (read; make-data: written) | peak RSS (largest process) "
             "| disk written |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in r["steps"]:
        mbs = f"{row['mb_per_s']:,.0f}" if row["mb_per_s"] else "–"
        lines.append(f"| {row['step']} | {row['processes']} | {row['wall_s']:,.1f} | {mbs} | "
                     f"{row['peak_rss_bytes'] / 2**20:,.0f} MiB | {row['disk_bytes'] / 1e9:,.2f} GB |")
    m = r.get("lesson4")
    if m:
        lines += ["", f"lesson 4 (`{r['launch_args']}`, `{r['train_args']}`): test R² {m['test_r2']:.4f}, "
                  f"RMSE {m['test_rmse']:.4f}, {m['epochs']} epoch(s), {m['train_seconds']:,.0f} s of training, "
                  f"{m['samples_per_second']:,.0f} samples/s in all, "
                  f"{m.get('train_samples_per_second', 0):,.0f} samples/s in the training steps "
                  f"(data tier: {m.get('data_tier', '?')}, table {m.get('table_dtype', '?')}, "
                  f"mixed precision {m.get('mixed_precision', '?')})"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
