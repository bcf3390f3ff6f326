"""What is at an output path before a run: a folder, a device or a FIFO there is refused before any work
(wrong usage, exit code 2, one line naming it), and a file there is never lost when the run fails at its
commit (it is kept under a hidden name until the new output is in place, and given back on failure)."""
from __future__ import annotations

import fcntl
import os
import stat
import subprocess

import pytest

import wideann
from conftest import WIDEANN, assert_failed_cleanly, cli_env, ok, run_cli, temp_leftovers, wait_for


def _snapshot(folder):
    return {p.name: (p.read_bytes() if p.is_file() else "folder") for p in sorted(folder.iterdir())}


def test_a_normalize_whose_stats_output_is_a_folder_keeps_the_earlier_table(tmp_path):
    """The reviewer's case: the table was renamed over the earlier run's, the stats rename failed, and the new
    table was unlinked: the earlier table gone, its stats left alone, the error naming the hidden temporary
    (and all of it after both passes)."""
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,3\n4,5,6\n7,8,10\n")
    (tmp_path / "u.csv").write_text("a,b,y\n0,0,0\n9,9,99\n")
    ok("normalize", tmp_path / "u.csv", "-o", tmp_path / "prev.npy", "-q")
    (tmp_path / "so.json").mkdir()
    before = _snapshot(tmp_path)
    p = subprocess.run([*WIDEANN, "normalize", str(tmp_path / "t.csv"), "-o", str(tmp_path / "prev.npy"),
                        "--stats-out", str(tmp_path / "so.json")], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert f"{tmp_path / 'so.json'}: is a folder" in p.stderr and ".tmp" not in p.stderr
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("where", ["folder", "fifo", "/dev/full"])
def test_every_output_that_is_not_a_file_is_refused_before_any_work(tmp_path, where):
    t = tmp_path / "t.csv"
    wideann.make_data(t, rows=20, cols=6, seed=1)
    ok("normalize", t, "-o", tmp_path / "n.csv", "-q")
    if where == "/dev/full":
        out = lambda name: where  # noqa: E731
    else:
        def out(name):
            path = tmp_path / "bad" / name
            path.parent.mkdir(exist_ok=True)
            path.mkdir() if where == "folder" else os.mkfifo(path)
            return path
    cases = [
        ("normalize", t, "-o", out("o.npy")),
        ("normalize", t, "-o", tmp_path / "bad" / "d.npy", "--stats-out", out("d.json")),
        ("stats", t, "-o", out("s.json")),
        ("merge-stats", tmp_path / "n.stats.json", "-o", out("m.json")),
        ("make-data", "-o", out("m.csv"), "--rows", "3", "--cols", "6"),
        ("denormalize", tmp_path / "n.csv", "-o", out("d.csv"), "--stats", tmp_path / "n.stats.json"),
        ("predict", tmp_path / "no-run", t, "-o", out("p.csv")),
    ]
    if where != "/dev/full":  # the stats file a fitting normalize writes beside its table
        out("b.stats.json")
        cases.append(("normalize", t, "-o", tmp_path / "bad" / "b.npy"))
    before = _snapshot(tmp_path)
    for args in cases:
        p = subprocess.run([*WIDEANN, *map(str, args)], capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and p.stderr.count("\n") == 1, (args, p.stderr)
        assert "not a file" in p.stderr and ".tmp" not in p.stderr, (args, p.stderr)
    assert _snapshot(tmp_path) == before and not temp_leftovers(tmp_path / "bad" if where != "/dev/full" else tmp_path)


@pytest.mark.parametrize("args", [["make-data", "-o", "out.csv", "--rows", "50", "--cols", "6"],
                                  ["denormalize", "n.csv", "-o", "out.csv", "--stats", "n.stats.json"],
                                  ["normalize", "t.csv", "-o", "out.csv"]])  # (Python's commit: it checked already)
@pytest.mark.parametrize("what", ["folder", "device"])
def test_a_folder_or_device_that_appears_at_the_output_while_the_engine_runs_is_refused(tmp_path, args, what):
    """The engine's own commit (make-data, denormalize) checked what was at its output only as it began: a folder
    made there meanwhile failed the rename with the system's bare "Is a directory", and a device was renamed over.
    Deterministic: the folder's lock (which the engine's commit takes) is held until the engine has made its
    temporary (the check of its start passed); the folder or device is made; the lock is let go."""
    t = tmp_path / "t.csv"
    wideann.make_data(t, rows=20, cols=6, seed=1)
    ok("normalize", t, "-o", tmp_path / "n.csv", "-q")
    out = tmp_path / "out.csv"
    before = sorted(os.listdir(tmp_path))
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        p = subprocess.Popen(WIDEANN + args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=cli_env())
        assert wait_for(lambda: temp_leftovers(tmp_path) or p.poll() is not None, 60)
        assert p.poll() is None, p.communicate()
        if what == "folder":
            out.mkdir()
        else:
            try:
                os.mknod(out, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
            except PermissionError:
                p.kill()
                p.wait()
                pytest.skip("making a device needs the superuser")
    finally:
        os.close(folder)
    stdout, stderr = p.communicate(timeout=60)
    msg = assert_failed_cleanly(subprocess.CompletedProcess(args, p.returncode, stdout, stderr), names=["out.csv"],
                                folder=tmp_path)
    assert f"is a {what}, not a file" in msg and "Is a directory" not in msg, msg
    assert out.is_dir() if what == "folder" else stat.S_ISCHR(os.lstat(out).st_mode)
    assert sorted(os.listdir(tmp_path)) == sorted(before + ["out.csv"])  # (normalize: no out.stats.json either)


def test_a_link_at_the_output_is_replaced_not_written_through(tmp_path):
    """The documented choice: as every write-then-rename writer, the rename replaces a symbolic link at the
    output path by the new file; the file it pointed to is left as it was."""
    t = tmp_path / "t.csv"
    wideann.make_data(t, rows=20, cols=6, seed=1)
    (tmp_path / "target.npy").write_bytes(b"theirs")
    (tmp_path / "link.npy").symlink_to(tmp_path / "target.npy")
    ok("normalize", t, "-o", tmp_path / "link.npy", "-q")
    assert not (tmp_path / "link.npy").is_symlink() and (tmp_path / "target.npy").read_bytes() == b"theirs"


def test_a_commit_that_fails_gives_back_what_was_there(tmp_path):
    """A rename that fails at commit (here: the stats file's temporary is gone) left neither output before:
    now the earlier table and stats file are both as they were, and the error names the output."""
    from wideann import _atomic

    (tmp_path / "t.npy").write_text("old table")
    (tmp_path / "t.stats.json").write_text("old stats")
    (tmp_path / ".t.npy.new").write_text("new table")
    with pytest.raises(FileNotFoundError) as e:
        _atomic.commit_together([(tmp_path / ".t.npy.new", tmp_path / "t.npy"),
                                 (tmp_path / ".t.stats.json.gone", tmp_path / "t.stats.json")])
    assert e.value.filename == str(tmp_path / "t.stats.json")
    assert (tmp_path / "t.npy").read_text() == "old table" and (tmp_path / "t.stats.json").read_text() == "old stats"
    assert sorted(os.listdir(tmp_path)) == ["t.npy", "t.stats.json"]  # no kept copy left behind


def test_a_commit_that_succeeds_leaves_no_kept_copy(tmp_path):
    from wideann import _atomic

    (tmp_path / "t.npy").write_text("old table")
    (tmp_path / ".t.npy.new").write_text("new table")
    _atomic.commit_together([(tmp_path / ".t.npy.new", tmp_path / "t.npy")])
    assert os.listdir(tmp_path) == ["t.npy"] and (tmp_path / "t.npy").read_text() == "new table"


@pytest.mark.parametrize("target", ["stream", "fifo"])
def test_a_link_to_a_stream_or_a_fifo_is_refused_not_renamed_over(tmp_path, target):
    # /dev/stdout (-> /proc/self/fd/1) passed the check when stdout was a file: run as root, the rename
    # would have replaced the system's link; a link to a FIFO was replaced too (here: links of our own)
    t = tmp_path / "t.csv"
    t.write_text("a,b,y\n1,2,3\n4,5,6\n")
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")
    link = tmp_path / "out.json"
    os.symlink("/proc/self/fd/1" if target == "stream" else tmp_path / "fifo", link)
    with open(tmp_path / "stdout.txt", "w") as stdout:  # (stdout a file: its link leads to a file)
        p = subprocess.run([*WIDEANN, "stats", str(t), "-o", str(link)], stdout=stdout, stderr=subprocess.PIPE,
                           text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert ("is a stream of this process" if target == "stream" else "is a link to a FIFO") in p.stderr, p.stderr
    assert os.path.islink(link) and not temp_leftovers(tmp_path)


@pytest.mark.parametrize("args", [["stats", "t.csv"], ["make-data", "--rows", "3", "--cols", "6"],
                                  ["normalize", "t.csv", "--stats-out", "s.json"]])
def test_dev_fd_of_a_stdout_that_is_a_file_is_a_stream_refused_before_any_work(tmp_path, args):
    # /dev/fd/1 (a link in /proc/<pid>/fd, to the file stdout is) passed the check that refuses /dev/stdout:
    # make-data failed with "cannot create output" (exit 1), stats after all its work
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,3\n4,5,6\n")
    args = [*args[:1], "-o", "/dev/fd/1", *args[1:]] if args[0] != "normalize" else \
        ["normalize", "t.csv", "-o", "t.npy", "--stats-out", "/dev/fd/1"]
    with open(tmp_path / "stdout.txt", "w") as stdout:
        p = subprocess.run([*WIDEANN, *args], stdout=stdout, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                           timeout=60)
    assert p.returncode == 2 and p.stderr == "wideann: error: /dev/fd/1: is a stream of this process, not a file: " \
        "outputs are written under a temporary name and renamed over their path; give the path of a file\n", p.stderr
    assert (tmp_path / "stdout.txt").read_text() == "" and not temp_leftovers(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["stdout.txt", "t.csv"]


def test_an_output_whose_temporary_cannot_be_made_is_named_not_its_temporary(tmp_path):
    # a folder that passes the checks of the start but where no file can be made (here /dev/fd, a folder of
    # /proc; a full inode table or a quota likewise): the error named the hidden temporary, a file that is not
    # there and that the user never asked for
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,3\n4,5,6\n")
    for out, named in [("/dev/fd/t.npy", "/dev/fd/t.stats.json"), ("/dev/fd/s.json", "/dev/fd/s.json")]:
        args = ["normalize", "t.csv", "-o", out] if out.endswith(".npy") else ["stats", "t.csv", "-o", out]
        p = run_cli(*args, cwd=tmp_path)
        assert p.returncode == 1 and p.stderr == f"wideann: error: {named}: cannot create output: No such file or " \
            "directory\n", p.stderr
    assert sorted(os.listdir(tmp_path)) == ["t.csv"]


def test_a_single_output_is_renamed_over_the_earlier_one_without_a_kept_copy(tmp_path, monkeypatch):
    # a kept copy serves only outputs committed together; for one, a rename that fails leaves the earlier file,
    # and one kept by moving it aside (where hard links fail) would leave the path empty for readers meanwhile
    from wideann import _atomic

    (tmp_path / "m.json").write_text("earlier")
    links = []
    monkeypatch.setattr(_atomic.os, "link", lambda *a, **k: links.append(a))
    with _atomic.atomic_path(tmp_path / "m.json") as tmp:
        with open(tmp, "w") as f:
            f.write("new")
    assert links == [] and (tmp_path / "m.json").read_text() == "new" and not temp_leftovers(tmp_path)


def test_the_library_refuses_an_output_that_is_one_of_its_inputs(tmp_path):
    # the command line refused it; wideann.normalize("in.csv", "in.csv") overwrote the raw data, and
    # denormalize("p.csv", "p.csv") its predictions
    raw = tmp_path / "in.csv"
    wideann.make_data(raw, rows=20, cols=6, seed=1)
    text = raw.read_text()
    os.link(raw, tmp_path / "same.csv")
    os.link(raw, tmp_path / "same.json")  # (stats_out=raw: refused first for its name, a table's)
    for call in (lambda: wideann.normalize(raw, raw), lambda: wideann.normalize(raw, tmp_path / "same.csv"),
                 lambda: wideann.normalize(raw, tmp_path / "t.npy", stats_out=tmp_path / "same.json")):
        with pytest.raises(ValueError, match="is also an input of this command"):
            call()
        assert raw.read_text() == text
    wideann.normalize(raw, tmp_path / "t.npy")
    (tmp_path / "p.csv").write_text("y\n0.5\n0.25\n")
    with pytest.raises(ValueError, match="is also an input of this command"):
        wideann.denormalize(tmp_path / "p.csv", tmp_path / "p.csv", stats=tmp_path / "t.stats.json")
    assert (tmp_path / "p.csv").read_text() == "y\n0.5\n0.25\n" and not temp_leftovers(tmp_path)


def test_without_hard_links_a_failed_commit_still_gives_back_the_earlier_files(tmp_path, monkeypatch):
    # where os.link fails (some network and FUSE file systems) each earlier file is moved aside instead
    import errno

    from wideann import _atomic

    for name, text in (("t.npy", "old table"), ("t.stats.json", "old stats"), (".t.npy.new", "new table")):
        (tmp_path / name).write_text(text)

    def no_links(*a, **k):
        raise PermissionError(errno.EPERM, "no hard links here")

    monkeypatch.setattr(_atomic.os, "link", no_links)
    with pytest.raises(FileNotFoundError, match="is gone"):  # (the stats' temporary is missing: the 2nd rename fails)
        _atomic.commit_together([(tmp_path / ".t.npy.new", tmp_path / "t.npy"),
                                 (tmp_path / ".t.stats.json.new", tmp_path / "t.stats.json")])
    assert (tmp_path / "t.npy").read_text() == "old table" and (tmp_path / "t.stats.json").read_text() == "old stats"
    assert sorted(os.listdir(tmp_path)) == ["t.npy", "t.stats.json"]
