"""Memory is O(columns + threads x buffer), never O(rows): peak RSS of `wideann normalize` on a
12,849-column file stays under 200 MB and does not grow when the file doubles in rows.

Peak RSS is measured in a fresh wrapper process (ru_maxrss of its only child), so nothing else the
test session ran is counted."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import WIDEANN, default_names

COLS = 12_849
LIMIT_MB = 200
GROWTH_MB = 12  # the 600-row file is ~32 MB larger than the 300-row one

_WRAPPER = r"""
import json, resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": p.returncode, "stderr": p.stderr[-2000:], "maxrss_kb": r.ru_maxrss}))
"""


def peak_rss_mb(args) -> float:
    cmd = [sys.executable, "-c", _WRAPPER, *WIDEANN, *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0, res["stderr"]
    return res["maxrss_kb"] * 1024 / 1e6  # (ru_maxrss is in KiB; the limits are in MB, 10^6 bytes)


@pytest.fixture(scope="module")
def wide_files(tmp_path_factory):
    """300 and 600 rows x 12,849 columns (~32 and ~64 MB), written from a pool of distinct rows."""
    d = tmp_path_factory.mktemp("wide")
    r = np.random.default_rng(11)
    pool = []
    for _ in range(30):
        row = r.uniform(-1000, 1000, COLS)
        pool.append((",".join(f"{v:.3f}" for v in row) + "\n").encode())
    header = (",".join(default_names(COLS)) + "\n").encode()
    paths = {}
    for rows in (300, 600):
        p = d / f"wide{rows}.csv"
        with open(p, "wb") as f:
            f.write(header)
            for i in range(rows):
                f.write(pool[(i * 7 + i // 30) % 30])
        paths[rows] = p
    yield paths
    for p in paths.values():
        p.unlink()


@pytest.mark.parametrize("fmt", ["npy", "csv"])
def test_peak_rss_bounded_and_flat_in_rows(tmp_path, wide_files, fmt):
    rss = {}
    for rows, path in wide_files.items():
        out = tmp_path / f"o{rows}.{fmt}"
        rss[rows] = peak_rss_mb(["normalize", path, "-o", out, "--threads", "2"])
        if fmt == "npy":
            assert np.load(out, mmap_mode="r").shape == (rows, COLS)
        out.unlink()
    assert rss[300] < LIMIT_MB, f"peak RSS {rss[300]:.0f} MB on 300 x {COLS}"
    assert rss[600] < LIMIT_MB, f"peak RSS {rss[600]:.0f} MB on 600 x {COLS}"
    assert rss[600] - rss[300] < GROWTH_MB, f"peak RSS grew from {rss[300]:.0f} to {rss[600]:.0f} MB " \
                                            f"when the rows doubled"


def test_peak_rss_denormalize_and_stats(tmp_path, wide_files):
    rss = {}
    for rows, path in wide_files.items():
        st = tmp_path / f"s{rows}.json"
        rss[("stats", rows)] = peak_rss_mb(["stats", path, "-o", st])
        rss[("normalize", rows)] = None
        npy = tmp_path / f"t{rows}.npy"
        subprocess.run([*WIDEANN, "normalize", str(path), "-o", str(npy), "--stats", str(st)], check=True,
                       capture_output=True)
        rss[("denormalize", rows)] = peak_rss_mb(["denormalize", npy, "-o", tmp_path / f"d{rows}.csv", "--stats", st])
    for job in ("stats", "denormalize"):
        a, b = rss[(job, 300)], rss[(job, 600)]
        assert b < LIMIT_MB, f"{job}: peak RSS {b:.0f} MB"
        assert b - a < GROWTH_MB, f"{job}: peak RSS grew from {a:.0f} to {b:.0f} MB when the rows doubled"


def test_peak_rss_bounded_with_many_threads(tmp_path, wide_files):
    """The default thread count is all cores (16 on the GPU machines): buffers in flight must stay
    within the same 200 MB on a 12,849-column file (make-data: 1,100 rows, two of its seeded streams of
    1,024 rows, made by 16 threads a few rows at a time)."""
    path = wide_files[600]
    npy = tmp_path / "t.npy"
    rss = {
        "normalize .npy": peak_rss_mb(["normalize", path, "-o", npy, "--threads", "16"]),
        "normalize .csv": peak_rss_mb(["normalize", path, "-o", tmp_path / "t.csv", "--threads", "16"]),
        "denormalize": peak_rss_mb(["denormalize", npy, "-o", tmp_path / "d.csv", "--stats",
                                    tmp_path / "t.stats.json", "--threads", "16"]),
        "make-data": peak_rss_mb(["make-data", "-o", tmp_path / "m.csv", "--rows", "1100", "--cols", COLS,
                                  "--threads", "16", "-q"]),
    }
    over = {k: round(v) for k, v in rss.items() if v >= LIMIT_MB}
    assert not over, f"peak RSS (MB) over {LIMIT_MB} MB with --threads 16: {over}"


def test_peak_rss_of_a_one_column_csv_ending_in_a_long_run_of_blank_lines(tmp_path):
    """A one-column file's blank lines wait until text follows (then they are empty values) or the file ends
    (dropped): a run of them was held in memory whole (300 MiB of newlines: 810 MB)."""
    path = tmp_path / "blank.csv"
    with open(path, "wb") as f:
        f.write(b"y\n1\n2\n")
        for _ in range(12):
            f.write(b"\n" * (8 << 20))
    mb = peak_rss_mb(["stats", str(path), "-o", str(tmp_path / "s.json"), "--threads", "2"])
    assert json.loads((tmp_path / "s.json").read_text())["n_rows"] == 2
    assert mb < LIMIT_MB, f"peak RSS {mb:.0f} MB over {LIMIT_MB} MB for 96 MiB of trailing blank lines"
