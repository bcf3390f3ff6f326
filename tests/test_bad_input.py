"""Bad input, I/O failures, usage errors and interrupts: exit code, the one-line message (file, line,
column, what was found) and that nothing is left at the output or stats path, temp files included."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

import wideann

from conftest import (WIDEANN, assert_failed_cleanly, cli_env, not_under_asan, ok, popen_cli,
                      random_numeric_csv, run_cli, temp_leftovers, wait_for, write_csv, write_text)

HEADER = "a,b,c\n"
GOOD = "1,2,3\n4,5,6\n"


def normalize_fails(tmp_path, inp, *extra, line=None, column=None, found=None, names=None, env=None):
    """Run normalize (fit mode) on ``inp`` and check it fails cleanly; returns the message."""
    out = tmp_path / "out.npy"
    p = run_cli("normalize", *(inp if isinstance(inp, (list, tuple)) else [inp]), "-o", out, *extra,
                env=env)
    first = inp[0] if isinstance(inp, (list, tuple)) else inp
    msg = assert_failed_cleanly(p, leftovers=[out, tmp_path / "out.stats.json"], folder=tmp_path,
                                names=names if names is not None else [Path(first).name],
                                line=line, column=column)
    if found is not None:
        assert found in msg, f"message should show what was found ({found!r}): {msg}"
    return msg


# ---- data errors: exact line and column ---------------------------------------------------------

@pytest.mark.parametrize("body, line, column, found", [
    (HEADER + GOOD + "7,8\n", 4, 3, None),                    # too few fields: first missing one
    (HEADER + "7,8,9,10\n" + GOOD, 2, 4, None),               # too many fields: first extra one
    (HEADER + GOOD + "7,8,9,\n", 4, 4, None),                 # trailing delimiter = a 4th field
    (HEADER + "1,abc,3\n" + GOOD, 2, 2, "abc"),               # non-numeric
    (HEADER + GOOD + "1,2,3x\n", 4, 3, "3x"),                 # number with trailing garbage
    (HEADER + GOOD + "1,2,1.2.3\n", 4, 3, "1.2.3"),
    (HEADER + GOOD + "1,,3\n", 4, 2, None),                   # empty field
    (HEADER + GOOD + ",2,3\n", 4, 1, None),                   # empty first field
    (HEADER + GOOD + "1,2,\n", 4, 3, None),                   # empty last field
    (HEADER + "nan,2,3\n" + GOOD, 2, 1, "nan"),
    (HEADER + GOOD + "1,NaN,3\n", 4, 2, "NaN"),
    (HEADER + GOOD + "1,2,inf\n", 4, 3, "inf"),
    (HEADER + GOOD + "-Infinity,2,3\n", 4, 1, "-Infinity"),
    (HEADER + GOOD + "1,1e999,3\n", 4, 2, "1e999"),           # overflows to inf
    (HEADER + GOOD + '1,"x",3\n', 4, 2, "x"),                 # quoted non-number
    (HEADER + GOOD + "1,2,0x10\n", 4, 3, "0x10"),                # hex is not a CSV number
    ("1,2,3\n4,five,6\n", 2, 2, "five"),                      # no header: line 2 is the 2nd line
])
def test_data_error_line_and_column(tmp_path, body, line, column, found):
    inp = write_text(tmp_path / "bad.csv", body)
    normalize_fails(tmp_path, inp, line=line, column=column, found=found)


def test_header_no_with_text_first_line(tmp_path):
    inp = write_text(tmp_path / "bad.csv", HEADER + GOOD)
    normalize_fails(tmp_path, inp, "--header", "no", line=1, column=1, found="a")


@pytest.mark.parametrize("first, column, found", [("1_000,2,3", 1, "1_000"), ("4,5,6x", 3, "6x"),
                                                  ("2019,2020,y", 3, "y"), ("0,2,y", 3, "y"),
                                                  ("1,2,y", 3, "y"), ("0,y,z", 2, "y"), ("0,b,y", 2, "b"),
                                                  ("x,1,2", 1, "x"), ("NA,1,2", 1, "NA"), ("0,NA,NA", 2, "NA"),
                                                  ("a,nan,y", 1, "a")])
def test_header_auto_refuses_a_first_line_of_numbers_and_a_name(tmp_path, first, column, found):
    # a data row with a typo (or an NA) would be taken for a header and dropped without a word; names among
    # numbers other than pandas' (0, 1, ... from the first column, then names: years as names, one number)
    # are a header only when --header yes says so
    inp = write_text(tmp_path / "bad.csv", first + "\n" + GOOD)
    msg = normalize_fails(tmp_path, inp, line=1, column=column, found=found)
    assert "--header yes or --header no" in msg
    normalize_fails(tmp_path, inp, "--header", "no", line=1, column=column, found=found)  # (a data row: refused)
    ok("normalize", inp, "-o", tmp_path / "h.npy", "--header", "yes")
    assert json.loads((tmp_path / "h.stats.json").read_text())["columns"] == first.split(",")
    assert np.load(tmp_path / "h.npy").shape == (2, 3)


@pytest.mark.parametrize("first", ["0,1,y", "a,,y", "a,b,c", "0,1,\"y\""])
def test_header_auto_takes_names_among_column_positions_for_a_header(tmp_path, first):
    # pandas names a frame's columns 0, 1, 2, ...: a line of names after numbers that are their positions, 2 or
    # more from the first column, is a header (empty fields say nothing)
    inp = write_text(tmp_path / "h.csv", first + "\n" + GOOD)
    ok("normalize", inp, "-o", tmp_path / "h.npy")
    assert np.load(tmp_path / "h.npy").shape == (2, 3)


def test_header_auto_takes_the_names_it_expects_and_refuses_a_typo_in_a_later_file(tmp_path):
    # a table normalized with --header yes on names of numbers and names carries them in its CSV output:
    # read back (denormalize, apply mode), its first line names the stats' columns, so it is a header
    inp = write_text(tmp_path / "years.csv", "2019,2020,y\n" + GOOD + "2,3,4\n")
    ok("normalize", inp, "-o", tmp_path / "n.csv", "--header", "yes")
    ok("denormalize", tmp_path / "n.csv", "-o", tmp_path / "back.csv", "--stats", tmp_path / "n.stats.json")
    back = (tmp_path / "back.csv").read_text().splitlines()
    assert back[0] == "2019,2020,y" and len(back) == 4  # (3 rows: the header was not taken for one)
    ok("normalize", tmp_path / "n.csv", "-o", tmp_path / "again.npy", "--stats", tmp_path / "n.stats.json")
    assert np.load(tmp_path / "again.npy").shape == (3, 3)
    # a header in another order is refused, at its line (blank lines before it counted)
    swapped = write_text(tmp_path / "swapped.csv", "\n\n\n2020,2019,y\n" + GOOD)
    normalize_fails(tmp_path, swapped, "--stats", tmp_path / "n.stats.json", line=4, column=1, found="2020",
                    names=["swapped.csv"])
    p = run_cli("denormalize", swapped, "-o", tmp_path / "d.csv", "--stats", tmp_path / "n.stats.json")
    assert p.returncode == 1 and "swapped.csv, line 4, column 1" in p.stderr, p.stderr
    # names that are all numbers: such a line may as well be data (0,1 in a table of 0s and 1s), in any order
    # of the names, or of some of them: refused, --header yes reads it back
    inp = write_text(tmp_path / "nums.csv", "2019,2020,2021\n" + GOOD + "2,3,4\n")
    ok("normalize", inp, "-o", tmp_path / "m.csv", "--header", "yes")
    stats = tmp_path / "m.stats.json"
    for first in ("2019,2020,2021", "2021,2020,2019"):
        table = write_text(tmp_path / "m2.csv", first + "\n" + GOOD)
        msg = normalize_fails(tmp_path, table, "--stats", stats, line=1, column=1, names=["m2.csv"],
                              found="numbers that are all names of the columns")
        assert "--header yes or --header no" in msg
    ok("denormalize", tmp_path / "m.csv", "-o", tmp_path / "mback.csv", "--stats", stats, "--header", "yes")
    assert (tmp_path / "mback.csv").read_text().splitlines()[0] == "2019,2020,2021"
    one = write_text(tmp_path / "one.csv", "2019\n0\n1\n")  # a name of the stats, not the target's
    p = run_cli("denormalize", one, "-o", tmp_path / "o.csv", "--stats", stats)
    assert p.returncode == 1 and "names of the columns" in p.stderr and not (tmp_path / "o.csv").exists()
    # a later input's line of numbers among the first input's names: refused by the stats pass too (which has
    # no stats to know them by), so that both passes of normalize take the same rows
    first = write_text(tmp_path / "named.csv", "0,1,y\n" + GOOD)
    later = write_text(tmp_path / "binary.csv", "0,1,1\n" + GOOD)
    for command in ("stats", "normalize"):
        p = run_cli(command, first, later, "-o", tmp_path / ("s.json" if command == "stats" else "t.npy"))
        assert p.returncode == 1 and "binary.csv, line 1, column 1" in p.stderr, p.stderr
    # a first value nan is a data row's (refused as a value, not taken for a header)
    normalize_fails(tmp_path, write_text(tmp_path / "nan.csv", "nan\n1\n2\n"), line=1, column=1, found="nan")
    # after a first file without a header, a later one's header has nothing to be checked against (its
    # columns may be in another order) and may be a data row with a typo: refused (a one-column name too)
    first = write_text(tmp_path / "first.csv", GOOD)
    for text, column, found in (("0,1,3x", 3, "3x"), ("y,b,a", 1, "y")):
        later = write_text(tmp_path / "later.csv", text + "\n" + GOOD)
        normalize_fails(tmp_path, [first, later], line=1, column=column, found=found, names=["later.csv"])
    # (in apply mode too, but for the stats' names in their order: a reordered set of them mixed the columns)
    stats = tmp_path / "fit.json"
    ok("stats", write_text(tmp_path / "fit.csv", "a,b,y\n1,100,3\n4,500,6\n"), "-o", stats)
    plain = write_text(tmp_path / "plain.csv", "1,100,3\n")
    normalize_fails(tmp_path, [plain, write_text(tmp_path / "re.csv", "b,a,y\n100,1,3\n")], "--stats", stats,
                    line=1, column=1, found="b", names=["re.csv"])
    ok("normalize", plain, write_text(tmp_path / "same.csv", "a,b,y\n4,500,6\n"), "-o", tmp_path / "s.csv",
       "--stats", stats)
    assert (tmp_path / "s.csv").read_text().splitlines()[1:] == ["0,0,0", "1,1,1"]
    first = write_text(tmp_path / "first1.csv", "1\n2\n")
    later = write_text(tmp_path / "later1.csv", "3x\n4\n")
    normalize_fails(tmp_path, [first, later], line=1, column=1, found="3x", names=["later1.csv"])
    # the first line's number counts the blank lines before it
    normalize_fails(tmp_path, write_text(tmp_path / "blank.csv", "\n\n1,2,3x\n" + GOOD), line=3, column=3,
                    found="3x")


def test_header_auto_refuses_a_first_line_of_the_column_positions(tmp_path):
    # 0,1,2,... is what pandas writes for a frame's columns left unnamed (0 for one column, 0,1 for two): taken
    # for data, it was a row of made-up values in the stats and the table (or a prediction, denormalized)
    inp = write_text(tmp_path / "p.csv", "0,1,2\n" + GOOD)
    msg = normalize_fails(tmp_path, inp, line=1, column=1, found="positions 0, 1, 2")
    assert "--header yes or --header no" in msg
    ok("normalize", inp, "-o", tmp_path / "h.npy", "--header", "yes")
    assert np.load(tmp_path / "h.npy").shape == (2, 3)
    for text in ("0,1\n1,0\n", "0\n1\n"):
        normalize_fails(tmp_path, write_text(tmp_path / "few.csv", text), line=1, column=1, found="positions",
                        names=["few.csv"])
    ok("normalize", write_text(tmp_path / "two.csv", "1,0\n0,1\n"), "-o", tmp_path / "two.npy")
    assert np.load(tmp_path / "two.npy").shape == (2, 2)
    # with stats that name the columns so it is no clearer (names, or data?): refused too
    normalize_fails(tmp_path, inp, "--stats", tmp_path / "h.stats.json", line=1, column=1,
                    found="names of the columns")


@pytest.mark.parametrize("first, column", [("0,1,NA", 3), ("NA,NA,NA", 1), ("1,N/A,3", 2), ("a,?,y", 2),
                                           (".,.,.", 1), ("1,2,-", 3)])
def test_header_auto_refuses_a_first_line_with_a_missing_value(tmp_path, first, column):
    # a data row with a value missing (0,1,NA reads as pandas' names 0,1 then a name) or a header with an odd
    # name? taken for a header, the row was lost; a one-column NA too
    inp = write_text(tmp_path / "na.csv", first + "\n" + GOOD)
    msg = normalize_fails(tmp_path, inp, line=1, column=column, found="a missing value, or a name?")
    assert "--header yes or --header no" in msg
    p = run_cli("denormalize", write_text(tmp_path / "p.csv", "NA\n0.5\n"), "-o", tmp_path / "d.csv",
                "--stats", write_text(tmp_path / "s.json", json.dumps(
                    {"format": "wideann-stats", "version": 1, "columns": ["x1", "y"], "min": [0, 0], "max": [1, 10],
                     "n_rows": 2})))
    assert p.returncode == 1 and "p.csv, line 1, column 1" in p.stderr and not (tmp_path / "d.csv").exists()


def test_denormalize_refuses_a_header_other_than_its_columns_say(tmp_path):
    # with --columns the header's names were kept as labels over other columns' values
    stats = tmp_path / "fit.json"
    ok("stats", write_text(tmp_path / "fit.csv", "a,b,y\n1,100,3\n4,500,6\n"), "-o", stats)
    ab = write_text(tmp_path / "ab.csv", "a,b\n0,0\n1,1\n")
    p = run_cli("denormalize", ab, "-o", tmp_path / "o.csv", "--stats", stats, "--columns", "b", "a")
    assert p.returncode == 1 and "ab.csv, line 1, column 1" in p.stderr and "--columns reads it as 'b'" in p.stderr
    assert not (tmp_path / "o.csv").exists()
    ok("denormalize", ab, "-o", tmp_path / "o.csv", "--stats", stats, "--columns", "a", "b")
    assert (tmp_path / "o.csv").read_text().splitlines() == ["a,b", "1,100", "4,500"]


def test_header_auto_refuses_pandas_header_over_its_index(tmp_path):
    # to_csv() writes the index first under an empty name: its row numbers were read as an input column
    inp = write_text(tmp_path / "pd.csv", ",a,b,y\n0,1,2,3\n1,4,5,6\n")
    msg = normalize_fails(tmp_path, inp, line=1, column=1, found="as pandas writes over a frame's index")
    assert "--header yes" in msg and "without the index" in msg
    ok("normalize", inp, "-o", tmp_path / "kept.npy", "--header", "yes")  # (the user's call: the column is kept)
    assert np.load(tmp_path / "kept.npy").shape == (2, 4)
    ok("normalize", write_text(tmp_path / "mid.csv", "a,,y\n" + GOOD), "-o", tmp_path / "mid.npy")  # (not first)
    p = run_cli("info", inp)
    assert p.returncode == 0 and "header: unclear (no name in column 1, as pandas writes" in p.stdout, p.stdout


def test_info_says_what_header_auto_makes_of_the_first_line(tmp_path):
    for first, says in (("a,b,y", "header: yes"), ("1,2,3", "header: no"), ("0,1,y", "header: yes"),
                        ("1,2,3x", "header: unclear (numbers and a name, '3x' in column 3"),
                        ("0,1,2", "header: unclear (the columns' positions"),
                        ("4,NA,6", "header: unclear ('NA' in column 2: a missing value, or a name?"),
                        ('0, "1", 2', "header: unclear (the columns' positions")):
        for blank in ("", "\n\n", "\r\r\n"):  # (blank lines before the first line are skipped, as the engine does)
            p = run_cli("info", write_text(tmp_path / "i.csv", blank + first + "\n" + GOOD))
            rows = 2 if says == "header: yes" else 3
            assert p.returncode == 0 and says in p.stdout and f"3 columns, {rows} rows" in p.stdout, p.stdout


def test_info_reads_the_whole_first_line_however_long(tmp_path):
    # (info reads the first MiB; a first line longer than that, or after a MiB of blank lines, is read whole)
    names = [f"column_{j}" for j in range(120_000)]  # 1.4 MB
    for blank in ("", "\n" * (1 << 20)):
        p = run_cli("info", write_text(tmp_path / "w.csv", blank + ",".join(names) + "\n" + ",".join(["1"] * 120_000)))
        assert p.returncode == 0 and "120000 columns" in p.stdout and "header: yes" in p.stdout, p.stdout + p.stderr


def test_crlf_and_bom_do_not_shift_line_or_column(tmp_path):
    inp = tmp_path / "bad.csv"
    inp.write_bytes(b"\xef\xbb\xbfa,b,c\r\n1,2,3\r\n4,5,6\r\n7,oops,9\r\n")
    normalize_fails(tmp_path, inp, line=4, column=2, found="oops")
    inp.write_bytes(b"\xef\xbb\xbf1,2,3\r\n4,5,6\r\n7,8,x\r\n")
    normalize_fails(tmp_path, inp, line=3, column=3, found="x")


def test_ragged_header_is_caught_on_first_row(tmp_path):
    inp = write_text(tmp_path / "bad.csv", "a,b\n1,2,3\n")
    normalize_fails(tmp_path, inp, line=2, column=3)


def test_error_without_final_newline_on_last_line(tmp_path):
    inp = write_text(tmp_path / "bad.csv", HEADER + GOOD + "1,2,zz")
    normalize_fails(tmp_path, inp, line=4, column=3, found="zz")


def test_error_in_second_input_names_that_file_and_its_own_line(tmp_path, rng):
    a = write_text(tmp_path / "first.csv", HEADER + GOOD * 20)
    b = write_text(tmp_path / "second.csv", HEADER + GOOD + GOOD + "1,2,bad\n")
    msg = normalize_fails(tmp_path, [a, b], line=6, column=3, names=["second.csv"], found="bad")
    assert "first.csv" not in msg


def test_inputs_with_different_headers_are_refused(tmp_path):
    a = write_text(tmp_path / "first.csv", HEADER + GOOD)
    b = write_text(tmp_path / "second.csv", "a,B,c\n" + GOOD)
    normalize_fails(tmp_path, [a, b], names=["second.csv"], line=1, column=2)


def test_column_count_differs_between_inputs(tmp_path, rng):
    a, _ = random_numeric_csv(tmp_path / "first.csv", rng, 5, 3)
    b, _ = random_numeric_csv(tmp_path / "second.csv", rng, 5, 4)
    normalize_fails(tmp_path, [a, b], names=["second.csv"])


@pytest.mark.parametrize("threads, newline", [(1, "\n"), (2, "\n"), (3, "\r\n")])
def test_deep_error_exact_line_with_small_blocks(tmp_path, rng, threads, newline):
    """Line numbers stay exact when the error is many blocks into the file, and with two errors the
    first one in the file is reported whatever the thread count."""
    vals = np.round(rng.uniform(-100, 100, (3000, 6)), 2)
    lines = ["a,b,c,d,e,y"] + [",".join(map(repr, map(float, r))) for r in vals]
    lines[2345] = lines[2345].rsplit(",", 1)[0] + ",X1"       # file line 2346, column 6
    cells = lines[2900].split(",")
    cells[1] = "X2"
    lines[2900] = ",".join(cells)                             # a later error that must not win
    inp = write_text(tmp_path / "deep.csv", newline.join(lines) + newline)
    env = cli_env(WIDEANN_BLOCK_SIZE=1024)
    msg = normalize_fails(tmp_path, inp, "--threads", str(threads), line=2346, column=6, found="X1",
                          env=env)
    assert "X2" not in msg


def test_apply_mode_error_late_in_pass_two_leaves_nothing(tmp_path, rng):
    """In apply mode the data are first read while writing: an error at the end of a multi-block file
    must remove the partly written output."""
    train, _ = random_numeric_csv(tmp_path / "train.csv", rng, 10, 5)
    ok("stats", train, "-o", tmp_path / "s.json")
    vals = np.round(rng.uniform(-100, 100, (4000, 5)), 2)
    lines = ["x1,x2,x3,x4,y"] + [",".join(map(repr, map(float, r))) for r in vals] + ["1,2,3,4,nan"]
    inp = write_text(tmp_path / "test.csv", "\n".join(lines) + "\n")
    for out in ("out.npy", "out.csv"):
        p = run_cli("normalize", inp, "-o", tmp_path / out, "--stats", tmp_path / "s.json", "--threads", "2",
                    env=cli_env(WIDEANN_BLOCK_SIZE=4096))
        assert_failed_cleanly(p, leftovers=[tmp_path / out], folder=tmp_path, names=["test.csv"],
                              line=4002, column=5)


def test_failure_keeps_a_previous_output_untouched(tmp_path):
    out = tmp_path / "out.npy"
    out.write_bytes(b"previous result")
    (tmp_path / "out.stats.json").write_text("{}")
    inp = write_text(tmp_path / "bad.csv", HEADER + "1,x,3\n")
    p = run_cli("normalize", inp, "-o", out)
    assert_failed_cleanly(p, folder=tmp_path, names=["bad.csv"], line=2, column=2)
    assert out.read_bytes() == b"previous result"
    assert (tmp_path / "out.stats.json").read_text() == "{}"


def test_stats_command_failure_leaves_no_stats(tmp_path):
    inp = write_text(tmp_path / "bad.csv", HEADER + GOOD + "1,2,nan\n")
    p = run_cli("stats", inp, "-o", tmp_path / "s.json")
    assert_failed_cleanly(p, leftovers=[tmp_path / "s.json"], folder=tmp_path, names=["bad.csv"],
                          line=4, column=3)


def test_denormalize_bad_csv(tmp_path, rng):
    train, _ = random_numeric_csv(tmp_path / "train.csv", rng, 10, 3)
    ok("stats", train, "-o", tmp_path / "s.json")
    inp = write_text(tmp_path / "pred.csv", "y_pred\n0.5\n0.25\nhuh\n")
    p = run_cli("denormalize", inp, "-o", tmp_path / "o.csv", "--stats", tmp_path / "s.json")
    assert_failed_cleanly(p, leftovers=[tmp_path / "o.csv"], folder=tmp_path, names=["pred.csv"],
                          line=4, column=1)


@pytest.mark.parametrize("kind", ["truncated", "not-npy", "3d", "strings"])
def test_denormalize_bad_npy(tmp_path, rng, kind):
    train, _ = random_numeric_csv(tmp_path / "train.csv", rng, 10, 3)
    ok("stats", train, "-o", tmp_path / "s.json")
    bad = tmp_path / "bad.npy"
    if kind == "truncated":
        np.save(bad, np.zeros((100, 3), np.float32))
        bad.write_bytes(bad.read_bytes()[:-50])
    elif kind == "not-npy":
        bad.write_bytes(b"0.1,0.2,0.3\n")
    elif kind == "3d":
        np.save(bad, np.zeros((2, 2, 3), np.float32))
    else:
        np.save(bad, np.array([["a", "b", "c"]]))
    p = run_cli("denormalize", bad, "-o", tmp_path / "o.csv", "--stats", tmp_path / "s.json")
    assert_failed_cleanly(p, leftovers=[tmp_path / "o.csv"], folder=tmp_path, names=["bad.npy"])


def test_range_that_overflows_a_double_is_not_silently_nan(tmp_path):
    """max - min = inf (a column spanning -1e308 .. 1e308): either a clean error naming the file and
    column, or correct finite output -- never NaN or inf in the table."""
    inp = write_text(tmp_path / "huge.csv", "a,b,y\n-1e308,1,2\n1e308,2,3\n0,3,4\n")
    out = tmp_path / "out.npy"
    p = run_cli("normalize", inp, "-o", out)
    if p.returncode == 0:
        got = np.load(out)
        assert np.all(np.isfinite(got)), f"non-finite values written: {got[:, 0]}"
        np.testing.assert_allclose(got[:, 0], [0, 1, 0.5], atol=1e-6)
    else:
        assert_failed_cleanly(p, leftovers=[out, tmp_path / "out.stats.json"], folder=tmp_path,
                              names=["huge.csv"])


def test_denormalize_unknown_column_names_the_stats_file(tmp_path):
    write_text(tmp_path / "s.json", json.dumps(GOOD_STATS))
    inp = write_text(tmp_path / "pred.csv", "p,q\n0.1,0.2\n")
    for cols in (["c", "nope"], ["0", "7"], ["c"]):
        p = run_cli("denormalize", inp, "-o", tmp_path / "o.csv", "--stats", tmp_path / "s.json", "--columns", *cols)
        assert_failed_cleanly(p, leftovers=[tmp_path / "o.csv"], folder=tmp_path)
    p = run_cli("denormalize", inp, "-o", tmp_path / "o.csv", "--stats", tmp_path / "s.json", "--columns", "c", "nope")
    assert_failed_cleanly(p, names=["s.json", "nope"])


def test_denormalize_refuses_a_header_that_names_another_stats_column(tmp_path, rng):
    # without --columns the stats columns are taken by position (one column: the target); a header
    # naming another stats column would be denormalized with that other column's range
    train, _ = random_numeric_csv(tmp_path / "train.csv", rng, 10, 3)  # columns x1, x2, y
    ok("stats", train, "-o", tmp_path / "s.json")
    swapped = write_text(tmp_path / "swapped.csv", "x2,x1,y\n0.5,0.25,1\n")
    p = run_cli("denormalize", swapped, "-o", tmp_path / "o.csv", "--stats", tmp_path / "s.json")
    msg = assert_failed_cleanly(p, leftovers=[tmp_path / "o.csv"], folder=tmp_path, names=["swapped.csv"],
                                line=1, column=1)
    assert "the header names 'x2', a column of the stats, but column 1 of the stats is 'x1'" in msg
    one = write_text(tmp_path / "one.csv", "x1\n0.5\n")
    p = run_cli("denormalize", one, "-o", tmp_path / "o.csv", "--stats", tmp_path / "s.json")
    msg = assert_failed_cleanly(p, leftovers=[tmp_path / "o.csv"], folder=tmp_path, names=["one.csv"],
                                line=1, column=1)
    assert "a one-column input is read as the target 'y'; give --columns 'x1' if it is that column" in msg
    # what was meant, said with --columns; names that are not stats columns (y_pred) by position
    ok("denormalize", swapped, "-o", tmp_path / "o.csv", "--stats", tmp_path / "s.json", "--columns", "x2", "x1", "y")
    ok("denormalize", one, "-o", tmp_path / "o.csv", "--stats", tmp_path / "s.json", "--columns", "x1")
    ok("denormalize", write_text(tmp_path / "p.csv", "y_pred\n0.5\n"), "-o", tmp_path / "o.csv",
       "--stats", tmp_path / "s.json")


def test_denormalize_refuses_columns_digits_that_name_another_column(tmp_path):
    """Columns named by numbers (wavelengths 350 .. 2500, sensor ids): --columns 2 is position 2, but a column is
    named 2 too; a .npy has no header to catch it, and the values came out in the units of the column at position
    2 without a word. Digits that name a column elsewhere are refused; digits that name their own position
    (pandas' 0, 1, 2 ...) are fine."""
    ok("normalize", write_text(tmp_path / "t.csv", "2,1,y\n1,10,100\n3,20,300\n"), "-o", tmp_path / "t.npy",
       "--header", "yes")
    stats = tmp_path / "t.stats.json"
    np.save(tmp_path / "p.npy", np.array([[0.5]], dtype=np.float32))
    out = tmp_path / "o.csv"
    p = run_cli("denormalize", tmp_path / "p.npy", "-o", out, "--stats", stats, "--columns", "2")
    msg = assert_failed_cleanly(p, leftovers=[out], folder=tmp_path, names=["t.stats.json"])
    assert "'2' is also the name of column 0" in msg and "give its position (0)" in msg and "give -1" in msg, msg
    for cols, header, value in ((["0"], "2", "2"), (["-1"], "y", "200"), (["1"], "1", "15")):
        ok("denormalize", tmp_path / "p.npy", "-o", out, "--stats", stats, "--columns", *cols)
        assert out.read_text().splitlines() == [header, value], cols


# ---- files that are not there or cannot be read ---------------------------------------------------

def test_empty_file(tmp_path):
    inp = write_text(tmp_path / "empty.csv", "")
    normalize_fails(tmp_path, inp)


def test_only_bom_and_newline(tmp_path):
    inp = tmp_path / "empty.csv"
    inp.write_bytes(b"\xef\xbb\xbf\n")
    normalize_fails(tmp_path, inp)


def test_header_without_rows(tmp_path):
    inp = write_text(tmp_path / "hdr.csv", "a,b,y\n")
    normalize_fails(tmp_path, inp)
    inp = write_text(tmp_path / "hdr.csv", "a,b,y")
    normalize_fails(tmp_path, inp)


def test_missing_input(tmp_path, rng):
    a, _ = random_numeric_csv(tmp_path / "there.csv", rng, 5, 3)
    normalize_fails(tmp_path, [a, tmp_path / "not-there.csv"], names=["not-there.csv"])
    p = run_cli("stats", tmp_path / "not-there.csv", "-o", tmp_path / "s.json")
    assert_failed_cleanly(p, leftovers=[tmp_path / "s.json"], folder=tmp_path, names=["not-there.csv"])


def test_input_is_a_folder(tmp_path):
    (tmp_path / "adir.csv").mkdir()
    normalize_fails(tmp_path, tmp_path / "adir.csv", names=["adir.csv"])


@pytest.mark.parametrize("command", ["apply", "fit", "stats", "denormalize", "pipe"])
def test_an_input_that_is_a_fifo_or_a_pipe_is_refused_not_waited_on(tmp_path, command):
    # normalize --stats read a FIFO's first MiB (the estimate of rows), then the engine opened it again and waited
    # for a writer that had left: for ever, and Ctrl-C could not stop it (the engine's wait swallows it); a pipe
    # (<(cat t.csv)) failed with "/dev/fd/63: read failed: Illegal seek"
    csv = write_text(tmp_path / "t.csv", HEADER + GOOD)
    ok("stats", csv, "-o", tmp_path / "s.json")
    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    out.mkdir()
    writer = subprocess.Popen(["sh", "-c", 'exec cat "$1" > "$2"', "sh", str(csv), str(fifo)])  # (as a user's)
    try:
        if command == "pipe":
            exe = " ".join(map(shlex.quote, WIDEANN))
            p = subprocess.run(["bash", "-c", f"{exe} normalize <(cat {shlex.quote(str(csv))}) -o "
                                f"{shlex.quote(str(out / 't.npy'))} --stats {shlex.quote(str(tmp_path / 's.json'))}"],
                               capture_output=True, text=True, timeout=60)
        else:
            args = {"apply": ["normalize", fifo, "-o", out / "t.npy", "--stats", tmp_path / "s.json"],
                    "fit": ["normalize", fifo, "-o", out / "t.npy"], "stats": ["stats", fifo, "-o", out / "s.json"],
                    "denormalize": ["denormalize", fifo, "-o", out / "d.csv", "--stats", tmp_path / "s.json"]}[command]
            p = subprocess.run([*WIDEANN, *map(str, args)], capture_output=True, text=True, timeout=60)
    finally:
        writer.kill()
        writer.wait()
    assert p.returncode == 1 and p.stderr.count("\n") == 1, (p.returncode, p.stderr)
    assert "is a FIFO (named pipe), expected a CSV file" in p.stderr, p.stderr
    assert os.listdir(out) == []


def test_unreadable_input(tmp_path):
    """chmod 000 stops everyone but root; as root, run the CLI without CAP_DAC_OVERRIDE (setpriv)."""
    inp = write_text(tmp_path / "secret.csv", HEADER + GOOD)
    os.chmod(inp, 0)
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv is not available")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search",
                  "--inh-caps=-dac_override,-dac_read_search", "--"]
        probe = subprocess.run(prefix + ["cat", os.fspath(inp)], capture_output=True)
        if probe.returncode == 0:
            pytest.skip("cannot drop the right to read a chmod 000 file here")
    elif os.access(inp, os.R_OK):
        pytest.skip("this user can read a chmod 000 file")
    out = tmp_path / "out.npy"
    try:
        for cmd in (["normalize", inp, "-o", out], ["stats", inp, "-o", out.with_suffix(".json")],
                    ["denormalize", inp, "-o", out.with_suffix(".csv"), "--stats", out.with_suffix(".json")]):
            p = subprocess.run(prefix + WIDEANN + [os.fspath(c) for c in cmd], capture_output=True, text=True,
                               timeout=60)
            assert_failed_cleanly(p, leftovers=[out, tmp_path / "out.stats.json", out.with_suffix(".json"),
                                                out.with_suffix(".csv")],
                                  folder=tmp_path, names=["secret.csv"])
    finally:
        os.chmod(inp, 0o644)


def test_missing_output_folder(tmp_path, rng):
    inp, _ = random_numeric_csv(tmp_path / "in.csv", rng, 5, 3)
    out = tmp_path / "no" / "such" / "out.npy"
    p = run_cli("normalize", inp, "-o", out)
    assert_failed_cleanly(p, folder=tmp_path, names=["out.npy"])
    assert not (tmp_path / "no").exists()
    for cmd in (["stats", inp, "-o", tmp_path / "no" / "s.json"],
                ["make-data", "-o", tmp_path / "no" / "d.csv", "--rows", "5", "--cols", "7"]):
        p = run_cli(*cmd)
        assert_failed_cleanly(p, folder=tmp_path, names=[Path(cmd[cmd.index("-o") + 1]).name])


def test_missing_stats_out_folder_leaves_no_table(tmp_path, rng):
    inp, _ = random_numeric_csv(tmp_path / "in.csv", rng, 5, 3)
    p = run_cli("normalize", inp, "-o", tmp_path / "out.npy", "--stats-out", tmp_path / "no" / "s.json")
    assert_failed_cleanly(p, leftovers=[tmp_path / "out.npy"], folder=tmp_path, names=["s.json"])


def test_output_path_is_a_folder(tmp_path, rng):
    inp, _ = random_numeric_csv(tmp_path / "in.csv", rng, 5, 3)
    (tmp_path / "out.npy").mkdir()
    p = run_cli("normalize", inp, "-o", tmp_path / "out.npy")
    assert_failed_cleanly(p, folder=tmp_path, names=["out.npy"], code=2)  # wrong usage, refused before any work
    assert (tmp_path / "out.npy").is_dir() and not (tmp_path / "out.stats.json").exists()


# ---- stats files --------------------------------------------------------------------------------

GOOD_STATS = {"format": "wideann-stats", "version": 1, "columns": ["a", "b", "c"], "min": [0, 0, 0],
              "max": [1, 2, 3], "n_rows": 2, "sources": []}


@pytest.mark.parametrize("content", [
    '{"format": "wideann-stats", "columns": ["a"',                  # truncated JSON
    "",                                                              # empty
    "[1, 2, 3]",                                                     # JSON, not an object
    json.dumps({**GOOD_STATS, "format": "other"}),
    json.dumps({k: v for k, v in GOOD_STATS.items() if k != "max"}),
    json.dumps({**GOOD_STATS, "min": [0, 0]}),                       # lengths disagree
    json.dumps({**GOOD_STATS, "min": [0, 5, 0]}),                    # max < min
    json.dumps({**GOOD_STATS, "max": [1, "two", 3]}),
    json.dumps({**GOOD_STATS, "max": [1, None, 3]}),
    '{"format": "wideann-stats", "version": 1, "columns": ["a","b","c"], "min": [0,0,0], '
    '"max": [1, NaN, 3], "n_rows": 2, "sources": []}',
    json.dumps({**GOOD_STATS, "version": 99}),                       # newer than this engine
    json.dumps({**GOOD_STATS, "version": "1"}),
    json.dumps({**GOOD_STATS, "version": 0}),
    json.dumps({**GOOD_STATS, "columns": "abc"}),                    # a string is not a list of names
    json.dumps({**GOOD_STATS, "min": "000"}),
    json.dumps({**GOOD_STATS, "columns": ["a", 2, "c"]}),
    json.dumps({**GOOD_STATS, "n_rows": 2.5}),
    json.dumps({**GOOD_STATS, "n_rows": -1}),
    json.dumps({**GOOD_STATS, "count": [1, 2]}),
    json.dumps({**GOOD_STATS, "min": [True, 0, 0]}),
    json.dumps({**GOOD_STATS, "sources": "x.csv"}),
    json.dumps({**GOOD_STATS, "max": [1, 10**400, 3]}),              # an integer no double holds
    "[" * 100000 + "]" * 100000,                                     # nested too deeply
], ids=["truncated", "empty", "list", "format", "no-max", "lengths", "max<min", "string", "null", "nan",
        "version-99", "version-string", "version-0", "columns-string", "min-string", "column-int",
        "n_rows-float", "n_rows-negative", "count-length", "min-bool", "sources-string", "max-huge-int",
        "deep"])
def test_corrupt_stats(tmp_path, content):
    inp = write_text(tmp_path / "in.csv", HEADER + GOOD)
    st = write_text(tmp_path / "broken.json", content)
    for cmd in (["normalize", inp, "-o", tmp_path / "out.npy", "--stats", st],
                ["denormalize", inp, "-o", tmp_path / "out.csv", "--stats", st],
                ["merge-stats", st, st, "-o", tmp_path / "m.json"]):
        p = run_cli(*cmd)
        assert_failed_cleanly(p, leftovers=[tmp_path / "out.npy", tmp_path / "out.csv", tmp_path / "m.json",
                                            tmp_path / "out.stats.json"],
                              folder=tmp_path, names=["broken.json"])


def test_stats_version_newer_than_the_engine(tmp_path):
    """A stats file from a newer wideann may mean something this one does not know: refused, saying so."""
    inp = write_text(tmp_path / "in.csv", HEADER + GOOD)
    st = write_text(tmp_path / "new.json", json.dumps({**GOOD_STATS, "version": 2}))
    for cmd in (["normalize", inp, "-o", tmp_path / "out.npy", "--stats", st],
                ["denormalize", inp, "-o", tmp_path / "out.csv", "--stats", st],
                ["merge-stats", st, st, "-o", tmp_path / "m.json"], ["info", st]):
        msg = assert_failed_cleanly(run_cli(*cmd), folder=tmp_path, names=["new.json"],
                                    leftovers=[tmp_path / "out.npy", tmp_path / "out.csv", tmp_path / "m.json"])
        assert "version 2 is newer than this wideann knows (version 1)" in msg, msg
    # version 1 and a file without a version (read as 1) are accepted
    for d in ({**GOOD_STATS, "version": 1}, {k: v for k, v in GOOD_STATS.items() if k != "version"}):
        write_text(st, json.dumps(d))
        ok("normalize", inp, "-o", tmp_path / "out.npy", "--stats", st)


def test_missing_stats(tmp_path):
    inp = write_text(tmp_path / "in.csv", HEADER + GOOD)
    p = run_cli("normalize", inp, "-o", tmp_path / "out.npy", "--stats", tmp_path / "gone.json")
    assert_failed_cleanly(p, leftovers=[tmp_path / "out.npy"], folder=tmp_path, names=["gone.json"])


def test_stats_data_mismatch(tmp_path):
    inp = write_text(tmp_path / "four.csv", "a,b,c,d\n1,2,3,4\n")
    st = write_text(tmp_path / "s.json", json.dumps(GOOD_STATS))
    p = run_cli("normalize", inp, "-o", tmp_path / "out.npy", "--stats", st)
    assert_failed_cleanly(p, leftovers=[tmp_path / "out.npy"], folder=tmp_path, names=["four.csv"])



def test_stats_header_names_differ(tmp_path):
    """Apply mode: a header naming the columns in another order is refused (line 1, the column)."""
    inp = write_text(tmp_path / "swapped.csv", "b,a,c\n1,2,3\n")
    st = write_text(tmp_path / "s.json", json.dumps(GOOD_STATS))
    p = run_cli("normalize", inp, "-o", tmp_path / "out.npy", "--stats", st)
    msg = assert_failed_cleanly(p, leftovers=[tmp_path / "out.npy"], folder=tmp_path,
                                names=["swapped.csv"], line=1, column=1)
    assert "'a'" in msg and "'b'" in msg
    # --header no reads the same file as data from line 1: the names are no longer compared
    p = run_cli("normalize", inp, "-o", tmp_path / "out.npy", "--stats", st, "--header", "no")
    assert p.returncode == 1 and "line 1, column 1" in p.stderr  # 'b' is not a number


def test_float16_overflow_is_refused_not_inf(tmp_path):
    """A test value so far outside the fitted range that it exceeds float16's 65504 is an error."""
    st = write_text(tmp_path / "s.json", json.dumps(GOOD_STATS))
    inp = write_text(tmp_path / "far.csv", HEADER + "1,2,3\n1e12,2,3\n")
    out = tmp_path / "out.npy"
    p = run_cli("normalize", inp, "-o", out, "--stats", st, "--dtype", "float16")
    msg = assert_failed_cleanly(p, leftovers=[out], folder=tmp_path, names=["far.csv"], line=3, column=1)
    assert "float16" in msg
    ok("normalize", inp, "-o", out, "--stats", st)  # float32 holds it
    assert np.isfinite(np.load(out)).all()

# ---- full disk ----------------------------------------------------------------------------------

@pytest.mark.parametrize("out_name", ["out.npy", "out.csv"])
def test_full_disk(tmp_path, rng, tiny_fs, out_name):
    inp, _ = random_numeric_csv(tmp_path / "in.csv", rng, 1500, 30)  # output ~180 KB > 64 KiB
    out = tiny_fs / out_name
    p = run_cli("normalize", inp, "-o", out)
    assert_failed_cleanly(p, names=[out_name])
    assert os.listdir(tiny_fs) == [], f"left on the full disk: {os.listdir(tiny_fs)}"


def test_too_little_space_is_refused_before_pass_two(tmp_path, rng, tiny_fs):
    """Fit mode knows the table's size after pass 1 (for .npy exactly: header + rows x columns x
    itemsize) and refuses before pass 2 writes a byte, saying how much it needs; the engine's own
    full-disk error ("write failed") would mean pass 2 had started."""
    from wideann.diskspace import human_bytes

    inp, _ = random_numeric_csv(tmp_path / "in.csv", rng, 1500, 30)
    for dtype, item in (("float32", 4), ("float16", 2)):
        out = tiny_fs / "out.npy"
        p = run_cli("normalize", inp, "-o", out, "--dtype", dtype)
        msg = assert_failed_cleanly(p, names=["out.npy"])
        assert "not enough free space for the table" in msg and "write failed" not in msg, msg
        assert f"needs {human_bytes(128 + 1500 * 30 * item)}," in msg, msg
        assert os.listdir(tiny_fs) == []
    # the exact size fits: written
    small, _ = random_numeric_csv(tmp_path / "small.csv", rng, 100, 30)
    ok("normalize", small, "-o", tiny_fs / "out.npy")
    assert os.path.getsize(tiny_fs / "out.npy") == 128 + 100 * 30 * 4


def test_a_refusal_for_space_says_what_killed_runs_left(tmp_path, rng, tiny_fs):
    """kill -9 leaves a run's hidden temporary files (nothing can remove them then); when they are what
    fills the disk, the refusal says so, with their size and a name."""
    inp, _ = random_numeric_csv(tmp_path / "in.csv", rng, 300, 30)  # 36 KB as .npy: fits the empty 64 KiB disk
    (tiny_fs / ".out.npy.Ab3xYz.tmp").write_bytes(b"\0" * 40_000)  # the engine's name, as a kill -9 left it
    msg = assert_failed_cleanly(run_cli("normalize", inp, "-o", tiny_fs / "out.npy"), names=["out.npy"])
    assert "1 temporary file(s) of interrupted runs take 39.1 KiB there (.out.npy.Ab3xYz.tmp)" in msg, msg
    (tiny_fs / ".out.npy.Ab3xYz.tmp").unlink()
    ok("normalize", inp, "-o", tiny_fs / "out.npy")


def test_the_leftovers_of_an_output_name_with_a_newline_are_seen(tmp_path, rng, tiny_fs):
    """The temporaries of ``a<newline>b.npy`` (the Python side's and the engine's), as a ``kill -9`` leaves them:
    ``TEMP_NAME``'s ``.`` stopped at the newline, so a refusal for space did not name what filled the disk, and
    ``--resume`` did not remove them."""
    from wideann import _atomic

    left = _atomic.temp_name(tiny_fs / "a\nb.npy", [])
    Path(left).write_bytes(b"\0" * 40_000)
    inp, _ = random_numeric_csv(tmp_path / "in.csv", rng, 300, 30)  # 36 KB as .npy: fits the empty 64 KiB disk
    msg = assert_failed_cleanly(run_cli("normalize", inp, "-o", tiny_fs / "out.npy"), names=["out.npy"])
    assert "1 temporary file(s) of interrupted runs take 39.1 KiB there (.a" in msg and "b.npy." in msg, msg
    # the engine's own temporary (6 random characters), from a make-data killed as it writes
    p = popen_cli("make-data", "-o", tmp_path / "a\nb.csv", "--rows", "10000000", "--cols", "20", "--threads", "1")
    try:
        assert wait_for(lambda: [n for n in os.listdir(tmp_path) if n.startswith(".a\nb.csv.")], 60), p.stderr
    finally:
        p.kill()
        p.wait()
    engine_left = [n for n in os.listdir(tmp_path) if n.startswith(".a\nb.csv.")]
    assert len(engine_left) == 1 and _atomic.TEMP_NAME.match(engine_left[0]), engine_left
    assert not _atomic.TEMP_NAME.match(".a.csv.abcdef.tmp\n")  # (a name that only ends in .tmp and a newline)


def test_a_refusal_for_space_does_not_count_kept_copies_as_space_to_free(tmp_path, rng, tiny_fs):
    """A commit keeps each existing output as a hidden hard link until its renames are done; a kill -9 in
    between leaves that link behind. Removing it frees no space (the live file holds the blocks), so the
    refusal lists it without counting its size in what removing the leftovers would free."""
    inp, _ = random_numeric_csv(tmp_path / "in.csv", rng, 300, 30)
    live = tiny_fs / "keep.bin"
    live.write_bytes(b"\1" * 20_000)
    os.link(live, tiny_fs / ".keep.bin.Ab3xYzQw.tmp")  # temp_name's 8 characters, as a kill -9 left it
    (tiny_fs / ".out.npy.Ab3xYz.tmp").write_bytes(b"\0" * 20_000)  # a killed run's own temporary
    msg = assert_failed_cleanly(run_cli("normalize", inp, "-o", tiny_fs / "out.npy"), names=["out.npy"])
    assert ("2 temporary file(s) of interrupted runs take 19.5 KiB there, not counting 1 hard link(s) "
            "to other files (.keep.bin.Ab3xYzQw.tmp, ...)") in msg, msg


def test_too_little_space_in_apply_mode_is_refused_from_an_estimate(tmp_path, rng, tiny_fs):
    """Apply mode does not know the row count before pass 2: it estimates it from the input's size
    and refuses when not even half the estimate fits."""
    inp, _ = random_numeric_csv(tmp_path / "in.csv", rng, 3000, 30)  # 360 KB as .npy, >= 180 KB as CSV
    ok("stats", inp, "-o", tmp_path / "s.json")
    for out in ("out.npy", "out.csv"):
        p = run_cli("normalize", inp, "-o", tiny_fs / out, "--stats", tmp_path / "s.json")
        msg = assert_failed_cleanly(p, names=[out])
        assert "not enough free space" in msg and "estimated at" in msg and "write failed" not in msg, msg
        assert os.listdir(tiny_fs) == []


def test_full_disk_after_the_check(tmp_path, rng, tiny_fs):
    """A CSV table's size is only bounded from below before it is written (at least two bytes a
    value): when the bound fits but the table does not, pass 2 fails on the full disk as before, with
    one line and nothing left."""
    inp, _ = random_numeric_csv(tmp_path / "in.csv", rng, 800, 30)  # >= 48 KB by the bound, ~250 KB written
    p = run_cli("normalize", inp, "-o", tiny_fs / "out.csv", "--stats-out", tmp_path / "s.json")
    msg = assert_failed_cleanly(p, leftovers=[tmp_path / "s.json"], names=["out.csv"])
    assert "write failed" in msg, msg
    assert os.listdir(tiny_fs) == [] and temp_leftovers(tmp_path) == []


def test_full_disk_stats(tmp_path, rng, tiny_fs):
    cols = 6000  # the stats file alone is larger than 64 KiB
    names = [f"column_number_{j}" for j in range(cols)]
    inp = write_csv(tmp_path / "wide.csv", [rng.integers(0, 9, cols).tolist()], header=names)
    p = run_cli("stats", inp, "-o", tiny_fs / "s.json")
    assert_failed_cleanly(p, names=["s.json"])
    assert os.listdir(tiny_fs) == []
    p = run_cli("normalize", inp, "-o", tmp_path / "t.npy", "--stats-out", tiny_fs / "s.json")
    assert_failed_cleanly(p, leftovers=[tmp_path / "t.npy"], names=["s.json"])
    assert os.listdir(tiny_fs) == [] and temp_leftovers(tmp_path) == []


def test_full_disk_denormalize_and_make_data(tmp_path, rng, tiny_fs):
    inp, _ = random_numeric_csv(tmp_path / "in.csv", rng, 3000, 4)
    ok("normalize", inp, "-o", tmp_path / "t.npy")
    p = run_cli("denormalize", tmp_path / "t.npy", "-o", tiny_fs / "back.csv", "--stats", tmp_path / "t.stats.json")
    assert_failed_cleanly(p, names=["back.csv"])
    assert os.listdir(tiny_fs) == []
    p = run_cli("make-data", "-o", tiny_fs / "d.csv", "--rows", "2000", "--cols", "10")
    assert_failed_cleanly(p, names=["d.csv"])
    assert os.listdir(tiny_fs) == []


# ---- threads that cannot be started -------------------------------------------------------------

# A limit on address space (`ulimit -v`, which binds root too, unlike RLIMIT_NPROC) that Python and the
# engine live within, and that --threads 1000 cannot: 1000 thread stacks of 8 MiB are 8 GB.
LIMITED = ["sh", "-c", 'ulimit -s 8192 2>/dev/null; ulimit -v 1000000 && exec "$@"', "sh"]


def run_limited(*args):
    return subprocess.run(LIMITED + WIDEANN + [os.fspath(a) for a in args], capture_output=True, text=True,
                          timeout=120, env=cli_env(OPENBLAS_NUM_THREADS="1"))


@not_under_asan
@pytest.mark.parametrize("job", ["stats", "fit", "apply", "denormalize", "make-data"])
def test_threads_that_cannot_be_started_fail_cleanly(tmp_path, job):
    """A thread the engine cannot start (too many --threads for the limits) was std::terminate: exit 134 and
    the temporary output left. Now: one line, exit 1, nothing left; the threads already started are stopped."""
    inp = write_text(tmp_path / "in.csv", HEADER + GOOD + "7,8,10\n")
    ok("normalize", inp, "-o", tmp_path / "t.npy", "--stats-out", tmp_path / "t.json")
    out = tmp_path / "out"
    out.mkdir()
    args = {"stats": ["stats", inp, "-o", out / "s.json"],
            "fit": ["normalize", inp, "-o", out / "o.npy"],
            "apply": ["normalize", inp, "-o", out / "o.csv", "--stats", tmp_path / "t.json"],
            "denormalize": ["denormalize", tmp_path / "t.npy", "-o", out / "b.csv", "--stats", tmp_path / "t.json"],
            "make-data": ["make-data", "-o", out / "d.csv", "--rows", "5", "--cols", "6"]}[job]
    p = run_limited(*args, "--threads", "1000")
    msg = assert_failed_cleanly(p, folder=out)
    assert msg.startswith("cannot start 1000 threads: ") and msg.endswith("; use fewer --threads"), msg
    assert os.listdir(out) == []
    ok_under_the_limit = run_limited(*args, "--threads", "2")  # the limit itself is not what fails
    assert ok_under_the_limit.returncode == 0, ok_under_the_limit.stderr


# ---- usage errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["normalize", "in.csv"],                                   # no -o
    ["normalize", "-o", "out.npy"],                            # no input
    ["normalize", "in.csv", "-o", "out.npy", "--dtype", "float64"],
    ["normalize", "in.csv", "-o", "out.npy", "--header", "maybe"],
    ["normalize", "in.csv", "-o", "out.npy", "--threads", "-1"],
    ["normalize", "in.csv", "-o", "out.npy", "--threads", "two"],
    ["normalize", "in.csv", "-o", "out.npy", "--no-such-flag"],
    ["denormalize", "in.csv", "-o", "out.csv"],                # no --stats
    ["make-data", "-o", "d.csv", "--cols", "7"],               # no --rows
    ["make-data", "-o", "d.csv", "--rows", "x", "--cols", "7"],
    ["merge-stats", "-o", "m.json"],
], ids=lambda a: " ".join(a) or "nothing")
def test_usage_errors_exit_2(tmp_path, args):
    write_text(tmp_path / "in.csv", HEADER + GOOD)
    p = run_cli(*args, cwd=tmp_path)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "usage" in p.stderr.lower()
    assert "Traceback" not in p.stderr
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]


@pytest.mark.parametrize("argv, out", [
    (("normalize", "in.csv", "-o", "out.txt"), "out.txt"),
    (("make-data", "-o", "out.npy", "--rows", "3", "--cols", "6"), "out.npy"),  # (it wrote CSV text under .npy)
    (("make-data", "-o", "out.txt", "--rows", "3", "--cols", "6"), "out.txt"),
    (("denormalize", "in.csv", "-o", "out.npy", "--stats", "s.json"), "out.npy"),
    (("predict", "run", "in.csv", "-o", "out.npy"), "out.npy"),
    # a stats file (JSON) named as a table: stats -o out.npy wrote JSON text under .npy
    (("stats", "in.csv", "-o", "out.npy"), "out.npy"),
    (("stats", "in.csv", "-o", "out.CSV"), "out.CSV"),
    (("merge-stats", "a.json", "b.json", "-o", "out.csv"), "out.csv"),
    (("normalize", "in.csv", "-o", "out.npy", "--stats-out", "out.csv"), "out.csv"),
    # "-" is standard output to most commands: stats wrote a file named "-"
    (("stats", "in.csv", "-o", "-"), "-: stats writes a stats file, not standard output"),
    (("merge-stats", "a.json", "b.json", "-o", "-"), "-: merge-stats writes"),
    (("normalize", "in.csv", "-o", "out.npy", "--stats-out", "-"), "-: --stats-out is a stats file"),
])
def test_bad_output_extension(tmp_path, argv, out):
    """An output name that says another format than the command writes is wrong usage: exit 2 before any work,
    one line naming it (make-data wrote its CSV into ``out.npy`` and exited 0)."""
    write_text(tmp_path / "in.csv", HEADER + GOOD)
    p = run_cli(*argv, cwd=tmp_path)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert len(p.stderr.strip().splitlines()) == 1 and out in p.stderr and "Traceback" not in p.stderr
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]


def test_make_data_from_python_refuses_an_output_that_is_not_csv(tmp_path):
    with pytest.raises(ValueError, match=r"out\.npy: make-data writes CSV; name the output \*\.csv"):
        wideann.make_data(tmp_path / "out.npy", rows=3, cols=6)
    assert os.listdir(tmp_path) == []


# ---- interrupts ---------------------------------------------------------------------------------

def _holds_open(p: subprocess.Popen, path) -> bool:
    """Whether process ``p`` has ``path`` open (it is reading it): a moment to interrupt it known, not guessed."""
    try:
        fds = os.listdir(f"/proc/{p.pid}/fd")
    except OSError:
        return False
    target = os.path.realpath(path)
    for fd in fds:
        try:
            if os.readlink(f"/proc/{p.pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


def _a_temporary_of(folder, name: str):
    """A predicate: the hidden temporary of output ``name`` is in ``folder`` (the command has begun writing)."""
    return lambda: any(n.startswith(f".{name}.") for n in os.listdir(folder))


# (each waits for the moment it interrupts -- the input open, a temporary made -- instead of sleeping and hoping;
# how fast a command stops is not timed here: the 60 s limits only tell a hang from a stop)
def _interrupt(tmp_path, big_csv, sig, *, when: str):
    out = tmp_path / "out.npy"
    p = popen_cli("normalize", big_csv, "-o", out, "--threads", "1")
    try:
        if when == "pass2":
            # the table's temporary file appears when pass 2 starts writing
            assert wait_for(_a_temporary_of(tmp_path, "out.npy"), 30), "pass 2 never started"
        else:  # pass 1: the input open, no temporary yet
            assert wait_for(lambda: _holds_open(p, big_csv) or p.poll() is not None, 30), "never read its input"
        assert p.poll() is None, "the run ended before it could be interrupted: make big_csv bigger"
        p.send_signal(sig)
        try:
            _, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running 60 s after {sig!r}")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if sig == signal.SIGKILL:
        assert not out.exists() and not (tmp_path / "out.stats.json").exists()
        return
    assert p.returncode == 130, (p.returncode, err)
    assert "Traceback" not in err
    assert not out.exists() and not (tmp_path / "out.stats.json").exists()
    assert temp_leftovers(tmp_path) == [], temp_leftovers(tmp_path)


@pytest.mark.parametrize("when", ["early", "pass2"])
def test_sigint(tmp_path, big_csv, when):
    _interrupt(tmp_path, big_csv, signal.SIGINT, when=when)


@pytest.mark.parametrize("when", ["early", "pass2"])
def test_sigterm(tmp_path, big_csv, when):
    _interrupt(tmp_path, big_csv, signal.SIGTERM, when=when)


def test_sighup_a_closed_terminal(tmp_path, big_csv):
    _interrupt(tmp_path, big_csv, signal.SIGHUP, when="pass2")


def test_sighup_under_nohup_is_still_ignored(tmp_path, big_csv):
    # nohup starts the command with SIGHUP ignored: it goes on after the terminal closes
    out = tmp_path / "out.npy"
    p = popen_cli("normalize", big_csv, "-o", out, "--threads", "1",
                  preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    assert wait_for(lambda: any(n.startswith(".out.npy.") for n in os.listdir(tmp_path)), 30), "pass 2 never started"
    p.send_signal(signal.SIGHUP)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0 and out.is_file(), err


def test_sigkill_leaves_nothing_at_the_output_path(tmp_path, big_csv):
    _interrupt(tmp_path, big_csv, signal.SIGKILL, when="pass2")


def test_sigint_during_stats(tmp_path, big_csv):
    p = popen_cli("stats", big_csv, "-o", tmp_path / "s.json", "--threads", "1")
    assert wait_for(lambda: _holds_open(p, big_csv) or p.poll() is not None, 30), "stats never read its input"
    assert p.poll() is None, "stats ended before it could be interrupted"
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=60)
    assert p.returncode == 130
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("job", ["make-data", "denormalize"])
def test_sigint_during_make_data_and_denormalize(tmp_path, job):
    if job == "make-data":
        args = ["make-data", "-o", tmp_path / "out.csv", "--rows", "3000000", "--cols", "30", "--threads", "1"]
        keep = []
    else:
        # 100 MB of float32 -> several hundred MB of text
        np.lib.format.open_memmap(tmp_path / "in.npy", mode="w+", dtype=np.float32, shape=(500_000, 50))[:] = 0.5
        (tmp_path / "s.json").write_text(json.dumps({**GOOD_STATS, "columns": [f"c{i}" for i in range(50)],
                                                      "min": [0] * 50, "max": [3.7] * 50}))
        args = ["denormalize", tmp_path / "in.npy", "-o", tmp_path / "out.csv", "--stats", tmp_path / "s.json",
                "--threads", "1"]
        keep = ["in.npy", "s.json"]
    p = popen_cli(*args)
    assert wait_for(lambda: _a_temporary_of(tmp_path, "out.csv")() or p.poll() is not None, 30), "never began"
    assert p.poll() is None, f"{job} ended before it could be interrupted"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert sorted(os.listdir(tmp_path)) == keep
