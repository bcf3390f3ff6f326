"""Faults the fuzzing harness (tests/fuzz/fuzz_engine.py) found, each kept as a test; and the seed
corpus run through the command line, checking the contract on every file.

Faults that only a sanitizer sees (undefined behaviour that happens to work) have no test of their own
here: every engine test runs against the sanitized build in .ci/run, where they stop the process. The
list, with what was fixed, is in tests/fuzz/README.md.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

import wideann

from conftest import assert_failed_cleanly, cli_env, ok, run_cli, stats_file, temp_leftovers, write_text

CORPUS = Path(__file__).resolve().parent / "fuzz" / "corpus"


def npy_bytes(header: str, body: bytes = b"", version: int = 1) -> bytes:
    pre = 10 if version == 1 else 12
    total = (pre + len(header) + 1 + 63) // 64 * 64
    header = header + " " * (total - pre - len(header) - 1) + "\n"
    size = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header.encode() + body


# ---- values beyond the output type: refused, never written as inf -----------------------------------

@pytest.mark.parametrize("out", ["t.npy", "t.csv"])
def test_normalize_float32_overflow_is_refused(tmp_path, out):
    """Applying stats with a tiny range to a value far outside it gave x = 1e300, written as inf in
    float32 (found by the fuzzer: 'non-finite values written')."""
    st = stats_file(tmp_path / "s.json", 3, 0.0, 1e-300, n_rows=2)
    inp = write_text(tmp_path / "far.csv", "x1,x2,y\n0,0,0\n0,1,0\n")
    p = run_cli("normalize", inp, "-o", tmp_path / out, "--stats", st)
    msg = assert_failed_cleanly(p, leftovers=[tmp_path / out], folder=tmp_path, names=["far.csv"],
                                line=3, column=2)
    assert "does not fit float32" in msg and "1e+300" in msg, msg
    # --clip keeps it in range, so it is written
    ok("normalize", inp, "-o", tmp_path / out, "--stats", st, "--clip")


@pytest.mark.parametrize("source", ["npy", "csv"])
def test_denormalize_overflow_is_refused(tmp_path, source):
    """A normalized value far outside [0, 1] (65504, float16's largest) times a range of 1e305 is
    beyond any double: it was written as inf."""
    st = stats_file(tmp_path / "s.json", 2, -1e305, 1e305, n_rows=2)
    if source == "npy":
        np.save(tmp_path / "p.npy", np.array([[0.5, 0.25], [0.5, 65504.0]], dtype=np.float16))
        inp, where = tmp_path / "p.npy", "row 2, column 2"
    else:
        inp, where = write_text(tmp_path / "p.csv", "a,b\n0.5,0.25\n0.5,65504\n"), "line 3, column 2"
    p = run_cli("denormalize", inp, "-o", tmp_path / "b.csv", "--stats", st)
    msg = assert_failed_cleanly(p, leftovers=[tmp_path / "b.csv"], folder=tmp_path, names=[inp.name])
    assert where in msg and "is beyond a double in original units" in msg, msg


def test_zero_and_negative_zero_give_the_same_bytes_whatever_the_order_and_threads(tmp_path):
    """A column holding both 0 and -0 had as its min whichever came last (or, with several threads,
    first), and pass 2 then wrote -0 for some zeros: the bytes depended on the thread count and block
    size, and fit mode differed from applying the saved stats (which store 0). Found by the fuzzer's
    oracle."""
    lines = ["a,b,y"] + ["0,-0.0,1", "-0,0.0,2", "-0.0,0,3"] * 40 + ["5,5,4"]
    inp = write_text(tmp_path / "z.csv", "\n".join(lines) + "\n")
    outs = set()
    for threads, block in ((1, None), (2, None), (1, 64), (3, 64)):
        env = cli_env(WIDEANN_BLOCK_SIZE=block) if block else None
        ok("normalize", inp, "-o", tmp_path / "t.npy", "--threads", threads, env=env)
        outs.add((tmp_path / "t.npy").read_bytes())
        ok("normalize", inp, "-o", tmp_path / "a.npy", "--stats", tmp_path / "t.stats.json", "--threads", threads,
           env=env)
        outs.add((tmp_path / "a.npy").read_bytes())
    assert len(outs) == 1
    t = np.load(tmp_path / "t.npy")
    assert not np.signbit(t).any()
    assert json.loads((tmp_path / "t.stats.json").read_text())["min"] == [0, 0, 1]


# ---- .npy headers ------------------------------------------------------------------------------------

BROKEN_HEADERS = {
    # shape text the engine read with std::stoull ("wideann: error: stoull", no file named)
    "letters": "{'descr': '<f4', 'fortran_order': False, 'shape': (a, b), }",
    "float": "{'descr': '<f4', 'fortran_order': False, 'shape': (1e3, 2), }",
    "hex": "{'descr': '<f4', 'fortran_order': False, 'shape': (0x10, 1), }",
    "negative": "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }",
    "too-big-for-stoull": "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999, 1), }",
    # rows x cols x 4 wrapped around 2^64, so the size check passed and reading went astray
    "overflow": "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }",
    "overflow-2": "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 18446744073709551615), }",
    # no columns: a division by zero when the rows per block were counted
    "no-columns": "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 0), }",
    "no-rows": "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2), }",
    "empty-entry": "{'descr': '<f4', 'fortran_order': False, 'shape': (, ), }",
    "unclosed": "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3",
    "no-value": "{'descr': '<f4', 'fortran_order': False, 'shape'",
    "list": "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 2], }",
    "nested": "{'descr': '<f4', 'fortran_order': False, 'shape': ((2, 2)), }",
    "three-d": "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 2), }",
    "no-shape": "{'descr': '<f4', 'fortran_order': False, }",
    "fortran": "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
    "int": "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }",
}


@pytest.mark.parametrize("name", list(BROKEN_HEADERS))
def test_denormalize_broken_npy_header(tmp_path, name):
    st = stats_file(tmp_path / "s.json", 2, 0.0, 1.0, n_rows=2)
    bad = tmp_path / "bad.npy"
    bad.write_bytes(npy_bytes(BROKEN_HEADERS[name], np.zeros(4, np.float32).tobytes()))
    p = run_cli("denormalize", bad, "-o", tmp_path / "b.csv", "--stats", st)
    assert_failed_cleanly(p, leftovers=[tmp_path / "b.csv"], folder=tmp_path, names=["bad.npy"])


@pytest.mark.parametrize("data", [
    npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", version=9),  # numpy's own error
    npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", version=0),
    npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, "),    # a tokenize.TokenError traceback
    npy_bytes("{'descr': '<f4', 'fortran_order': 1, 'shape': (2,), }"),
    npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (a,), }"),  # a message with an object's address
    npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 1000), }", b"\0" * 64),  # truncated
    b"\x93NUMPY\x01\x00",
], ids=["version-9", "version-0", "unclosed", "fortran-int", "name", "truncated", "magic-only"])
def test_info_broken_npy(tmp_path, data):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(data)
    msg = assert_failed_cleanly(run_cli("info", bad), names=["bad.npy"])
    assert " at 0x" not in msg, msg


def test_info_signalling_nan_is_counted_without_a_warning(tmp_path):
    """Casting a signalling NaN to float64 made numpy print a RuntimeWarning under the description."""
    np.save(tmp_path / "s.npy", np.array([0x3F800000, 0x7F800001, 0xFF800002], dtype=np.uint32).view(np.float32))
    p = ok("info", tmp_path / "s.npy")
    assert "non-finite 2" in p.stdout and p.stderr == "", p.stderr


def test_info_odd_npy_arrays(tmp_path):
    """0-d, empty, complex, string and big-endian arrays are described, not crashed on."""
    for i, a in enumerate([np.float32(3), np.zeros((0, 4), np.float32), np.ones(3, np.complex64),
                           np.array(["ab", "c"]), np.arange(6, dtype=">f4").reshape(2, 3)]):
        np.save(tmp_path / f"a{i}.npy", a)
        p = ok("info", tmp_path / f"a{i}.npy")
        assert f"a{i}.npy: .npy table" in p.stdout and p.stderr == ""


def test_info_first_line_with_a_field_beyond_the_csv_modules_limit(tmp_path):
    # a first line of 3.6 MiB whose one field (an unclosed quote) exceeds the csv module's 131,072
    # characters gave a traceback (seed 69892); the line is now split as the engine splits it: the quote
    # runs to the end of the line, 3 columns
    p = write_text(tmp_path / "i.csv", "0.5,1,\"" + "9" * 200_000 + ",2\n1,2,3\n")
    r = ok("info", p)
    assert "CSV" in r.stdout and "3 columns" in r.stdout


def test_stats_json_with_a_huge_integer(tmp_path):
    """Python refuses to convert integers of over 4,300 digits: the message did not name the file."""
    st = write_text(tmp_path / "s.json", '{"format": "wideann-stats", "columns": [' + "9" * 5000 + "]}")
    inp = write_text(tmp_path / "in.csv", "a\n1\n")
    p = run_cli("normalize", inp, "-o", tmp_path / "t.npy", "--stats", st)
    assert_failed_cleanly(p, leftovers=[tmp_path / "t.npy"], folder=tmp_path, names=["s.json"])


# ---- the seed corpus ---------------------------------------------------------------------------------

def _corpus(suffix: str) -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.suffix == suffix)


@pytest.mark.parametrize("path", _corpus(".csv"), ids=lambda p: p.name)
def test_corpus_csv(tmp_path, path):
    """Every seed CSV either normalizes (fit mode, both dtypes, both outputs) or is refused cleanly;
    the outputs hold only finite numbers."""
    for out, dtype in (("t.npy", "float32"), ("t.npy", "float16"), ("t.csv", "float32")):
        p = run_cli("normalize", path, "-o", tmp_path / out, "--dtype", dtype)
        if p.returncode == 0:
            if out.endswith(".npy"):
                assert np.isfinite(np.load(tmp_path / out)).all()
            os.unlink(tmp_path / out)
            os.unlink(tmp_path / "t.stats.json")
        else:
            assert_failed_cleanly(p, names=[path.name])
        assert os.listdir(tmp_path) == [] and temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("path", _corpus(".npy") + _corpus(".json"), ids=lambda p: p.name)
def test_corpus_npy_and_stats(tmp_path, path):
    p = run_cli("info", path)
    if p.returncode != 0:
        assert_failed_cleanly(p, names=[path.name])
    if path.suffix == ".npy":
        st = stats_file(tmp_path / "s.json", 3, -1.0, 2.0, n_rows=2)
        p = run_cli("denormalize", path, "-o", tmp_path / "b.csv", "--stats", st)
        if p.returncode != 0:
            assert_failed_cleanly(p, leftovers=[tmp_path / "b.csv"], folder=tmp_path, names=[path.name])


# ---- found by the audit of 2026-11-27 ----------------------------------------------------------------
def test_test_data_far_outside_a_huge_range_normalizes_to_its_value(tmp_path):
    """Apply mode: (1e308 - -1e308) / 1e308 is 2, but 1e308 - -1e308 overflows a double: refused as inf."""
    ok("stats", write_text(tmp_path / "fit.csv", "a,y\n-1e308,0\n0,1\n"), "-o", tmp_path / "s.json")
    test = write_text(tmp_path / "test.csv", "a,y\n1e308,0.5\n-1e308,2\n")
    for dtype in ("float32", "float16"):
        ok("normalize", test, "-o", tmp_path / f"t_{dtype}.npy", "--stats", tmp_path / "s.json", "--dtype", dtype)
        assert np.load(tmp_path / f"t_{dtype}.npy").tolist() == [[2.0, 0.5], [0.0, 2.0]]
    st = wideann.Stats.load(tmp_path / "s.json")
    assert st.transform(np.array([[1e308, 0.5]])).tolist() == [[2.0, 0.5]]  # the Python API agrees


def test_denormalize_of_a_value_whose_product_overflows_but_not_its_result(tmp_path):
    """x = 2 of the range -1e308 .. 0 is 1e308, but 2 x 1e308 overflows on the way: refused as beyond a double."""
    st = stats_file(tmp_path / "s.json", 1, -1e308, 0.0, n_rows=2)
    ok("denormalize", write_text(tmp_path / "p.csv", "x1\n2\n0.5\n"), "-o", tmp_path / "d.csv", "--stats", st)
    assert (tmp_path / "d.csv").read_text().splitlines()[1:] == ["1e+308", "-5e+307"]
    assert wideann.Stats.load(st).inverse_transform(np.array([2.0])).tolist() == [1e308]


def test_stats_api_matches_the_engine_on_subnormal_ranges(tmp_path):
    """Stats.transform worked in halves, which are not exact for subnormals: 0.5 of 0 .. 1e-323 gave 0."""
    ok("normalize", write_text(tmp_path / "sub.csv", "a,y\n0,0\n5e-324,1\n1e-323,2\n"), "-o", tmp_path / "sub.npy")
    st = wideann.Stats.load(tmp_path / "sub.stats.json")
    values = np.array([[0.0, 0.0], [5e-324, 1.0], [1e-323, 2.0]])
    assert st.transform(values).tolist() == np.load(tmp_path / "sub.npy").tolist() == [[0, 0], [0.5, 0.5], [1, 1]]
    assert wideann.Stats(["a"], [0.0], [5e-324], 1).transform(np.array([[5e-324]])).tolist() == [[1.0]]


def test_to_sklearn_refuses_a_range_wider_than_a_double():
    """scikit-learn's scale would be 1 / inf = 0: every value of the column 0, without a word."""
    st = wideann.Stats(["a", "y"], [-1e308, 0.0], [1e308, 1.0], 3)
    with pytest.raises(ValueError, match="column 'a' has a range wider than a double"):
        st.to_sklearn()


@pytest.mark.parametrize("delimiter, text", [("-", "a-b\n-1-2\n"), ("e", "aeb\n1e5e3\n"), (".", "a.b\n1.5.2\n"),
                                             ("1", "a1b\n213\n")])
def test_a_delimiter_that_can_be_part_of_a_number_is_refused(tmp_path, delimiter, text):
    """1-2 with '-' read as -1 and 2 in two columns of a three-field line, 1e5e3 with 'e' as 100000 and 3."""
    p = run_cli("stats", write_text(tmp_path / "m.csv", text), "-o", tmp_path / "m.json", "--delimiter", delimiter)
    assert p.returncode == 2 and "can be part of a number" in p.stderr and not (tmp_path / "m.json").exists(), p.stderr
    with pytest.raises(ValueError, match="can be part of a number"):  # the Python API refuses it too
        wideann.compute_stats([tmp_path / "m.csv"], delimiter=delimiter)


@pytest.mark.parametrize("command", ["denormalize", "stats"])
def test_a_blank_line_in_a_one_column_csv_is_a_missing_value(tmp_path, command):
    """Predictions with a gap: three records in, two rows out, every later row against the wrong record."""
    st = stats_file(tmp_path / "s.json", 2, 0.0, 10.0, n_rows=2)
    pred = write_text(tmp_path / "pred.csv", "y_pred\n0.5\n\n0.7\n")
    out = tmp_path / ("out.csv" if command == "denormalize" else "out.json")
    extra = ["--stats", st] if command == "denormalize" else []
    msg = assert_failed_cleanly(run_cli(command, pred, "-o", out, *extra), leftovers=[out], folder=tmp_path,
                                names=["pred.csv"])
    assert "line 3, column 1" in msg and "empty" in msg, msg
    # a last line with its newline, blank lines at the end of the file, and blank lines between rows of two or
    # more columns are read as before
    for i, text in enumerate(["y_pred\n0.5\n0.7\n", "y_pred\n0.5\n0.7\n\n\r\n\n", "x,y\n1,2\n\n3,4\n"]):
        ok(command, write_text(tmp_path / f"fine{i}.csv", text), "-o", out, *extra)
        if command == "denormalize" and i < 2:
            assert out.read_text().splitlines()[1:] == ["5", "7"]


def test_a_number_below_the_smallest_double_reads_as_zero_as_python_reads_it(tmp_path):
    """1e-400 was refused as out of double range; its correctly rounded double is 0 (float(), numpy, pandas)."""
    tokens = ["1e-400", "-2.5e-999", "0.00001e-330", "2e-324", "3e-324", "1e-99999999999999999999999"]
    text = "a,y\n" + "".join(f"{t},{i}\n" for i, t in enumerate(tokens))
    ok("stats", write_text(tmp_path / "u.csv", text), "-o", tmp_path / "u.json")
    st = json.loads((tmp_path / "u.json").read_text())
    assert [float(v) for v in (st["min"][0], st["max"][0])] == [min(map(float, tokens)), max(map(float, tokens))]
    assert float(st["max"][0]) == 5e-324 and st["n_rows"] == len(tokens)
    for big in ("1e400", "-1e400", "12345678901234567890e300"):  # too large stays an error
        p = run_cli("stats", write_text(tmp_path / "o.csv", f"a,y\n{big},1\n"), "-o", tmp_path / "o.json")
        assert "expected a number within double range" in assert_failed_cleanly(p, names=["o.csv"])


@pytest.mark.parametrize("block", ["64", "100", "4096"])
def test_a_one_column_csv_s_trailing_blank_lines_are_dropped_wherever_the_blocks_end(tmp_path, block):
    """Blank lines at the end of a one-column file that reached a block of their own (a block boundary, a
    file the size of whole reads, more of them than a block holds) were refused as empty values."""
    env = cli_env(WIDEANN_BLOCK_SIZE=block)
    for i, tail in enumerate(["\n\n", "\n" * 70, "\n\n\r", "\r\n\r\n\r", "\n" * 5000]):
        for rows in (30, 31, 62, 63):
            path = write_text(tmp_path / f"t{i}_{rows}.csv", "y\n" + "1\n" * rows + tail)
            r = run_cli("stats", path, "-o", tmp_path / "s.json", "--threads", "2", env=env)
            assert r.returncode == 0 and json.loads((tmp_path / "s.json").read_text())["n_rows"] == rows, \
                (block, repr(tail), rows, r.stderr)
    # a blank line with rows after it is refused wherever it falls, also after a run of blank lines
    for rows in (30, 31, 62, 63):
        path = write_text(tmp_path / f"mid{rows}.csv", "y\n" + "1\n" * rows + "\n" * 70 + "2\n")
        msg = assert_failed_cleanly(run_cli("stats", path, "-o", tmp_path / "m.json", "--threads", "2", env=env),
                                    names=[path.name])
        assert f"line {rows + 2}, column 1" in msg and "empty" in msg, msg


def test_denormalize_names_an_unsupported_npy_dtype_in_one_pair_of_quotes(tmp_path):
    # the header's quoted descr was quoted again: "dtype ''>f4'' is not supported"
    st = stats_file(tmp_path / "s.json", 2, 0.0, 1.0, n_rows=2)
    np.save(tmp_path / "big.npy", np.zeros((2, 1), dtype=">f4"))
    p = run_cli("denormalize", tmp_path / "big.npy", "-o", tmp_path / "b.csv", "--stats", st)
    assert_failed_cleanly(p, leftovers=[tmp_path / "b.csv"], folder=tmp_path, names=["big.npy"])
    assert "dtype '>f4' is not supported" in p.stderr, p.stderr
