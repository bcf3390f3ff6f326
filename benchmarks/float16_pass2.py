"""Pass 2 in float16 against float32: the hardware conversion (F16C) and the software one.

`wideann normalize IN -o OUT.npy --stats S --dtype D` runs pass 2 alone (the stats are given). This
times it for float32, for float16 with the conversion the engine picks (F16C where the CPU has it) and
for float16 with the software conversion forced (WIDEANN_HALF_CONVERSION=software, what every CPU did
before), on a tall and a wide `wideann make-data` file, with 1 thread and all cores, and prints a
Markdown table. Each run is a fresh process; before each the script waits (up to --idle-wait s) until
the rest of the machine uses under a quarter of a core, and reads the input once (page cache warm);
the best of --repeat runs counts, and the rest of the machine's load during that run is shown. A run's
wall time includes the process's start-up (Python, imports, the stats read), which dilutes the ratios
towards 1: the same command on a file of the header and one row is timed alongside (*start-up*), and the
next column gives the ratios less it; peak RSS (MiB) is the largest of a variant's runs. The script checks
that the software variant's process does use the software conversion and that every variant of a dtype
writes the same bytes.

    python benchmarks/float16_pass2.py [--mb 200] [--repeat 5] [--idle-wait 30] [--baseline SITE]

--baseline SITE also times float32 and float16 with another build of wideann, installed into the folder
SITE (`pip install --target SITE` of an older commit; the script puts SITE first on PYTHONPATH and
writes a sitecustomize.py there that takes an editable install's import hook out of the way).
"""
from __future__ import annotations

import argparse
import hashlib
import os
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


def one_run(inp: Path, stats: Path, dtype: str, threads: int, env: dict, idle_wait: float,
            digest: bool = False) -> dict:
    out = WORK / "f16_out.npy"
    if idle_wait > 0:
        wait_idle(0.25, idle_wait)
    warm_cache(inp)
    b0 = _busy_cpu_s()
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "wideann", "normalize", str(inp), "-o", str(out), "--stats", str(stats),
           "--dtype", dtype, "--threads", str(threads), "-q"]
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(proc.pid, 0)  # this one process's own CPU time and peak RSS
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    b1 = _busy_cpu_s()
    cpu = ru.ru_utime + ru.ru_stime
    sha = None
    if digest:  # (untimed) the output's bytes, so that the variants can be shown to write the same table
        h = hashlib.sha256()
        with open(out, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
        sha = h.hexdigest()
    out.unlink()
    others = max(0.0, (b1 - b0) - cpu) / wall if b0 is not None else float("nan")
    return {"wall": wall, "cpu": cpu, "others": others, "sha256": sha, "peak_mib": ru.ru_maxrss / 1024}


def conversion_in(env: dict) -> str:
    """The float16 conversion the engine picks in a process with ``env`` (f16c or software)."""
    r = subprocess.run([sys.executable, "-c", "import wideann._native as n; print(n.half_conversion())"],
                       env={**os.environ, **env}, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "unknown (an engine without half_conversion)"


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
    picked = {name: conversion_in(env) for name, dtype, env in variants if dtype == "float16"}
    print("float16 conversion each variant's process uses: " + ", ".join(f"{k}: {v}" for k, v in picked.items()))
    if picked.get("float16 (software)") != "software":
        sys.exit("WIDEANN_HALF_CONVERSION=software did not take effect: the two float16 variants would be the same")
    print("Wall s are whole processes (`python -m wideann normalize ...`), start-up included: *start-up* is the same "
          "command on a file of the header and one row (float32, the same stats), and the last column is each "
          "variant's wall less the start-up over float32's.")
    print()
    print("| file | threads | variant | wall s (best) | wall s (median) | CPU s (best run) | vs float32 (wall) | "
          "vs float32 (CPU) | others' load (cores) | vs float32 (wall less start-up) | peak RSS MiB |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    outputs: dict = {}
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
            subprocess.run([sys.executable, "-m", "wideann", "stats", str(inp), "-o", str(stats), "-q"], check=True,
                           capture_output=True)
        one_row = inp.with_name(inp.stem + "_1row.csv")  # the start-up: the header and one row, the same stats
        with open(inp, "rb") as f:
            one_row.write_bytes(f.readline() + f.readline())
        mb = inp.stat().st_size / 1e6
        start_up = ("start-up (1 row)", "float32", {}, one_row)
        for threads in ([int(t) for t in args.threads.split(",")] if args.threads else (1, m["nproc"])):
            runs = {name: [] for name, _, _ in variants}
            runs[start_up[0]] = []
            for rep in range(args.repeat):  # variants alternate, so that a busy spell hits them alike
                for name, dtype, env, path in [(*v, inp) for v in variants] + [start_up]:
                    runs[name].append(one_run(path, stats, dtype, threads, env, args.idle_wait,
                                              digest=rep == 0 and path == inp))
                    sha = runs[name][-1]["sha256"]
                    if sha:
                        outputs.setdefault((shape, dtype, sha), []).append(f"{name}, {threads} thread(s)")
            best = {name: min(rs, key=lambda r: r["wall"]) for name, rs in runs.items()}
            base, s0 = best["float32"], best[start_up[0]]["wall"]
            for name in runs:
                b = best[name]
                med = statistics.median(r["wall"] for r in runs[name])
                net = (b["wall"] - s0) / (base["wall"] - s0) if name != start_up[0] and base["wall"] > s0 else None
                print(f"| {shape} ({cols:,} columns, {rows:,} rows, {mb:.0f} MB) | {threads} | {name} | "
                      f"{b['wall']:.3f} | {med:.3f} | {b['cpu']:.3f} | {b['wall'] / base['wall']:.2f} | "
                      f"{b['cpu'] / base['cpu']:.2f} | {b['others']:.2f} | {'' if net is None else f'{net:.2f}'} | "
                      f"{max(r['peak_mib'] for r in runs[name]):.0f} |",
                      flush=True)
        one_row.unlink()
    print()
    same = {}
    for (shape, dtype, sha), who in outputs.items():
        same.setdefault((shape, dtype), []).append(who)
    for (shape, dtype), groups in same.items():
        if len(groups) == 1:
            print(f"{shape}, {dtype}: every variant and thread count wrote the same bytes ({len(groups[0])} runs)")
        else:
            print(f"{shape}, {dtype}: OUTPUTS DIFFER: " + " / ".join("; ".join(g) for g in groups))
    print(f"(the input CSV files and their stats stay in {WORK} as f16_*, for the next run: remove them when done)")
    if any(len(g) > 1 for g in same.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
