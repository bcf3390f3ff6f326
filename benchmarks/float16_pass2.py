"""Pass 2 in float16 against float32: the hardware conversion (F16C) and the software one.

`wideann normalize IN -o OUT.npy --stats S --dtype D` runs pass 2 alone (the stats are given). This
times it for float32, for float16 with the conversion the engine picks (F16C where the CPU has it) and
for float16 with the software conversion forced (WIDEANN_HALF_CONVERSION=software, what every CPU did
before), on a tall and a wide `wideann make-data` file, with 1 thread and all cores, and prints a
Markdown table. Each run is a fresh process; before each the script waits (up to --idle-wait s) until
the rest of the machine uses under a quarter of a core, and reads the input once (page cache warm);
the best of --repeat runs counts, and the rest of the machine's load during that run is shown.

    python benchmarks/float16_pass2.py [--mb 200] [--repeat 5] [--idle-wait 30] [--baseline SITE]

--baseline SITE also times float32 and float16 with another build of wideann, installed into the folder
SITE (`pip install --target SITE` of an older commit; the script puts SITE first on PYTHONPATH and
writes a sitecustomize.py there that takes an editable install's import hook out of the way).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from normalize_vs_peers import _busy_cpu_s, machine, wait_idle, warm_cache  # noqa: E402

WORK = HERE / "work"
SHAPES = {"tall": 100, "wide": 12_849}  # columns; rows from --mb
BYTES_PER_VALUE = 10.3  # what make-data writes, about
VARIANTS = [("float32", "float32", {}), ("float16 (F16C)", "float16", {}),
            ("float16 (software)", "float16", {"WIDEANN_HALF_CONVERSION": "software"})]


def one_run(inp: Path, stats: Path, dtype: str, threads: int, env: dict, idle_wait: float) -> dict:
    out = WORK / "f16_out.npy"
    if idle_wait > 0:
        wait_idle(0.25, idle_wait)
    warm_cache(inp)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    b0 = _busy_cpu_s()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "wideann", "normalize", str(inp), "-o", str(out), "--stats", str(stats),
                    "--dtype", dtype, "--threads", str(threads), "-q"], check=True, env={**os.environ, **env},
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    b1 = _busy_cpu_s()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out.unlink()
    others = max(0.0, (b1 - b0) - cpu) / wall if b0 is not None else float("nan")
    return {"wall": wall, "cpu": cpu, "others": others}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=200, help="size of each input CSV (MB)")
    ap.add_argument("--repeat", type=int, default=5, help="runs of each variant; the fastest counts")
    ap.add_argument("--idle-wait", type=float, default=30, help="wait up to this long for an idle machine")
    ap.add_argument("--baseline", metavar="SITE", help="also time this other build (see above)")
    ap.add_argument("--shapes", default="tall,wide", help="which files (default: tall,wide)")
    ap.add_argument("--threads", default="", help="thread counts, e.g. 1,2 (default: 1 and all cores)")
    args = ap.parse_args()
    WORK.mkdir(exist_ok=True)
    variants = list(VARIANTS)
    if args.baseline:
        site = Path(args.baseline).resolve()
        (site / "sitecustomize.py").write_text(
            "import sys\nsys.meta_path[:] = [f for f in sys.meta_path "
            "if not type(f).__name__.startswith('ScikitBuild')]\n")
        env = {"PYTHONPATH": str(site)}
        variants += [("float32 (baseline)", "float32", env), ("float16 (baseline)", "float16", env)]
    import wideann._native as native

    m = machine()
    print(f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}; "
          f"the engine's float16 conversion here: {native.half_conversion()}.")
    print()
    print("| file | threads | variant | wall s (best) | wall s (median) | CPU s (best run) | vs float32 (wall) | "
          "vs float32 (CPU) | others' load (cores) |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for shape, cols in SHAPES.items():
        if shape not in args.shapes.split(","):
            continue
        rows = max(10, int(args.mb * 1e6 / (cols * BYTES_PER_VALUE)))
        inp = WORK / f"f16_{shape}_{rows}x{cols}.csv"
        stats = inp.with_suffix(".stats.json")
        if not inp.exists():
            subprocess.run([sys.executable, "-m", "wideann", "make-data", "-o", str(inp), "--rows", str(rows),
                            "--cols", str(cols), "--seed", "1", "-q"], check=True, capture_output=True)
        if not stats.exists():
            subprocess.run([sys.executable, "-m", "wideann", "stats", str(inp), "-o", str(stats), "-q"], check=True, capture_output=True)
        mb = inp.stat().st_size / 1e6
        for threads in ([int(t) for t in args.threads.split(",")] if args.threads else (1, m["nproc"])):
            runs = {name: [] for name, _, _ in variants}
            for _ in range(args.repeat):  # variants alternate, so that a busy spell hits them alike
                for name, dtype, env in variants:
                    runs[name].append(one_run(inp, stats, dtype, threads, env, args.idle_wait))
            best = {name: min(rs, key=lambda r: r["wall"]) for name, rs in runs.items()}
            base = best["float32"]
            for name, _, _ in variants:
                b = best[name]
                med = statistics.median(r["wall"] for r in runs[name])
                print(f"| {shape} ({cols:,} columns, {rows:,} rows, {mb:.0f} MB) | {threads} | {name} | "
                      f"{b['wall']:.3f} | {med:.3f} | {b['cpu']:.3f} | {b['wall'] / base['wall']:.2f} | "
                      f"{b['cpu'] / base['cpu']:.2f} | {b['others']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
