"""What killed writes (``kill -9``, an OOM kill, a node failure) leave in a run folder goes as the next run there
starts, ``--resume`` or not, lesson 1 too: the hidden temporary files (``wideann._atomic.TEMP_NAME``) in the run
folder (those of the files a lesson writes there) and in ``data/`` and ``data/test/`` (those of tables and their
stats files), removed by the run that holds the folder's lock, before any work of its own.
A normalized table's is as large as the table (51 GB at the reference scale), and the next run normalized again
beside it. Never a complete output, a file of another name, a link, or anything beyond a link or outside those
folders; never by a run refused because another run holds the folder.

Real lesson runs and real kills: a run is stopped where it matters by the test hook ``WIDEANN_TEST_PAUSE``
(``course.processes.pause``) or, inside the engine's write, once its temporary file is there."""
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("accelerate")

from conftest import wait_for  # noqa: E402
from test_lessons import SCRIPTS, _env  # noqa: E402
from test_resume import Paused  # noqa: E402
from wideann._atomic import TEMP_NAME  # noqa: E402

L1 = "1_first_ann.py"


def _lesson1(cwd, *args):
    return subprocess.run([sys.executable, str(SCRIPTS / L1), *map(str, args)], cwd=cwd, env=_env(cwd),
                          capture_output=True, text=True, timeout=600)


def test_a_new_run_removes_the_table_a_killed_run_was_normalizing(tmp_path, big_csv):
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, str(SCRIPTS / L1), "--data", str(big_csv), "--output-dir", str(run)],
                         cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def writing():
        return [f for f in (run / "data").glob(".big.npy.*.tmp") if f.stat().st_size > 1 << 20]

    try:
        assert wait_for(writing, 120), "the engine never wrote the table"
    finally:
        p.kill()  # kill -9, inside the engine's write of the normalized table
        p.wait()
    left = [f for f in (run / "data").iterdir() if TEMP_NAME.match(f.name)]  # (the table's, its stats file's)
    assert writing() and not (run / "data" / "big.npy").exists()

    r = _lesson1(tmp_path, "--epochs", "1", "--output-dir", run)  # a new run, no --resume, on other data
    assert r.returncode == 0, r.stderr[-3000:]
    assert not [f for f in left if f.exists()], "the killed run's half-written table is still there"
    said = [ln for ln in r.stdout.splitlines() if re.match(r"removed \d+ temporary", ln)]
    assert len(said) == 1 and re.fullmatch(rf"removed {len(left)} temporary files? an interrupted run left in "
                                           r"run/data \(\d+\.\d [MG]iB\)", said[0]), r.stdout
    assert (run / "metrics.json").is_file() and (run / "data" / "example.npy").is_file()


def test_lesson1_removes_a_killed_runs_model_temporary_and_nothing_else(tmp_path):
    run = tmp_path / "run"
    args = ["--epochs", "1", "--output-dir", run]
    paused = Paused(tmp_path, L1, args, "model-written")  # the model written under its temporary name, not renamed
    pid = paused.wait()
    left = list(run.glob(".model.pt.*.tmp"))
    assert len(left) == 1

    # a run refused because another holds the folder removes nothing: that run is still writing it
    r = _lesson1(tmp_path, *args)
    assert r.returncode == 1 and "another run is writing in this folder" in r.stderr, r.stderr
    assert left[0].is_file()
    os.kill(pid, 9)  # kill -9 there
    paused.p.wait(timeout=60)
    assert left[0].is_file() and not (run / "model.pt").exists()

    # beside it: a file of another name, one of the name in another folder, a link of the name, a data/test/ that
    # is a link to a folder elsewhere: they stay
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / ".t.npy.abc123.tmp"
    target.write_bytes(b"not the run's")
    stays = [run / "data" / ".notes.tmp", run / ".model.pt.tmp", run / "other" / ".x.npy.abcdef12.tmp"]
    for f in stays:
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"keep")
    link = run / ".link.npy.abc123.tmp"
    link.symlink_to(target)
    (run / "data" / "test").symlink_to(outside, target_is_directory=True)
    table = (run / "data" / "example.npy").read_bytes()  # the killed run's complete table

    r = _lesson1(tmp_path, *args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not left[0].exists(), "the killed run's temporary model is still there"
    said = [ln for ln in r.stdout.splitlines() if re.match(r"removed \d+ temporary", ln)]
    assert len(said) == 1 and re.fullmatch(r"removed 1 temporary file an interrupted run left in run "
                                           r"\(\d+\.\d KiB\)", said[0]), r.stdout
    assert all(f.read_bytes() == b"keep" for f in stays) and target.read_bytes() == b"not the run's"
    assert link.is_symlink()
    assert "using run/data/example.npy" in r.stdout and (run / "data" / "example.npy").read_bytes() == table

    # and a run with nothing to remove says nothing of it
    os.unlink(link)
    r = _lesson1(tmp_path, *args)
    assert r.returncode == 0 and not re.search(r"^removed \d+ temporary", r.stdout, re.M), r.stdout


def test_a_run_folder_inside_another_run_folder_loses_nothing_to_its_sweep(tmp_path):
    # run B writes in a/data, the data folder of a run A in a: A's sweep of its data/ took B's model as it was being
    # written (B then failed at its rename), and a sweep of B's run folder would take A's table as it is normalized
    outer = tmp_path / "a"
    inner = outer / "data"
    paused = Paused(tmp_path, L1, ["--epochs", "1", "--output-dir", inner], "model-written")
    pid = paused.wait()
    writing = list(inner.glob(".model.pt.*.tmp"))
    assert len(writing) == 1

    r = _lesson1(tmp_path, "--epochs", "1", "--output-dir", outer)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not re.search(r"^removed \d+ temporary", r.stdout, re.M), r.stdout
    assert writing[0].is_file(), "another run's model, being written, was removed"
    code, out = paused.go_on(pid)
    assert code == 0, out[-3000:]
    assert (inner / "model.pt").is_file() and (outer / "model.pt").is_file()


def test_a_run_in_a_folder_of_the_users_own_removes_no_file_of_theirs(tmp_path):
    # --output-dir . where the user keeps other work: a hidden file named as a temporary, in the folder and in a
    # data/ of theirs, is not a killed write of a lesson's (and may be a program's being written now)
    theirs = [tmp_path / ".notes.abcdefgh.tmp", tmp_path / ".draft.txt.abc123.tmp", tmp_path / ".x.abcdefgh.tmp.npy",
              tmp_path / "data" / ".notes.abcdefgh.tmp", tmp_path / "data" / "test" / ".model.pt.abcdefgh.tmp",
              tmp_path / "data" / ".t.abcdefgh.tmp.npy"]  # (a complete table: a CSV of that name normalized)
    for f in theirs:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"theirs")
    ours = [tmp_path / ".metrics.json.abcdefgh.tmp", tmp_path / ".predictions.csv.abcdefgh.tmp.npy",
            tmp_path / "data" / ".big.npy.abc123.tmp", tmp_path / "data" / "test" / ".t.stats.json.abcdefgh.tmp"]
    for f in ours:
        f.write_bytes(b"x" * 1000)

    r = _lesson1(tmp_path, "--epochs", "1", "--output-dir", ".")
    assert r.returncode == 0, r.stderr[-3000:]
    assert [f for f in theirs if not f.is_file()] == []
    assert [f for f in ours if f.exists()] == []
    said = [ln for ln in r.stdout.splitlines() if re.match(r"removed \d+ temporary", ln)]
    assert said == ["removed 4 temporary files an interrupted run left in . (3.9 KiB)"], r.stdout
