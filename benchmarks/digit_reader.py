"""Which digit reader the tokenizer should use, by table width.

The engine reads the digits of each number either with a byte-by-byte loop or with a branch-free
8-bytes-at-a-time reader (csrc/tokenizer.hpp). The loop is faster when the CPU's branch predictor can
learn how many digits each column has, which it can for narrow tables; on wide tables it mispredicts on
nearly every field. This measures pass 1 (`wideann.compute_stats`, one thread, page cache warm) with each
reader forced through WIDEANN_DIGIT_READER, on `wideann make-data` files of about the same size and
different widths, and prints a Markdown table (stopping if the two readers find different stats: both
must do the same job), with each reader's peak RSS (the largest of its runs, a whole Python process with
wideann imported). The engine switches at kBranchFreeFromColumns.

    python benchmarks/digit_reader.py [--mb 200] [--repeat 3]
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path

WORK = Path(__file__).resolve().parent / "work"
WIDTHS = [100, 300, 1000, 3000, 6000, 12849]
BYTES_PER_VALUE = 10.3  # what make-data writes, about

TIMED = """
import hashlib, resource, sys, time, wideann
t = time.perf_counter()
s = wideann.compute_stats(sys.argv[1], threads=1)
t = time.perf_counter() - t
print(t, hashlib.sha256(s.data_min.tobytes() + s.data_max.tobytes() + str(s.n_rows).encode()).hexdigest(),
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""


def seconds(path: Path, reader: str) -> tuple[float, str, float]:
    """Seconds of pass 1 with ``reader`` forced, a digest of the stats it found (min, max, rows) and the
    process's peak RSS in MiB."""
    env = dict(os.environ, WIDEANN_DIGIT_READER=reader)
    out = subprocess.run([sys.executable, "-c", TIMED, str(path)], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), out[1], int(out[2]) / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=200, help="size of each generated file (MB)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per reader and width; the best counts")
    args = ap.parse_args()
    WORK.mkdir(exist_ok=True)
    print("| columns | rows | loop MB/s | branch-free MB/s | branch-free / loop | peak RSS MiB (loop / branch-free) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for cols in WIDTHS:
        rows = max(10, int(args.mb * 1e6 / (cols * BYTES_PER_VALUE)))
        path = WORK / f"digits_{cols}x{rows}.csv"
        if not path.exists():
            subprocess.run([sys.executable, "-m", "wideann", "make-data", "-o", str(path), "--rows", str(rows),
                            "--cols", str(cols), "--seed", "3", "-q"], check=True, capture_output=True)
        with open(path, "rb") as f:  # warm the page cache
            while f.read(1 << 24):
                pass
        size = path.stat().st_size
        best, found, peak = {}, set(), {}
        for _ in range(args.repeat):
            for reader in ("loop", "branch-free"):
                s, digest, mib = seconds(path, reader)
                best[reader] = min(best.get(reader, 1e9), s)
                peak[reader] = max(peak.get(reader, 0), mib)
                found.add(digest)
        if len(found) != 1:  # a reader that read the numbers otherwise would not be timed doing the same job
            sys.exit(f"{path}: the two digit readers found different stats")
        loop, free = size / best["loop"] / 1e6, size / best["branch-free"] / 1e6
        print(f"| {cols:,} | {rows:,} | {loop:.0f} | {free:.0f} | {free / loop:.2f} | "
              f"{peak['loop']:.0f} / {peak['branch-free']:.0f} |", flush=True)
    print(f"(both readers found the same min, max and rows in every file; the files stay in {WORK} for the "
          f"next run, about {args.mb * len(WIDTHS):.0f} MB: remove them when done)")


if __name__ == "__main__":
    main()
