"""The command line as a user meets it: entry points, help, output streams, the whole flow."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import wideann
from conftest import WIDEANN, load_stats_json, ok, read_csv_table, stderr_on_a_terminal, temp_leftovers

COMMANDS = ("stats", "normalize", "denormalize", "merge-stats", "make-data", "info")


def test_version_and_help():
    p = ok("--version")
    assert wideann.__version__ in p.stdout + p.stderr
    out = ok("--help").stdout
    for c in COMMANDS:
        assert c in out, f"--help does not list {c}"
    for c in COMMANDS:
        assert "usage" in ok(c, "--help").stdout.lower()


def test_console_script_matches_python_m(tmp_path):
    exe = shutil.which("wideann") or os.path.join(os.path.dirname(sys.executable), "wideann")
    assert os.path.exists(exe), "the console script 'wideann' is not installed"
    a = subprocess.run([exe, "make-data", "-o", tmp_path / "a.csv", "--rows", "20", "--cols", "6", "--seed", "5"],
                       capture_output=True, text=True)
    assert a.returncode == 0, a.stderr
    ok("make-data", "-o", tmp_path / "b.csv", "--rows", "20", "--cols", "6", "--seed", "5")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


# A sitecustomize (on PYTHONPATH: imported as the interpreter starts, before the program) whose import hook
# holds the import of the engine's Python module, deep in the import of the command line, until the test has
# sent its Ctrl-C: the moment a real Ctrl-C can only hit by chance (the import takes tens of milliseconds).
SLOW_IMPORT = """import sys, time
class HoldTheEngine:
    def find_spec(self, name, path=None, target=None):
        if name == "wideann.engine":
            sys.stdout.write("importing\\n")
            sys.stdout.flush()
            time.sleep(60)
sys.meta_path.insert(0, HoldTheEngine())
"""


@pytest.mark.parametrize("program", ["console-script", "python-m"])
def test_ctrl_c_while_the_program_is_imported_is_one_line(tmp_path, program):
    # it ended in a KeyboardInterrupt traceback: the console script imported the package's modules before any
    # code of the program ran (now wideann._entry runs first, and `import wideann` imports nothing of its own)
    import signal

    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(SLOW_IMPORT)
    exe = shutil.which("wideann") or os.path.join(os.path.dirname(sys.executable), "wideann")
    cmd = [exe] if program == "console-script" else WIDEANN
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "hook"), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.Popen([*cmd, "make-data", "-o", tmp_path / "a.csv", "--rows", "20", "--cols", "6"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout.readline() == "importing\n"
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert (p.returncode, err) == (130, "wideann: interrupted; no output written\n")
    assert not (tmp_path / "a.csv").exists()


def test_whole_flow_make_data_normalize_denormalize(tmp_path):
    """The README's flow: make-data -> normalize -> (predictions) -> denormalize."""
    ok("make-data", "-o", tmp_path / "train.csv", "--rows", "500", "--cols", "12", "--seed", "1")
    ok("make-data", "-o", tmp_path / "test.csv", "--rows", "100", "--cols", "12", "--seed", "2")
    p = ok("normalize", tmp_path / "train.csv", "-o", tmp_path / "train.npy")
    assert p.stdout == "", "normalize prints its summary on stderr, stdout stays clean"
    assert "\r" not in p.stderr, "no progress bar when stderr is not a terminal"
    ok("normalize", tmp_path / "test.csv", "-o", tmp_path / "test.npy", "--stats", tmp_path / "train.stats.json")
    test = np.load(tmp_path / "test.npy", mmap_mode="r")
    assert test.shape == (100, 12)
    # "predictions": the normalized target itself, written as a one-column CSV with a header
    pred = tmp_path / "predictions.csv"
    pred.write_text("y_pred\n" + "\n".join(repr(float(v)) for v in test[:, -1]) + "\n")
    ok("denormalize", pred, "-o", tmp_path / "pred_units.csv", "--stats", tmp_path / "train.stats.json")
    _, back = read_csv_table(tmp_path / "pred_units.csv")
    _, raw = read_csv_table(tmp_path / "test.csv")
    st = load_stats_json(tmp_path / "train.stats.json")
    tol = 2.5e-7 * (st["max"][-1] - st["min"][-1]) + 1e-12
    assert np.all(np.abs(back[:, 0] - raw[:, -1]) <= tol)
    assert temp_leftovers(tmp_path) == []


def test_quiet_and_threads_flags_accepted(tmp_path):
    ok("make-data", "-o", tmp_path / "d.csv", "--rows", "30", "--cols", "6", "-q")
    ok("normalize", tmp_path / "d.csv", "-o", tmp_path / "d.npy", "--quiet", "--threads", "1")
    ok("make-data", "-o", tmp_path / "e.csv", "--rows", "30", "--cols", "6", "--seed", "2", "-q")
    ok("stats", tmp_path / "e.csv", "-o", tmp_path / "s.json", "-q", "--threads", "2")
    ok("merge-stats", tmp_path / "s.json", tmp_path / "d.stats.json", "-o", tmp_path / "m.json")
    assert load_stats_json(tmp_path / "m.json")["n_rows"] == 60


def test_relative_paths_and_cwd(tmp_path):
    ok("make-data", "-o", "d.csv", "--rows", "10", "--cols", "6", cwd=tmp_path)
    ok("normalize", "d.csv", "-o", "d.npy", cwd=tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["d.csv", "d.npy", "d.stats.json"]


def test_info_on_stats_lists_columns(tmp_path):
    ok("make-data", "-o", tmp_path / "d.csv", "--rows", "25", "--cols", "7")
    ok("stats", tmp_path / "d.csv", "-o", tmp_path / "s.json")
    out = ok("info", tmp_path / "s.json").stdout
    assert "25" in out and "7" in out
    out = ok("info", tmp_path / "d.csv").stdout
    assert "7" in out


def test_info_on_stats_shows_the_targets_min_and_max_as_the_file_holds_them(tmp_path):
    """Six significant digits showed a target of 1e9 .. 1e9 + 49.5 as "min 1e+09, max 1e+09" beside "constant
    columns: 0": a range that looked like none."""
    (tmp_path / "d.csv").write_text("x,y\n1,1000000000.25\n2,1000000049.75\n3,1000000012.5\n")
    ok("stats", tmp_path / "d.csv", "-o", tmp_path / "s.json")
    out = ok("info", tmp_path / "s.json").stdout
    assert "target 'y': min 1000000000.25, max 1000000049.75" in out, out


def _stderr_on_a_terminal(args, cwd):
    """Run the CLI with stderr on a pseudo-terminal (100 x 24) and return what it wrote there."""
    code, text = stderr_on_a_terminal(WIDEANN + list(args), cwd, columns=100, timeout=60)
    assert code == 0
    return text


def test_progress_bar_on_a_terminal_and_quiet(tmp_path):
    rows = "\n".join(",".join(f"{(i * 7 + j) % 1000 / 7:.4f}" for j in range(20)) for i in range(2000)) + "\n"
    with open(tmp_path / "in.csv", "w") as f:
        f.write(",".join(f"c{j}" for j in range(20)) + "\n")
        for _ in range(60):  # ~12 MB
            f.write(rows)
    err = _stderr_on_a_terminal(["normalize", "in.csv", "-o", "t.npy"], tmp_path)
    assert "B/s" in err and "\r" in err, f"no progress bar (bytes, rate) on a terminal: {err[-300:]!r}"
    err = _stderr_on_a_terminal(["normalize", "in.csv", "-o", "t.npy", "--quiet"], tmp_path)
    assert "B/s" not in err and "%" not in err, f"--quiet still shows progress: {err!r}"
    assert temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_outputs_respect_the_umask(tmp_path, umask, mode):
    """Temporary-then-rename must not leave outputs with mkstemp's private 0600 mode."""
    steps = [["make-data", "-o", "d.csv", "--rows", "20", "--cols", "6"],
             ["normalize", "d.csv", "-o", "t.npy"],
             ["normalize", "d.csv", "-o", "t2.csv", "--stats", "t.stats.json"],
             ["stats", "d.csv", "-o", "s.json"],
             ["stats", "t2.csv", "-o", "s2.json"],
             ["merge-stats", "s.json", "s2.json", "-o", "m.json"],
             ["denormalize", "t.npy", "-o", "b.csv", "--stats", "t.stats.json"]]
    for args in steps:
        p = subprocess.run(WIDEANN + args, cwd=tmp_path, capture_output=True, text=True, umask=umask)
        assert p.returncode == 0, p.stderr
    for name in ("d.csv", "t.npy", "t.stats.json", "t2.csv", "s.json", "m.json", "b.csv"):
        got = os.stat(tmp_path / name).st_mode & 0o777
        assert got == mode, f"{name}: mode {got:o}, expected {mode:o} under umask {umask:03o}"


def test_no_command_writes_over_one_of_its_inputs(tmp_path):
    """An output that is one of the command's inputs (by any name: ./x, a link) would destroy it: refused
    in one line, exit 2, every file as it was."""
    t = tmp_path / "t.csv"
    wideann.make_data(t, rows=40, cols=7, seed=1)
    ok("normalize", t, "-o", tmp_path / "n.csv")
    ok("normalize", t, "-o", tmp_path / "t.npy")
    (tmp_path / "link.csv").symlink_to(t)
    cases = [
        ("stats", t, "-o", t),
        ("stats", t, "-o", tmp_path / "link.csv"),
        ("normalize", t, "-o", tmp_path / "t.npy", "--stats-out", t),
        ("normalize", tmp_path / "n.csv", "-o", tmp_path / "." / "n.csv", "--stats", tmp_path / "t.stats.json"),
        ("normalize", t, "-o", tmp_path / "x.npy", "--stats", tmp_path / "t.stats.json", "--stats-out",
         tmp_path / "t.stats.json"),
        ("denormalize", tmp_path / "n.csv", "-o", tmp_path / "n.csv", "--stats", tmp_path / "t.stats.json"),
        ("denormalize", tmp_path / "n.csv", "-o", tmp_path / "t.stats.json", "--stats", tmp_path / "t.stats.json"),
        ("merge-stats", tmp_path / "t.stats.json", tmp_path / "n.stats.json", "-o", tmp_path / "t.stats.json"),
    ]
    files = sorted(tmp_path.iterdir())
    before = {f: f.read_bytes() for f in files}
    for args in cases:
        p = subprocess.run([*WIDEANN, *map(str, args)], capture_output=True, text=True)
        assert p.returncode == 2 and p.stderr.count("\n") == 1, (args, p.stderr)
        assert p.stderr.startswith("wideann: error: ") and "is also an input of this command" in p.stderr
    assert sorted(tmp_path.iterdir()) == files and all(f.read_bytes() == b for f, b in before.items())


def test_merge_stats_refuses_the_same_stats_twice(tmp_path):
    """Rows are added up: a stats file given twice, by any name, or a copy of it, would count twice."""
    t, u = tmp_path / "t.csv", tmp_path / "u.csv"
    wideann.make_data(t, rows=40, cols=7, seed=1)
    wideann.make_data(u, rows=30, cols=7, seed=2)
    ok("stats", t, "-o", tmp_path / "t.json")
    ok("stats", u, "-o", tmp_path / "u.json")
    shutil.copy(tmp_path / "t.json", tmp_path / "copy.json")
    for args, says in [((tmp_path / "t.json", tmp_path / "u.json", tmp_path / "." / "t.json"), "given twice"),
                       ((tmp_path / "t.json", tmp_path / "copy.json"), "the same stats as")]:
        p = subprocess.run([*WIDEANN, "merge-stats", *map(str, args), "-o", str(tmp_path / "m.json")],
                           capture_output=True, text=True)
        assert p.returncode == 1 and p.stderr.count("\n") == 1 and says in p.stderr, p.stderr
        assert not (tmp_path / "m.json").exists()
    ok("merge-stats", tmp_path / "t.json", tmp_path / "u.json", "-o", tmp_path / "m.json")
    assert load_stats_json(tmp_path / "m.json")["n_rows"] == 70


def test_info_refuses_what_is_no_csv_npy_or_stats_file(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "blank.csv").write_bytes(b"\n \n")
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04\x00\x00binary")
    for name, says in (("empty.csv", "the file is empty"), ("blank.csv", "blank lines only"),
                       ("model.pt", "not a CSV (binary data)")):
        p = subprocess.run([*WIDEANN, "info", str(tmp_path / name)], capture_output=True, text=True)
        assert p.returncode == 1 and p.stdout == "" and p.stderr.count("\n") == 1 and says in p.stderr, p.stderr


def test_merge_stats_refuses_a_count_that_contradicts_n_rows(tmp_path):
    """Every column counts every row: a file whose counts say otherwise (damaged or edited) was summed as it was."""
    import json

    t = tmp_path / "t.csv"
    wideann.make_data(t, rows=2, cols=6, seed=1)
    ok("stats", t, "-o", tmp_path / "a.json")
    d = load_stats_json(tmp_path / "a.json")
    d["count"] = [5] * len(d["columns"])
    (tmp_path / "bad.json").write_text(json.dumps(d))
    p = subprocess.run([*WIDEANN, "merge-stats", str(tmp_path / "a.json"), str(tmp_path / "bad.json"), "-o",
                        str(tmp_path / "m.json")], capture_output=True, text=True)
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert f"{tmp_path / 'bad.json'}: \"count\" of column \"x1\" is 5, but \"n_rows\" is 2" in p.stderr
    assert not (tmp_path / "m.json").exists()


def test_merge_stats_warns_of_identical_stats_that_name_no_sources(tmp_path):
    """Copies are recognized by their sources; two files without any that hold the same numbers may be a copy
    or two tiny shards that agree: merged, with a line on stderr rather than silently."""
    import json

    t = tmp_path / "t.csv"
    wideann.make_data(t, rows=4, cols=6, seed=1)
    ok("stats", t, "-o", tmp_path / "a.json")
    d = load_stats_json(tmp_path / "a.json")
    del d["sources"]
    for name in ("x.json", "y.json"):
        (tmp_path / name).write_text(json.dumps(d))
    p = ok("merge-stats", tmp_path / "x.json", tmp_path / "y.json", "-o", tmp_path / "m.json")
    assert "warning" in p.stderr and "neither names its sources" in p.stderr, p.stderr
    assert load_stats_json(tmp_path / "m.json")["n_rows"] == 8


def test_info_says_what_a_path_that_is_no_file_is(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    for path, says in (("/dev/null", "is a device, not a file"), (tmp_path / "fifo", "is a FIFO (named pipe)")):
        p = subprocess.run([*WIDEANN, "info", str(path)], capture_output=True, text=True, timeout=30)
        assert p.returncode == 1 and p.stderr.count("\n") == 1 and f"{path}: {says}" in p.stderr, p.stderr


@pytest.mark.parametrize("content, lone", [
    (b"a,b\rc,d\r", True), (b"a,b\r\nc,d\r\n", False), (b"a,b\nc\r", False), (b"\xef\xbb\xbf\r\n\r\na,b\rc", True),
    (b"a,b\r", False), (b"", False), (b"\r\n" * 40000 + b"a,b\rx", True), (b"x" * 70000 + b"\r\n1", False),
    (b"x" * 65535 + b"\r\n1", False), (b"x" * 65535 + b"\r1", True), (b"\n" * 65536 + b"\r\na\rb", True)])
def test_a_first_line_ending_in_a_lone_cr_is_found_across_the_pieces_read(tmp_path, content, lone):
    # (the first version grew one buffer by 64 KiB pieces and searched all of it at each: a 200 MB file of
    # zeros that the engine refused in 0.5 s was still being looked at after 100 s, with 0.9 GB of memory)
    from wideann.engine import _first_line_ends_in_a_lone_cr
    (tmp_path / "t.csv").write_bytes(content)
    assert _first_line_ends_in_a_lone_cr(str(tmp_path / "t.csv")) == lone


def test_cr_only_line_ends_are_said_to_be_unsupported(tmp_path):
    """An old Mac file reads as one line: "has a header but no data rows", or a number that is not one."""
    (tmp_path / "h.csv").write_bytes(b"a,b,y\r1,2,3\r4,5,6\r")
    (tmp_path / "n.csv").write_bytes(b"1,2,3\r4,5,6\r")
    for args in (("normalize", tmp_path / "h.csv", "-o", tmp_path / "o.npy"),
                 ("stats", tmp_path / "n.csv", "-o", tmp_path / "o.json"),
                 ("info", tmp_path / "h.csv")):
        p = subprocess.run([*WIDEANN, *map(str, args)], capture_output=True, text=True, timeout=30)
        assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
        assert f"{args[1]}: " in p.stderr and "CR alone" in p.stderr, p.stderr
    assert sorted(os.listdir(tmp_path)) == ["h.csv", "n.csv"]
    (tmp_path / "ok.csv").write_bytes(b"a,b,y\r\n1,2,3\r\n4,5,6\r\n")  # CRLF: fine
    ok("normalize", tmp_path / "ok.csv", "-o", tmp_path / "o.npy")


def test_merge_stats_warns_of_a_source_that_two_stats_files_name(tmp_path):
    # overlapping shard lists (p1+p2, p2+p3) were merged without a word: 4 shards' rows for 3
    for i in (1, 2, 3):
        wideann.make_data(tmp_path / f"p{i}.csv", rows=50, cols=6, seed=i)
    ok("stats", tmp_path / "p1.csv", tmp_path / "p2.csv", "-o", tmp_path / "a.json")
    ok("stats", tmp_path / "p2.csv", tmp_path / "p3.csv", "-o", tmp_path / "b.json")
    p = ok("merge-stats", tmp_path / "a.json", tmp_path / "b.json", "-o", tmp_path / "m.json")
    assert f"both name the source {tmp_path / 'p2.csv'}" in p.stderr and "rows count twice" in p.stderr, p.stderr
    ok("stats", tmp_path / "p3.csv", "-o", tmp_path / "c.json")
    p = ok("merge-stats", tmp_path / "a.json", tmp_path / "c.json", "-o", tmp_path / "m2.json")
    assert "warning" not in p.stderr, p.stderr


def test_import_wideann_imports_its_names_on_first_use():
    """`import wideann` imports none of its modules (the program handles Ctrl-C before they load); each public
    name is there on first use, and dir() lists the public names, not the ones the lazy import needs."""
    code = ("import sys, wideann; print('wideann.engine' in sys.modules, 'numpy' in sys.modules); "
            "print(sorted(n for n in dir(wideann) if not n.startswith('_'))); "
            "from wideann import Stats, normalize; import wideann.data as d; "
            "print(Stats.__name__, normalize.__module__, wideann.data is d)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "False False", "['DataError', 'Stats', 'compute_stats', 'data', 'denormalize', 'make_data', 'normalize']",
        "Stats wideann.engine True"], p.stdout
