"""The command line and the lessons in the environments users run them in: locales, odd paths, permissions,
the umask, closed or full standard streams.

Real files and the real ``wideann`` program (``python -m wideann``) in subprocesses; nothing is mocked. A
test that needs a write-protected file to be refused drops the superuser's right to write anything
(``capsh``) when it runs as root, and is skipped where it cannot.
"""
from __future__ import annotations

import errno
import fcntl
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (WIDEANN, assert_failed_cleanly, cli_env, mounted_tmpfs, ok, remount_read_only, run_cli,
                      temp_leftovers, wait_for, write_csv)

ROOT = Path(__file__).resolve().parents[1]

ASCII_LOCALE = {"LC_ALL": "C", "PYTHONUTF8": "0"}
"""The C locale without Python's UTF-8 mode: the locale's encoding is ASCII (as a Latin-1 locale, it cannot
spell every name), and ``open()`` without ``encoding=`` uses it."""


def _sh(script: str, cwd, env=None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else cli_env())


def _wideann() -> str:
    return shlex.join(WIDEANN)


def _table(path, target: str = "y", rows: int = 50) -> Path:
    rng = np.random.default_rng(0)
    x = rng.random((rows, 3))
    return write_csv(path, [list(r) + [float(r @ [1.0, 2.0, 3.0])] for r in x], header=["a", "b", "c", target])


# ---- numbers in messages -------------------------------------------------------------------------------

def _decimal_comma_locale(tmp_path) -> dict | None:
    """``de_DE.UTF-8`` compiled into ``tmp_path`` (``localedef``; the machine may have no locale but C): the
    environment that finds it, or None."""
    if not shutil.which("localedef"):
        return None
    subprocess.run(["localedef", "-i", "de_DE", "-f", "UTF-8", str(tmp_path / "de_DE.UTF-8")],
                       capture_output=True, text=True)
    if not (tmp_path / "de_DE.UTF-8").is_dir():
        return None
    env = cli_env(LOCPATH=str(tmp_path), LC_ALL="de_DE.UTF-8")
    check = subprocess.run([sys.executable, "-c", "import locale; locale.setlocale(locale.LC_ALL, ''); "
                            "print(locale.localeconv()['decimal_point'])"], env=env, capture_output=True, text=True)
    return env if check.stdout.strip() == "," else None


def test_numbers_in_the_engines_messages_have_a_dot_in_a_decimal_comma_locale(tmp_path):
    """A program that sets its locale (``locale.setlocale(LC_ALL, "")``, as GUI toolkits and many scripts do)
    got ``3,5e+38`` in a message whose file and line are separated by commas. The outputs never depended on it
    (``std::to_chars``); the messages used ``printf``."""
    env = _decimal_comma_locale(tmp_path)
    if env is None:
        pytest.skip("no decimal-comma locale can be made here (localedef, de_DE)")
    _table(tmp_path / "raw.csv")
    script = """
import locale, numpy as np, wideann
locale.setlocale(locale.LC_ALL, "")
assert locale.localeconv()["decimal_point"] == ","
np.save("p.npy", np.array([[3.5e38]], dtype="<f8"))
wideann.Stats(["y"], [0.0], [1.5e308], 1).save("s.json")
try:
    wideann.denormalize("p.npy", "p.csv", stats="s.json")
except wideann.DataError as e:
    print(e)
wideann.normalize("raw.csv", "t.csv")
wideann.denormalize("t.csv", "back.csv", stats="t.stats.json")
write = open("far.csv", "w"); write.write("a,b,c,y\\n100000.5,0,0,0\\n"); write.close()
try:
    wideann.normalize("far.csv", "f.npy", stats="t.stats.json", dtype="float16")
except wideann.DataError as e:
    print(e)
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    denorm, half = r.stdout.splitlines()
    assert "normalized value 3.5e+38 is beyond a double" in denorm, denorm
    assert ", line 2, column 1: normalized value " in half and "," not in half.split("normalized value ")[1].split()[0]
    for name in ("t.csv", "back.csv"):  # (the outputs: a dot, as always)
        body = (tmp_path / name).read_text().splitlines()[1:]
        assert all(len(line.split(",")) == 4 for line in body)


# ---- modes ---------------------------------------------------------------------------------------------

def test_the_engines_outputs_take_the_umask_of_the_moment(tmp_path):
    """The engine read the umask once per process (and by setting it to 0 for a moment, when another thread's
    files got 0666): a notebook that tightened its umask to 077 still got 0644 files from make_data and
    denormalize."""
    script = """
import os, stat, wideann
os.umask(0o022)
wideann.make_data("a.csv", rows=10, cols=6)
os.umask(0o077)
wideann.make_data("b.csv", rows=10, cols=6)
wideann.normalize("b.csv", "b.npy")
wideann.denormalize("b.npy", "b_back.csv", stats="b.stats.json")
for f in ("a.csv", "b.csv", "b.npy", "b.stats.json", "b_back.csv"):
    print(f, oct(stat.S_IMODE(os.stat(f).st_mode)))
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    modes = dict(line.split() for line in r.stdout.splitlines())
    assert modes == {"a.csv": "0o644", "b.csv": "0o600", "b.npy": "0o600", "b.stats.json": "0o600",
                     "b_back.csv": "0o600"}


def test_a_rewritten_output_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    """A private (0600) output written again under a umask of 022 became 0644, readable by everyone: a plain
    ``open()`` that truncates it keeps its mode, and so do the writers that write and rename (``sed -i``)."""
    _table(tmp_path / "raw.csv")
    steps = [["make-data", "-o", "d.csv", "--rows", "20", "--cols", "6"],                  # the engine renames
             ["normalize", "raw.csv", "-o", "t.npy"],                                     # table and stats together
             ["denormalize", "t.npy", "-o", "back.csv", "--stats", "t.stats.json"],      # the engine renames
             ["stats", "raw.csv", "-o", "s.json"]]                                        # Python renames
    outputs = ["d.csv", "t.npy", "t.stats.json", "back.csv", "s.json"]
    for args in steps:
        subprocess.run(WIDEANN + args, cwd=tmp_path, check=True, capture_output=True, umask=0o022)
    for name, mode in zip(outputs, (0o600, 0o640, 0o600, 0o604, 0o600)):
        os.chmod(tmp_path / name, mode)
    for args in steps:
        p = subprocess.run(WIDEANN + args, cwd=tmp_path, capture_output=True, text=True, umask=0o022)
        assert p.returncode == 0, p.stderr
    got = {name: oct(stat.S_IMODE(os.stat(tmp_path / name).st_mode)) for name in outputs}
    assert got == {"d.csv": "0o600", "t.npy": "0o640", "t.stats.json": "0o600", "back.csv": "0o604",
                   "s.json": "0o600"}
    assert temp_leftovers(tmp_path) == []


def _acl(*entries) -> bytes:
    """A POSIX access ACL as the kernel stores it (``system.posix_acl_access``): version 2, then (tag, perm, id)."""
    import struct

    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, uid) for tag, perm, uid in entries)


def test_a_rewritten_output_keeps_its_acl(tmp_path):
    """A file with an ACL (owner rw, user 1234 rw, group none, mask rw: its mode shows 0660, the mask) lost the ACL
    when rewritten: the mode copied alone gave the owning group rw and took user 1234's access away."""
    none = 0xFFFFFFFF
    acl = _acl((0x01, 6, none), (0x02, 6, 1234), (0x04, 0, none), (0x10, 6, none), (0x20, 0, none))
    _table(tmp_path / "raw.csv")
    steps = [["make-data", "-o", "d.csv", "--rows", "20", "--cols", "6"],  # the engine's commit
             ["normalize", "raw.csv", "-o", "t.npy"]]                     # Python's
    for args in steps:
        subprocess.run(WIDEANN + args, cwd=tmp_path, check=True, capture_output=True)
    try:
        for name in ("d.csv", "t.npy"):
            os.setxattr(tmp_path / name, "system.posix_acl_access", acl)
    except (OSError, AttributeError) as e:
        pytest.skip(f"no POSIX ACLs here: {e}")
    for args in steps:
        subprocess.run(WIDEANN + args, cwd=tmp_path, check=True, capture_output=True)
    for name in ("d.csv", "t.npy"):
        assert os.getxattr(tmp_path / name, "system.posix_acl_access") == acl, name
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o660, name
    assert temp_leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only the superuser may give a file to another user")
def test_a_users_output_rewritten_by_the_superuser_stays_the_users(tmp_path):
    """A user's private (0600) output written again by root became root's, with the user's group and mode: its
    owner could no longer read its own file (before, root:root 0644, it could). ``sed -i`` keeps the owner, as a
    plain ``open()`` that truncates the file does; so does every output now. A set-user-ID bit is not copied."""
    _table(tmp_path / "raw.csv")
    steps = [["make-data", "-o", "d.csv", "--rows", "20", "--cols", "6"],                  # the engine renames
             ["normalize", "raw.csv", "-o", "t.npy"],                                     # table and stats together
             ["denormalize", "t.npy", "-o", "back.csv", "--stats", "t.stats.json"],      # the engine renames
             ["stats", "raw.csv", "-o", "s.json"]]                                        # Python renames
    outputs = {"d.csv": 0o4750, "t.npy": 0o600, "t.stats.json": 0o600, "back.csv": 0o2640, "s.json": 0o600}
    for args in steps:
        ok(*args, cwd=tmp_path)
    for name, mode in outputs.items():
        os.chown(tmp_path / name, 4321, 4322)
        os.chmod(tmp_path / name, mode)
    for args in steps:
        ok(*args, cwd=tmp_path)
    got = {name: (os.stat(tmp_path / name).st_uid, os.stat(tmp_path / name).st_gid,
                  oct(stat.S_IMODE(os.stat(tmp_path / name).st_mode))) for name in outputs}
    assert got == {name: (4321, 4322, oct(mode & 0o777)) for name, mode in outputs.items()}
    assert temp_leftovers(tmp_path) == []


def _without_the_superusers_rights(cmd: list[str]) -> list[str]:
    """``cmd`` as a user bound by file permissions: itself when not root; as root, through ``capsh`` without
    the capabilities that let root write and read any file (skipped where there is no ``capsh``)."""
    if os.geteuid() != 0:
        return cmd
    if not shutil.which("capsh"):
        pytest.skip("running as root without capsh: every file may be written")
    return ["capsh", "--drop=cap_dac_override,cap_dac_read_search,cap_fowner", "--", "-c", shlex.join(cmd)]


def _run_bound(args, cwd) -> subprocess.CompletedProcess:
    cmd = _without_the_superusers_rights(WIDEANN + [os.fspath(a) for a in args])
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, env=cli_env())


@pytest.mark.parametrize("args, protected", [
    (["make-data", "-o", "out.csv", "--rows", "5", "--cols", "6"], "out.csv"),
    (["denormalize", "t.npy", "-o", "out.csv", "--stats", "t.stats.json"], "out.csv"),
    (["normalize", "raw.csv", "-o", "out.npy"], "out.npy"),
    (["normalize", "raw.csv", "-o", "out.npy"], "out.stats.json"),
    (["stats", "raw.csv", "-o", "out.json"], "out.json"),
])
def test_a_write_protected_output_is_refused_as_open_refuses_it(tmp_path, args, protected):
    """``chmod a-w out.csv`` and the command run again: the file was renamed over, its protection lost without a
    word (a plain ``open()``, ``cp``, ``numpy.save``, ``torch.save`` refuse). Now one line, exit code 1, the
    file as it was."""
    _table(tmp_path / "raw.csv")
    ok("normalize", "raw.csv", "-o", "t.npy", cwd=tmp_path)
    (tmp_path / protected).write_bytes(b"keep me\n")
    os.chmod(tmp_path / protected, 0o444)
    p = _run_bound(args, tmp_path)
    msg = assert_failed_cleanly(p, names=[protected], folder=tmp_path)
    assert "write-protected" in msg
    assert (tmp_path / protected).read_bytes() == b"keep me\n"
    assert stat.S_IMODE(os.stat(tmp_path / protected).st_mode) == 0o444
    others = {"out.npy", "out.stats.json", "out.csv", "out.json"} - {protected}
    assert not any((tmp_path / o).exists() for o in others)


def _waits_for_the_lock_of(folder, p: subprocess.Popen) -> bool:
    """The engine run by ``p`` (or by a process ``p`` started: ``capsh``) has made its temporary in ``folder`` and
    holds the folder open: its commit is waiting for the folder's lock, which the test holds. (Deterministic,
    where a pause let it get there "surely": the engine opens the folder only to take that lock.)"""
    if not temp_leftovers(folder):
        return False
    pids, seen = [p.pid], set()
    while pids:
        pid = pids.pop()
        seen.add(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    pids += [int(c) for c in f.read().split() if int(c) not in seen]
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == os.fspath(folder) for fd in os.listdir(f"/proc/{pid}/fd")):
                return True
        except OSError:  # (a process or descriptor gone meanwhile: looked at again in the next round)
            continue
    return False


@pytest.mark.parametrize("args", [["make-data", "-o", "out.csv", "--rows", "50", "--cols", "6"],
                                  ["denormalize", "t.npy", "-o", "out.csv", "--stats", "t.stats.json"]])
def test_a_file_write_protected_while_the_engine_writes_is_not_renamed_over(tmp_path, args):
    """The engine's own commit (make-data, denormalize) checked for a write-protected file only as it began, and
    took no lock: a file made read-only while it ran was renamed over. It now takes the folder's lock, which
    Python's commits take (held here, as one of them would hold it), and checks again right before its rename."""
    _table(tmp_path / "raw.csv")
    ok("normalize", "raw.csv", "-o", "t.npy", cwd=tmp_path)
    out = tmp_path / "out.csv"
    out.write_bytes(b"keep me\n")
    cmd = _without_the_superusers_rights(WIDEANN + args)
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=cli_env())
        # its temporary made (the check of its start passed), its rows written: its commit waits for the lock
        assert wait_for(lambda: _waits_for_the_lock_of(tmp_path, p) or p.poll() is not None, 60)
        assert p.poll() is None and out.read_bytes() == b"keep me\n", "renamed into place under another's lock"
        os.chmod(out, 0o444)
    finally:
        os.close(folder)
    stdout, stderr = p.communicate(timeout=60)
    msg = assert_failed_cleanly(subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr), names=["out.csv"],
                                folder=tmp_path)
    assert "cannot replace it: it is write-protected" in msg, msg
    assert out.read_bytes() == b"keep me\n" and stat.S_IMODE(out.stat().st_mode) == 0o444


@pytest.mark.parametrize("args", [["make-data", "-o", "out.csv", "--rows", "50", "--cols", "6"],
                                  ["denormalize", "t.npy", "-o", "out.csv", "--stats", "t.stats.json"]])
def test_ctrl_c_stops_an_engine_waiting_for_its_folders_lock(tmp_path, args):
    """The engine waited for the folder's lock in a blocking flock, which no Ctrl-C reached (Python cancels the
    job and waits for it): with another process holding the lock, Ctrl-C did nothing, and once the lock was let
    go the output was written after all. Now the interrupt ends the wait: exit 130, nothing written."""
    import signal

    _table(tmp_path / "raw.csv")
    ok("normalize", "raw.csv", "-o", "t.npy", cwd=tmp_path)
    before = sorted(os.listdir(tmp_path))
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    p = None
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        p = subprocess.Popen(WIDEANN + args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=cli_env())
        assert wait_for(lambda: _waits_for_the_lock_of(tmp_path, p) or p.poll() is not None, 60)
        assert p.poll() is None, p.communicate()
        p.send_signal(signal.SIGINT)
        try:
            _out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("Ctrl-C did not stop the engine waiting for its folder's lock")
    finally:
        os.close(folder)
        if p is not None and p.poll() is None:
            p.kill()
            p.communicate()
    assert (p.returncode, err) == (130, "wideann: interrupted; no output written\n")
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("args", [
    ["normalize", "raw.csv", "-o", "ro/t.npy"],
    ["normalize", "raw.csv", "-o", "t.npy", "--stats-out", "ro/t.json"],
    ["stats", "raw.csv", "-o", "ro/s.json"],
    ["make-data", "-o", "ro/d.csv", "--rows", "5", "--cols", "6"],
])
def test_an_output_folder_that_may_not_be_written_is_named_before_any_work(tmp_path, args):
    """The message named a hidden temporary (``ro/.t.stats.json.0_kch12g.tmp: Permission denied``), after
    pass 1: an hour into a large table."""
    _table(tmp_path / "raw.csv")
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    try:
        p = _run_bound(args, tmp_path)
        out = next(a for a in args if a.startswith("ro/"))
        msg = assert_failed_cleanly(p, names=[out], folder=tmp_path / "ro")
        assert ".tmp" not in msg and "cannot write in its folder" in msg, msg
    finally:
        os.chmod(tmp_path / "ro", 0o755)


# ---- paths ---------------------------------------------------------------------------------------------

def test_an_output_name_of_250_bytes_is_written(tmp_path):
    """A name the folder takes (up to 255 bytes) but whose temporary (``.NAME.XXXXXXXX.tmp``) it does not:
    the command failed after the work, naming the temporary."""
    _table(tmp_path / "raw.csv")
    long_csv, long_json, long_npy = "c" * 246 + ".csv", "s" * 245 + ".json", "é" * 123 + ".npy"  # 250, 250, 250 bytes
    ok("make-data", "-o", long_csv, "--rows", "5", "--cols", "6", cwd=tmp_path)            # the engine's temporary
    ok("stats", "raw.csv", "-o", long_json, cwd=tmp_path)                                 # Python's
    ok("normalize", "raw.csv", "-o", long_npy, "--stats-out", "t.json", cwd=tmp_path)     # cut at a character
    ok("denormalize", long_npy, "-o", "z" * 246 + ".csv", "--stats", "t.json", cwd=tmp_path)
    assert (tmp_path / long_csv).is_file() and (tmp_path / long_json).is_file()
    assert np.load(tmp_path / long_npy).shape == (50, 4)
    assert temp_leftovers(tmp_path) == []


def test_a_name_too_long_is_one_line_before_any_work(tmp_path):
    _table(tmp_path / "raw.csv")
    table = "a" * 246 + ".npy"  # 250 bytes; its stats file beside it, a.stats.json, would be 257
    p = run_cli("normalize", "raw.csv", "-o", table, cwd=tmp_path)
    msg = assert_failed_cleanly(p, names=["a" * 246 + ".stats.json"], folder=tmp_path)
    assert "file name too long (257 bytes" in msg
    for args in (["make-data", "-o", "m" * 253 + ".csv", "--rows", "5", "--cols", "6"],
                 ["stats", "raw.csv", "-o", "s" * 252 + ".json"]):
        p = run_cli(*args, cwd=tmp_path)
        assert_failed_cleanly(p, names=[args[args.index("-o") + 1]], folder=tmp_path)
        assert "file name too long" in p.stderr


def test_an_output_through_a_link_and_dotdot_is_written_where_the_system_finds_it(tmp_path):
    """``lnk/../out/t.npy`` with ``lnk`` -> ``a/b`` is ``a/out/t.npy`` to the system; Python's ``abspath`` makes
    it ``./out/t.npy``. The command refused a folder that exists (or, where that folder existed on another file
    system, made its temporary there and failed to rename it, after all the work)."""
    _table(tmp_path / "raw.csv")
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "out").mkdir()
    (tmp_path / "lnk").symlink_to("a/b")
    ok("normalize", "raw.csv", "-o", "lnk/../out/t.npy", cwd=tmp_path)
    ok("make-data", "-o", "lnk/../out/d.csv", "--rows", "5", "--cols", "6", cwd=tmp_path)
    ok("stats", "raw.csv", "-o", "lnk/../out/s.json", cwd=tmp_path)
    ok("denormalize", "lnk/../out/t.npy", "-o", "lnk/../out/back.csv", "--stats", "a/out/t.stats.json", cwd=tmp_path)
    assert sorted(os.listdir(tmp_path / "a" / "out")) == ["back.csv", "d.csv", "s.json", "t.npy", "t.stats.json"]
    assert not (tmp_path / "out").exists()


def test_one_folder_by_two_names_does_not_hang_the_commit(tmp_path):
    """The table in ``lnk/`` and its stats in ``real/`` (``lnk`` -> ``real``): the commit locked the folder
    once by each name, and ``flock`` on the second descriptor waited for the first forever."""
    _table(tmp_path / "raw.csv")
    (tmp_path / "real").mkdir()
    (tmp_path / "lnk").symlink_to("real")
    p = run_cli("normalize", "raw.csv", "-o", "lnk/t.npy", "--stats-out", "real/t.json", cwd=tmp_path, timeout=60)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path / "real")) == ["t.json", "t.npy"]


# ---- a read-only file system -----------------------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB tmpfs of its own, to remount read-only; skipped where mounting is not allowed."""
    yield from mounted_tmpfs(tmp_path, "2m", "rofs")


def test_a_read_only_file_system_is_said_as_such(small_fs):
    """An output on a read-only mount (EROFS) was refused as "permission denied", which no chmod mends; the
    system says "read-only file system", and so does every check that refuses one now."""
    ro = small_fs
    _table(ro / "raw.csv")
    ok("normalize", ro / "raw.csv", "-o", ro / "t.npy")
    (ro / "run").mkdir()
    before = {p.name: p.read_bytes() for p in ro.iterdir() if p.is_file()}
    remount_read_only(ro)
    for args, out in ((["make-data", "--rows", "5", "--cols", "6"], "new.csv"),
                      (["make-data", "--rows", "5", "--cols", "6"], "raw.csv"),
                      (["normalize", ro / "raw.csv"], "u.npy"),
                      (["stats", ro / "raw.csv"], "s.json"),
                      (["denormalize", ro / "t.npy", "--stats", ro / "t.stats.json"], "back.csv"),
                      (["merge-stats", ro / "t.stats.json", ro / "t.stats.json"], "m.json")):
        p = run_cli(*args, "-o", ro / out)
        msg = assert_failed_cleanly(p, names=[out])
        assert f"cannot write in its folder {ro} (read-only file system)" in msg, msg
    assert {p.name: p.read_bytes() for p in ro.iterdir() if p.is_file()} == before

    from wideann import _atomic, _native
    from wideann.course.results import refuse_a_run_folder_that_may_not_be_written

    with pytest.raises(_native.DataError, match="raw.csv: cannot replace it: it is on a read-only file system"):
        _native.make_data(os.fsencode(ro / "raw.csv"), 5, 6, 0, 1.0, 1, _native.Progress())  # the engine's own check
    with pytest.raises(OSError) as e:
        _atomic.refuse_a_write_protected_file(ro / "raw.csv")
    assert e.value.errno == errno.EROFS and e.value.strerror == "cannot replace it: it is on a read-only file system"
    with pytest.raises(OSError) as e:
        refuse_a_run_folder_that_may_not_be_written(ro / "run")
    assert e.value.errno == errno.EROFS and e.value.filename == os.fspath(ro / "run")
    assert e.value.strerror == "cannot write in this folder of the run (read-only file system): " \
                               "give another --output-dir"


def test_a_commit_onto_a_file_system_made_read_only_says_so(small_fs):
    """A file system remounted read-only while a run wrote its temporary: the commit's own check says so."""
    from wideann import _atomic

    (small_fs / "out.json").write_text("old")
    tmp = _atomic.temp_name(small_fs / "out.json", [])
    Path(tmp).write_text("new")
    remount_read_only(small_fs)
    with pytest.raises(OSError) as e:
        _atomic.commit_together([(tmp, small_fs / "out.json")])
    assert e.value.errno == errno.EROFS and e.value.filename == os.fspath(small_fs / "out.json"), e.value
    assert "read-only file system" in e.value.strerror and (small_fs / "out.json").read_text() == "old"


# ---- standard streams -----------------------------------------------------------------------------------

@pytest.mark.parametrize("closed", ["2>&-", "<&- >&- 2>&-", ">&-"])
def test_a_closed_standard_stream_does_not_stop_a_command(tmp_path, closed):
    """``2>&-`` (a cron job, a daemon): Python leaves ``sys.stderr`` None, and the command ended with exit
    code 1 at ``sys.stderr.isatty()``, silently, having written nothing."""
    _table(tmp_path / "raw.csv")
    p = subprocess.run(["bash", "-c", f"exec 3>rc.txt; {_wideann()} normalize raw.csv -o t.npy {closed}; echo $? >&3"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120, env=cli_env())
    assert (tmp_path / "rc.txt").read_text().strip() == "0", p.stderr
    assert np.load(tmp_path / "t.npy").shape == (50, 4)
    assert (tmp_path / "t.stats.json").is_file()


def _without_dev_null(how: str) -> str:
    """A shell command prefix that runs ``wideann`` where ``/dev/null`` cannot be opened: in a mount namespace
    whose ``/dev`` is an empty tmpfs (a bare container), or, where mounting is not allowed, with Python's
    ``os.devnull`` naming a file that is not there (all the program knows of it)."""
    if how == "no /dev":
        probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /dev && ! test -e /dev/null"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs on /dev in a mount namespace here: {probe.stderr.strip()}")
        return f"unshare -m sh -c 'mount -t tmpfs tmpfs /dev && exec \"$@\"' - {_wideann()}"
    code = ("import os, sys; os.devnull = os.path.join(os.getcwd(), 'no', 'null'); sys.argv[0] = 'wideann'; "
            "from wideann._entry import console; console()")
    return shlex.join([sys.executable, "-c", code])


@pytest.mark.parametrize("how", ["no /dev", "os.devnull not there"])
def test_a_closed_standard_stream_without_dev_null_stays_closed(tmp_path, how):
    """A closed standard stream is opened on ``/dev/null``, so that no file takes its number; where there is no
    ``/dev/null`` (a bare container, a sandbox) the program ended in a traceback before doing anything. Now the
    stream stays closed and the command runs, saying what it has to say on the streams that are open."""
    wideann = _without_dev_null(how)
    _table(tmp_path / "raw.csv")
    for closed in ("2>&-", "<&- >&- 2>&-", ">&-"):
        p = _sh(f"{wideann} normalize raw.csv -o t.npy {closed}", tmp_path)
        assert p.returncode == 0 and "Traceback" not in p.stderr, (closed, p.stderr)
        assert np.load(tmp_path / "t.npy").shape == (50, 4)
        said = "50 rows x 4 columns -> t.npy (stats: t.stats.json)\n"
        assert p.stderr == ("" if "2>&-" in closed else said), p.stderr
        (tmp_path / "t.npy").unlink()
    p = _sh(f"{wideann} normalize missing.csv -o t.npy >&-", tmp_path)  # a failure, said on stderr
    assert p.returncode == 1 and p.stderr == "wideann: error: missing.csv: no such file\n", p.stderr
    p = _sh(f"{wideann} info raw.csv >&-", tmp_path)
    assert p.returncode == 1 and "standard output is closed" in p.stderr and "Traceback" not in p.stderr, p.stderr
    # a stdout whose reader has left (| true): stdout then written nowhere, without /dev/null to do it with
    ok("make-data", "-o", tmp_path / "wide.csv", "--rows", "3", "--cols", "3000")
    p = _sh(f"{wideann} info wide.csv | true; echo rc=${{PIPESTATUS[0]}} >&2", tmp_path)
    assert p.stderr == "rc=141\n", p.stderr
    assert not (tmp_path / "t.npy").exists() and temp_leftovers(tmp_path) == []


def test_info_to_a_closed_stdout_is_an_error(tmp_path):
    """A description written nowhere is not a success (as ``cat file >&-`` fails)."""
    _table(tmp_path / "raw.csv")
    p = _sh(f"{_wideann()} info raw.csv >&-", tmp_path)
    assert p.returncode == 1
    assert p.stderr.startswith("wideann: error: raw.csv: standard output is closed"), p.stderr


def test_a_full_stderr_loses_the_summary_not_the_work(tmp_path):
    """The summary line of a finished command cannot be written (``2>/dev/full``): the output is complete and
    the exit code says so (it said 1, a failure, with the table and stats in place)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    _table(tmp_path / "raw.csv")
    p = _sh(f"{_wideann()} normalize raw.csv -o t.npy 2>/dev/full", tmp_path)
    assert p.returncode == 0
    assert (tmp_path / "t.npy").is_file() and (tmp_path / "t.stats.json").is_file()
    p = _sh(f"{_wideann()} normalize missing.csv -o u.npy 2>/dev/full", tmp_path)
    assert p.returncode == 1 and not (tmp_path / "u.npy").exists()
    p = _sh(f"{_wideann()} info raw.csv >/dev/full", tmp_path)
    assert p.returncode == 1 and p.stderr == "wideann: error: standard output: No space left on device\n"


def test_summary_lines_show_odd_file_names_escaped_on_one_line(tmp_path):
    _table(tmp_path / "raw.csv")
    p = ok("normalize", "raw.csv", "-o", "a\nb.npy", cwd=tmp_path)
    assert p.stderr == "50 rows x 4 columns -> a\\x0ab.npy (stats: a\\x0ab.stats.json)\n"
    odd = os.fsdecode(b"\xff.npy")
    p = ok("normalize", "raw.csv", "-o", odd, cwd=tmp_path)
    assert p.stderr == "50 rows x 4 columns -> \\xff.npy (stats: \\xff.stats.json)\n"


def test_error_lines_show_a_newline_in_a_file_name_escaped_as_summary_lines_do(tmp_path):
    """An error line showed a newline in a file name as a space (``r q.csv``: another file's name, perhaps one
    that exists); it is ``\\x0a`` there too, as in the summary lines: one line, and the name it is."""
    bad = _table(tmp_path / "r\nq.csv")
    with open(bad, "a") as f:
        f.write("1,2,x,4\n")  # line 52, column 3
    p = run_cli("normalize", "r\nq.csv", "-o", "t.npy", cwd=tmp_path)
    assert p.returncode == 1 and p.stderr == "wideann: error: r\\x0aq.csv, line 52, column 3: expected a number, " \
                                             "found 'x'\n", p.stderr
    (tmp_path / "s\nt.json").write_text('{"format": "something else"}')  # refused by the Python side
    _table(tmp_path / "raw.csv")
    p = run_cli("normalize", "raw.csv", "-o", "t.npy", "--stats", "s\nt.json", cwd=tmp_path)
    assert p.returncode == 1 and p.stderr.startswith("wideann: error: s\\x0at.json: not a wideann stats file"), p.stderr
    assert p.stderr.count("\n") == 1 and not (tmp_path / "t.npy").exists()


def test_normalize_says_how_many_rows_it_wrote(tmp_path):
    """The summary line of ``normalize`` gives the table's data rows (header and blank lines not counted); with
    ``--stats``, the rows of these inputs, not the rows the stats were fitted on."""
    _table(tmp_path / "raw.csv")
    p = ok("normalize", "raw.csv", "-o", "t.npy", cwd=tmp_path)
    assert p.stderr == "50 rows x 4 columns -> t.npy (stats: t.stats.json)\n", p.stderr
    _table(tmp_path / "more.csv", rows=7)
    with open(tmp_path / "more.csv", "a") as f:
        f.write("\n")
    p = ok("normalize", "more.csv", "more.csv", "-o", "m.csv", "--stats", "t.stats.json", cwd=tmp_path)
    assert p.stderr == "14 rows x 4 columns -> m.csv (stats applied: t.stats.json; no stats file beside it)\n", \
        p.stderr


def test_summary_lines_count_one_row_column_or_file_in_the_singular(tmp_path):
    """A summary line said "1 rows" (and "1 columns", "1 stats files"): a count of one is singular."""
    (tmp_path / "one.csv").write_text("y\n5\n")
    p = ok("stats", "one.csv", "-o", "s.json", cwd=tmp_path)
    assert p.stderr == "1 column, 1 row -> s.json\n", p.stderr
    p = ok("merge-stats", "s.json", "-o", "m.json", cwd=tmp_path)
    assert p.stderr == "1 stats file, 1 row -> m.json\n", p.stderr
    p = ok("normalize", "one.csv", "-o", "t.npy", cwd=tmp_path)
    assert p.stderr == "1 row x 1 column -> t.npy (stats: t.stats.json)\n", p.stderr
    p = ok("denormalize", "t.npy", "-o", "back.csv", "--stats", "t.stats.json", cwd=tmp_path)
    assert p.stderr == "1 row -> back.csv\n", p.stderr
    p = ok("make-data", "-o", "d.csv", "--rows", "1", "--cols", "6", cwd=tmp_path)
    assert p.stderr == "1 row x 6 columns -> d.csv\n", p.stderr
    p = ok("make-data", "-o", "e.csv", "--rows", "2", "--cols", "6", cwd=tmp_path)
    assert p.stderr == "2 rows x 6 columns -> e.csv\n", p.stderr


# ---- locales and encodings ------------------------------------------------------------------------------

def test_info_shows_what_stdout_cannot_encode_escaped(tmp_path):
    """A header name the locale's encoding cannot spell (ASCII, Latin-1), and a file name that is not UTF-8
    under a strict UTF-8 stdout (``en_US.UTF-8``): ``info`` failed with exit code 1 on a valid file."""
    _table(tmp_path / "raw.csv", target="größe€")
    p = run_cli("info", "raw.csv", cwd=tmp_path, env=cli_env(**ASCII_LOCALE))
    assert p.returncode == 0, p.stderr
    assert "first line: a, b, c, gr\\xf6\\xdfe\\u20ac" in p.stdout
    odd = os.fsdecode(b"r\xff.csv")
    shutil.copy(tmp_path / "raw.csv", tmp_path / odd)
    ok("stats", odd, "-o", "s.json", cwd=tmp_path)
    for args in (["info", odd], ["info", "s.json"]):
        p = run_cli(*args, cwd=tmp_path, env=cli_env(PYTHONIOENCODING="utf-8:strict"))
        assert p.returncode == 0, p.stderr
        assert "r\\xff.csv" in p.stdout


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """Lesson 1 trained under an ASCII locale on a table whose target is named ``größe€``: it printed its
    commands with the name (a UnicodeEncodeError traceback) and wrote the predictions' header in the locale's
    encoding (which cannot spell it)."""
    d = tmp_path_factory.mktemp("locale_run")
    _table(d / "train.csv", target="größe€", rows=200)
    env = cli_env(**ASCII_LOCALE, HF_HOME=str(d / "hf"), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "1_first_ann.py"), "--data", "train.csv", "--epochs",
                        "1", "--output-dir", "run", "--quiet"], cwd=d, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return d


def test_a_lesson_writes_its_predictions_header_in_utf8_whatever_the_locale(trained_run):
    first = (trained_run / "run" / "predictions.csv").read_bytes().split(b"\n")[0]
    assert first == "größe€_true,größe€_pred".encode("utf-8")


def test_predict_writes_its_header_in_utf8_whatever_the_locale(trained_run):
    for locale in (ASCII_LOCALE, {"LC_ALL": "C.UTF-8"}):
        out = trained_run / f"pred_{len(locale)}.csv"
        p = run_cli("predict", "run", "train.csv", "-o", out, "--row-numbers", cwd=trained_run, env=cli_env(**locale))
        assert p.returncode == 0, p.stderr
        lines = out.read_bytes().split(b"\n")
        assert lines[0] == "row,größe€_pred".encode("utf-8") and lines[1].startswith(b"0,")


def test_a_file_put_back_through_a_hard_link_does_not_change_the_linked_file(tmp_path):
    """--resume puts a checkpoint's copy of the model back by a hard link renamed over the model: giving that
    link the replaced file's mode (as a rewritten output keeps its mode) changed the checkpoint's copy too."""
    from wideann._atomic import atomic_path

    kept, final = tmp_path / "kept.pt", tmp_path / "best_model.pt"
    kept.write_bytes(b"checkpoint")
    final.write_bytes(b"later")
    os.chmod(kept, 0o644)
    os.chmod(final, 0o600)
    with atomic_path(final) as t:
        os.unlink(t)
        os.link(kept, t)
    assert final.read_bytes() == b"checkpoint" and os.path.samefile(kept, final)
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o644  # (it became 0600)


def test_stdout_passes_a_file_names_bytes_and_escapes_what_it_cannot_spell():
    """On a stdout whose encoding cannot spell a character, the program and the lessons escape it (\\u20ac) rather
    than fail; a file name's byte that is not UTF-8 (a surrogate, as Python decodes it) is written as that byte,
    as Python's surrogateescape writes it, not escaped (it was \\udcff since the escaping began)."""
    code = "import wideann._entry as e; e.escape_what_stdout_cannot_encode(); print('a\\udcffb\\u20ac')"
    for encoding, want in (("latin-1", b"a\xffb\\u20ac\n"), ("utf-8", b"a\xffb\xe2\x82\xac\n"),
                           ("ascii", b"a\xffb\\u20ac\n")):
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                           env={**os.environ, "PYTHONIOENCODING": encoding})
        assert p.returncode == 0 and p.stdout == want, (encoding, p.stdout, p.stderr)
