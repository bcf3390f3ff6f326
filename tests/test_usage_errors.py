"""Wrong usage on the command line is one line and exit code 2, said by the argument parser before any work,
never a traceback of the engine's bindings nor a data error (exit code 1)."""
from __future__ import annotations

import re
import subprocess

import pytest

import wideann
from conftest import WIDEANN, ok

BIG = "99999999999999999999"  # beyond 64 bits


@pytest.mark.parametrize("args, says", [
    (["make-data", "--seed", "-1"], "--seed: must be at least 0"),
    (["make-data", "--seed", str(2**64)], "--seed: must be at most 18446744073709551615"),
    (["make-data", "--rows", BIG + "0"], "--rows: must be at most"),
    (["make-data", "--cols", BIG + "0"], "--cols: must be at most"),
    (["make-data", "--threads", BIG], "--threads: must be at most"),
    (["make-data", "--rows", "0"], "--rows: must be at least 1"),
    (["make-data", "--cols", "5"], "--cols: must be at least 6 (the 5 Friedman inputs and y)"),
    (["make-data", "--noise", "-1"], "--noise: must be a finite number >= 0"),
    (["make-data", "--noise", "inf"], "--noise: must be a finite number >= 0"),
    (["make-data", "--rows", "1.5"], "--rows: expected a whole number"),
    (["make-data", "--rows", "١"], "--rows: expected a whole number"),  # an Arabic-Indic digit: not ASCII
    (["normalize", "IN", "-o", "OUT.npy", "--threads", BIG], "--threads: must be at most"),
    (["normalize", "IN", "-o", "OUT.npy", "--threads", "-1"], "--threads: must be at least 0"),
    (["stats", "IN", "-o", "OUT.json", "--threads", BIG], "--threads: must be at most"),
    (["denormalize", "IN", "-o", "OUT.csv", "--stats", "S", "--threads", BIG], "--threads: must be at most"),
    (["predict", "RUN", "IN", "-o", "OUT.csv", "--threads", BIG], "--threads: must be at most"),
    (["predict", "RUN", "IN", "-o", "OUT.csv", "--batch-size", BIG * 2], "--batch-size: must be at most"),
])
def test_numbers_out_of_range_are_wrong_usage(tmp_path, args, says):
    if args[0] == "make-data":
        base = {"--rows": "3", "--cols": "6"}
        base.update(dict(zip(args[1::2], args[2::2])))
        args = ["make-data", "-o", str(tmp_path / "m.csv"), *[x for kv in base.items() for x in kv]]
    p = subprocess.run([*WIDEANN, *args], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    last = p.stderr.splitlines()[-1]
    assert says in last and "Traceback" not in p.stderr, p.stderr
    assert list(tmp_path.iterdir()) == []


def test_columns_are_positions_only_in_ascii_digits(tmp_path):
    """``--columns=--1`` and ``²`` failed on int() with a message naming nothing; ``١`` (an Arabic-Indic one) was
    taken as position 1. Each is a column name: not among the stats' columns, said naming the stats file."""
    t = tmp_path / "t.csv"
    wideann.make_data(t, rows=20, cols=6, seed=1)
    ok("normalize", t, "-o", tmp_path / "t.npy")
    (tmp_path / "p.csv").write_text("p\n0.5\n")
    stats = tmp_path / "t.stats.json"
    for col in ("--1", "²", "١"):
        p = subprocess.run([*WIDEANN, "denormalize", str(tmp_path / "p.csv"), "-o", str(tmp_path / "o.csv"),
                            "--stats", str(stats), f"--columns={col}"], capture_output=True, text=True)
        assert p.returncode == 1 and p.stderr.count("\n") == 1, (col, p.stderr)
        assert f"{stats}: no column named '{col}'" in p.stderr, p.stderr
        assert not (tmp_path / "o.csv").exists()
    ok("denormalize", tmp_path / "p.csv", "-o", tmp_path / "o.csv", "--stats", stats, "--columns=-1")


def test_the_table_and_its_stats_named_as_one_file_is_wrong_usage(tmp_path):
    # refused with exit 1 by the engine, after it had checked the inputs; the other clashes of paths are 2
    wideann.make_data(tmp_path / "t.csv", rows=20, cols=6, seed=1)
    p = subprocess.run([*WIDEANN, "normalize", str(tmp_path / "t.csv"), "-o", str(tmp_path / "s.npy"), "--stats-out",
                        str(tmp_path / "s.npy")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "named for two outputs" in p.stderr, p.stderr
    assert p.stderr.rstrip().endswith("name another --stats-out"), p.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]
    # from Python, the advice names the keyword argument, not the option
    with pytest.raises(ValueError, match=r"named for two outputs .*: name another stats_out=$"):
        wideann.normalize([tmp_path / "t.csv"], tmp_path / "s.npy", stats_out=tmp_path / "s.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_denormalize_names_the_stats_file_for_columns_of_a_wrong_type(tmp_path):
    wideann.make_data(tmp_path / "t.csv", rows=20, cols=6, seed=1)
    wideann.normalize([tmp_path / "t.csv"], tmp_path / "t.npy")
    (tmp_path / "p.csv").write_text("y\n0.5\n")
    with pytest.raises(TypeError, match=f"^{tmp_path / 't.stats.json'}: "):
        wideann.denormalize(tmp_path / "p.csv", tmp_path / "b.csv", stats=tmp_path / "t.stats.json", columns=[True])


def test_the_python_api_refuses_stats_out_named_as_a_table(tmp_path, monkeypatch):
    # normalize(stats_out="s.npy") wrote the stats' JSON text into a file named as a table, as --stats-out did
    # before fa5c3c6; refused before any work, in fit and apply mode alike
    wideann.make_data(tmp_path / "t.csv", rows=20, cols=6, seed=1)
    stats = wideann.normalize([tmp_path / "t.csv"], tmp_path / "a.npy")
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, applied in (("s.npy", None), ("s.CSV", None), ("s.Npy", stats)):
        with pytest.raises(ValueError, match=re.escape(f"{name}: stats_out= is a stats file (JSON); name it *.json")):
            wideann.normalize([tmp_path / "t.csv"], tmp_path / "t.npy", stats=applied, stats_out=tmp_path / name)
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    monkeypatch.chdir(tmp_path)  # ("-" is a name in the working folder)
    with pytest.raises(ValueError, match=re.escape("-: stats_out= is a stats file, not standard output; name it")):
        wideann.normalize([tmp_path / "t.csv"], tmp_path / "t.npy", stats_out="-")  # (as --stats-out -)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    wideann.normalize([tmp_path / "t.csv"], tmp_path / "t.npy", stats_out=tmp_path / "s")  # (no extension: fine)
    assert wideann.Stats.load(tmp_path / "s") == stats


def test_stats_save_refuses_a_name_that_is_not_a_stats_file(tmp_path, monkeypatch):
    # Stats.save("x.npy") wrote JSON text into a file named as a table (and "-" a file named "-"), which the command
    # line and normalize(stats_out=) refuse: the same check, the same words, nothing written
    stats = wideann.Stats(["x1", "y"], [0, 0], [1, 2], 3)
    for name in ("x.npy", "x.CSV", "x.Npy"):
        said = f"{name}: Stats.save writes a stats file (JSON); name it *.json"
        with pytest.raises(ValueError, match=re.escape(said)):
            stats.save(tmp_path / name)
    monkeypatch.chdir(tmp_path)  # ("-" is a name in the working folder)
    with pytest.raises(ValueError, match=re.escape("-: Stats.save writes a stats file, not standard output; name it")):
        stats.save("-")
    assert list(tmp_path.iterdir()) == []
    stats.save(tmp_path / "x")  # (no extension: fine)
    assert wideann.Stats.load(tmp_path / "x") == stats
