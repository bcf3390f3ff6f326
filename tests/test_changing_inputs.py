"""An input that changes while it is normalized: between the two passes of a fit, or while a pass reads it.

Pass 1's stats describe the file pass 1 read; a file appended to or rewritten before pass 2 is done gave
an exit code of 0 and a table that contradicts its stats (more rows than they count, values beyond
[0, 1]). It is refused: one line naming the file, exit code 1, nothing left. The engine is driven here
through its own bindings (pass 1, the change, pass 2), with its Progress handle telling where a pass is:
no stand-in for any part of it.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import threading

import numpy as np
import pytest

import wideann
from wideann._native_checked import _native
from conftest import assert_failed_cleanly, popen_cli, temp_leftovers, wait_for, write_csv


def _pass_one(paths):
    return _native.compute_stats([os.fsencode(p) for p in paths], "auto", ",", 1, _native.Progress())


def _pass_two(paths, out, r, expect):
    return _native.normalize([os.fsencode(p) for p in paths], os.fsencode(out), r["min"], r["max"], r["columns"],
                             "float32", "npy", "auto", ",", 1, False, _native.Progress(), expect=expect)


def _append_a_row(p):
    with open(p, "a") as f:
        f.write("100,200,300\n")


def _rewrite_in_place(p):  # the same size, a value far beyond the fitted max; mtime as a later write sets it
    st = os.stat(p)
    with open(p, "r+b") as f:
        f.seek(-3, os.SEEK_END)
        f.write(b"99\n")  # "1,2,3\n" ... "7,8,10\n" -> "7,8,99\n"
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def _touch(p):
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def _replace_by_a_copy(p):  # same bytes, same times (cp -p), another file
    shutil.copy2(p, f"{p}.new")
    os.replace(f"{p}.new", p)


@pytest.mark.parametrize("change, says", [
    (_append_a_row, "when pass 1 read it, "),
    (_rewrite_in_place, "modified, same size"),
    (_touch, "modified, same size"),
    (_replace_by_a_copy, "replaced by another file"),
], ids=["appended", "rewritten", "touched", "replaced"])
def test_an_input_changed_between_the_passes_is_refused(tmp_path, change, says):
    a = write_csv(tmp_path / "a.csv", [[1, 2, 3], [4, 5, 6]], header=["a", "b", "y"])
    b = write_csv(tmp_path / "b.csv", [[1, 2, 3], [7, 8, 10]], header=["a", "b", "y"])
    out = tmp_path / "out"
    out.mkdir()
    r = _pass_one([a, b])
    assert [seen[4] for seen in r["inputs"]] == [2, 2]
    assert _pass_two([a, b], out / "same.npy", r, r["inputs"]) == 4  # unchanged: the same run goes through
    os.unlink(out / "same.npy")
    change(b)
    with pytest.raises(wideann.DataError) as e:
        _pass_two([a, b], out / "t.npy", r, r["inputs"])
    msg = str(e.value)
    assert msg.startswith(f"{b}: changed while it was being normalized (") and says in msg, msg
    assert "\n" not in msg and os.listdir(out) == []


def test_pass_two_refuses_other_rows_than_pass_one_read(tmp_path):
    """The last guard, for a change the file's size and time do not show (within a tick of its clock)."""
    a = write_csv(tmp_path / "a.csv", [[1, 2, 3], [4, 5, 6], [7, 8, 9]], header=["a", "b", "y"])
    r = _pass_one([a])
    expect = [(*r["inputs"][0][:4], 4)]
    with pytest.raises(wideann.DataError, match=r"a\.csv: changed while it was being normalized \(pass 1 read 4 "
                                                r"rows, pass 2 found 3\)"):
        _pass_two([a], tmp_path / "t.npy", r, expect)
    assert temp_leftovers(tmp_path) == [] and not (tmp_path / "t.npy").exists()


def test_an_input_rewritten_while_pass_two_reads_is_refused(tmp_path):
    """b.csv rewritten in place (the same size, the same rows, a value beyond the fitted max) while pass 2 is
    still in a.csv: only the check at b.csv's end sees it (without it: exit code 0 and a value of 9 in a table
    fitted to [0, 1]). Pass 2 writes into a pipe that this test drains, so it waits at a.csv's output (one
    thread: b.csv is read after a.csv's block is written) until b.csv has changed."""
    a = write_csv(tmp_path / "a.csv", [[i % 7, i % 11, i % 13] for i in range(20000)], header=["a", "b", "y"])
    b = write_csv(tmp_path / "b.csv", [[1, 2, 3], [7, 8, 10]], header=["a", "b", "y"])
    r = _pass_one([a, b])
    out = tmp_path / "out"
    out.mkdir()
    fifo = out / ".t.csv.tmp"
    os.mkfifo(fifo)
    box: dict = {}

    def run():
        try:
            box["rows"] = _native.normalize([os.fsencode(a), os.fsencode(b)], os.fsencode(out / "t.csv"), r["min"],
                                            r["max"], r["columns"], "float32", "csv", "auto", ",", 1, False,
                                            _native.Progress(), temporary=os.fsencode(fifo), expect=r["inputs"])
        except wideann.DataError as e:
            box["error"] = str(e)

    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # (opened first: a failure before the engine opens it
    t = threading.Thread(target=run)                  # ends the wait below, not the test)
    t.start()
    assert select.select([fd], [], [], 20)[0], box
    os.set_blocking(fd, True)
    with open(fd, "rb") as pipe:
        head = pipe.read(1000)  # the engine is writing a.csv's rows (more than a pipe holds): b.csv is not read
        assert head.startswith(b"a,b,y\n")
        _rewrite_in_place(b)
        rest = pipe.read()
    t.join(60)
    assert not t.is_alive()
    assert box.get("error") == f"{b}: changed while it was being read (modified, same size); run again once it " \
                               "no longer changes", (box, rest[-40:])
    assert os.listdir(out) == []


def test_an_input_appended_to_between_the_passes_of_the_command_is_refused(tmp_path):
    """The reviewer's case, on the command line: one input given many times, a row far beyond its range
    appended once pass 1 is done (its stats are being written). It gave exit code 0, a table of more rows than
    its stats count and values of 1.5; now exit code 1 and nothing left, or (had pass 2 already read all of it)
    a table its stats describe."""
    rng = np.random.default_rng(3)
    data = rng.uniform(-5, 5, (20000, 6))
    src = write_csv(tmp_path / "x.csv", data.round(4).tolist(), header=[f"c{i}" for i in range(5)] + ["y"])
    out = tmp_path / "out"
    out.mkdir()
    p = popen_cli("normalize", *[src] * 30, "-o", out / "t.npy", "--threads", "2")
    try:
        seen = wait_for(lambda: any(".t.stats.json." in n for n in os.listdir(out)) or p.poll() is not None, 60,
                        interval=0.001)
        with open(src, "a") as f:
            f.write(",".join(["12.5"] * 6) + "\n")  # beyond every column's max by more than half its range
        _, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert seen
    done = subprocess.CompletedProcess(p.args, p.returncode, "", stderr)
    if p.returncode == 0:  # too late to matter: the table is the one its stats describe
        t = np.load(out / "t.npy", mmap_mode="r")
        with open(out / "t.stats.json") as f:
            assert t.shape[0] == json.load(f)["n_rows"] == 600000
        assert float(t.max()) <= 1.0
    else:
        msg = assert_failed_cleanly(done, folder=out, names=[os.fspath(src)])
        assert "changed while it was being" in msg, msg
        assert os.listdir(out) == []


def _insert_a_line_at_the_top(p):  # every line after it moves down one: a line counted now would be one too many
    st = os.stat(p)
    lines = open(p).read().splitlines(True)
    with open(p, "w") as f:
        f.writelines([lines[0], "0,0,0\n", *lines[1:]])
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


@pytest.mark.parametrize("change", [None, _append_a_row, _rewrite_in_place, _insert_a_line_at_the_top, _touch,
                                    _replace_by_a_copy])
def test_the_line_of_a_data_error_is_named_only_in_the_file_that_was_read(tmp_path, change):
    # The engine counts a data error's line after the pass has stopped, in the file it read (its lines are known
    # there only by their byte offset). A file changed since it was read may have other lines before that
    # offset: a line named from it could be wrong (one too many, after the insertion above), so none is named
    # and the message says why. Driven through the binding of the engine's function that words the error,
    # with the file's identity as the engine records it when it opens an input (device, inode, size, mtime).
    p = tmp_path / "bad.csv"
    p.write_text("a,b,y\n" + "".join(f"{i},{i + 1},{i + 2}\n" for i in range(5)) + "6,x,8\n9,10,11\n")
    st = os.stat(p)
    read_as = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    offset = len("a,b,y\n" + "".join(f"{i},{i + 1},{i + 2}\n" for i in range(5)))
    if change is not None:
        change(p)
    said = _native.describe_row_error(os.fsencode(p), offset, 2, "expected a number, found 'x'", read_as)
    if change is None:
        assert said == f"{p}, line 7, column 2: expected a number, found 'x'"
    else:
        assert said == (f"{p}, column 2: expected a number, found 'x' (the file changed while it was being read, so "
                        "its line is unknown)")


def test_a_data_error_in_an_unchanged_input_names_its_line(tmp_path):
    # (the engine's own path: the error found by a pass, its line counted in the file the pass opened)
    p = tmp_path / "bad.csv"
    p.write_text("a,b,y\n" + "".join(f"{i},{i + 1},{i + 2}\n" for i in range(5)) + "6,x,8\n9,10,11\n")
    with pytest.raises(wideann.DataError, match=r"^.*bad\.csv, line 7, column 2: expected a number, found 'x'$"):
        _pass_one([p])
