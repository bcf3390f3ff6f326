"""The benchmarks' own correctness: their checks catch a competitor that did less, their competitors write
what wideann writes, and they measure the memory they say. No timings are asserted."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ok

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import normalize_vs_peers as nvp  # noqa: E402


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    d = tmp_path_factory.mktemp("nvp")
    path = d / "in.csv"
    ok("make-data", "-o", path, "--rows", 1500, "--cols", 7, "--seed", 1, "-q")
    return path


def _full(tool, inp, out):
    out.mkdir()
    nvp.JOB_FUNCS[tool]("full", str(inp), str(out))
    return out


def test_check_rows_reach_the_middle_of_the_table():
    rows = nvp.check_rows(100_000)
    assert rows[0] == 0 and rows[-1] == 99_999 and len(rows) > nvp.CHECK_HEAD_ROWS + 100
    middle = rows[(rows >= nvp.CHECK_HEAD_ROWS) & (rows < 99_999)]
    assert middle.min() < 25_000 and middle.max() > 75_000
    assert list(nvp.check_rows(3)) == [0, 1, 2]


def test_a_peer_whose_output_is_right_at_the_ends_only_is_wrong(small_csv, tmp_path):
    ref = _full("wideann", small_csv, tmp_path / "wideann")
    problems, _ = nvp.check_result("wideann", "full", str(small_csv), str(ref), None)
    assert problems == []
    stats = json.loads((ref / "stats.json").read_text())
    # a "pandas" run whose rows between the first 50 and the last were never written (zeros)
    bad = tmp_path / "pandas"
    bad.mkdir()
    (bad / "stats.json").write_text(json.dumps(stats))
    a = np.load(ref / "out.npy")
    a[nvp.CHECK_HEAD_ROWS:-1] = 0
    np.save(bad / "out.npy", a)
    problems, _ = nvp.check_result("pandas", "full", str(small_csv), str(bad), stats)
    assert any("sampled rows" in p for p in problems), problems
    problems, _ = nvp.check_result("pandas", "full", str(small_csv), str(bad), stats, str(ref / "out.npy"))
    assert any("wideann's output" in p for p in problems), problems


@pytest.mark.parametrize("tool", ["pandas", "sklearn", "pyarrow"])
def test_npy_peers_write_wideanns_output_bit_for_bit(small_csv, tmp_path, tool):
    pytest.importorskip({"sklearn": "sklearn", "pyarrow": "pyarrow"}.get(tool, "pandas"))
    pytest.importorskip("pandas")
    ref = _full("wideann", small_csv, tmp_path / "wideann")
    out = _full(tool, small_csv, tmp_path / tool)
    stats = json.loads((ref / "stats.json").read_text())
    problems, note = nvp.check_result(tool, "full", str(small_csv), str(out), stats, str(ref / "out.npy"))
    assert problems == [] and "100.0000% bit for bit" in note, (problems, note)
    a = np.load(out / "out.npy")  # a plain .npy, readable by numpy as written
    assert a.dtype == np.float32 and a.shape == (1500, 7)


def test_npy_out_writes_what_np_save_writes(tmp_path):
    a = np.random.default_rng(0).random((37, 5))
    with nvp._npy_out(tmp_path / "a.npy", 37, 5) as f:
        for r in range(0, 37, 10):
            nvp._write_rows(f, a[r:r + 10])
    np.save(tmp_path / "b.npy", a.astype(np.float32))
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()


def test_reference_scale_refuses_a_work_folder_it_did_not_make(tmp_path):
    import subprocess

    keep = tmp_path / "mine" / "notes.txt"
    keep.parent.mkdir()
    keep.write_text("not the benchmark's")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reference_scale.py"), "--rows-per-shard", "10",
                        "--train-dtype", "none", "--work", str(keep.parent)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "did not make" in r.stderr
    assert keep.read_text() == "not the benchmark's"


def test_run_measured_gives_the_commands_own_wall_and_peak():
    from lessons_common import run_measured

    r, peak, wall = run_measured([sys.executable, "-c", "import time; b = b'\\x01' * (200 << 20); time.sleep(0.2)"])
    assert r.returncode == 0
    assert peak >= 200 << 20  # ru_maxrss is KiB on Linux: the bytes of the largest process
    assert 0.2 <= wall < 60


def test_lessons_data_path_feeds_both_sources_the_same_rows(tmp_path):
    """The script runs both sources on a tiny table and stops if their batches' checksums differ."""
    import subprocess

    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lessons_data_path.py"), "--rows", "256",
                        "--steps", "2", "--warmup", "1", "--batch-size", "64", "--rounds", "1",
                        "--table", str(tmp_path / "t.npy")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "round 1: memory" in r.stdout and "round 1: disk" in r.stdout
