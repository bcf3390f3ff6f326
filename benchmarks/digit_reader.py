"""Which digit reader the tokenizer should use, by table width.

The engine reads the digits of each number either with a byte-by-byte loop or with a branch-free
8-bytes-at-a-time reader (csrc/tokenizer.hpp). The loop is faster when the CPU's branch predictor can
learn how many digits each column has, which it can for narrow tables; on wide tables it mispredicts on
nearly every field. This measures pass 1 (`wideann.compute_stats`, one thread, page cache warm) with each
reader forced through WIDEANN_DIGIT_READER, on `wideann make-data` files of about the same size and
different widths, and prints a Markdown table. The engine switches at kBranchFreeFromColumns.

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
import sys, time, wideann
t = time.perf_counter()
wideann.compute_stats(sys.argv[1], threads=1)
print(time.perf_counter() - t)
"""


def seconds(path: Path, reader: str) -> float:
    env = dict(os.environ, WIDEANN_DIGIT_READER=reader)
    out = subprocess.run([sys.executable, "-c", TIMED, str(path)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=200, help="size of each generated file (MB)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per reader and width; the best counts")
    args = ap.parse_args()
    WORK.mkdir(exist_ok=True)
    print("| columns | rows | loop MB/s | branch-free MB/s | branch-free / loop |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for cols in WIDTHS:
        rows = max(10, int(args.mb * 1e6 / (cols * BYTES_PER_VALUE)))
        path = WORK / f"digits_{cols}x{rows}.csv"
        if not path.exists():
            subprocess.run([sys.executable, "-m", "wideann", "make-data", "-o", str(path), "--rows", str(rows), "--cols", str(cols),
                            "--seed", "3", "-q"], check=True, capture_output=True)
        with open(path, "rb") as f:  # warm the page cache
            while f.read(1 << 24):
                pass
        size = path.stat().st_size
        best = {}
        for _ in range(args.repeat):
            for reader in ("loop", "branch-free"):
                best[reader] = min(best.get(reader, 1e9), seconds(path, reader))
        loop, free = size / best["loop"] / 1e6, size / best["branch-free"] / 1e6
        print(f"| {cols:,} | {rows:,} | {loop:.0f} | {free:.0f} | {free / loop:.2f} |", flush=True)


if __name__ == "__main__":
    main()
