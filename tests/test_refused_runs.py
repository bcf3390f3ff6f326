"""What a lesson refused before its work removes (the folders it made), and what it must keep; how a refused or
interrupted run ends when a signal lands as it says so.

Each case is a real lesson run as ``python scripts/N_*.py`` on the shipped example data (or a tiny table), with
its exit code, its stderr and the folders on disk checked afterwards.
"""
import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("accelerate")

from conftest import wait_for  # noqa: E402
from test_lessons import SCRIPTS, _env  # noqa: E402
from test_resume import _stopped  # noqa: E402

L1, L3 = SCRIPTS / "1_first_ann.py", SCRIPTS / "3_out_of_core_ann.py"


def _run(cwd, script, *args, env=None):
    return subprocess.run([sys.executable, str(script), "--quiet", *map(str, args)], cwd=cwd, env=env or _env(cwd),
                          capture_output=True, text=True, timeout=600)


def _one_line(r, script, code, says):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == code and len(lines) == 1, (r.returncode, r.stderr[-3000:])
    assert lines[0].startswith(f"{script.name}: error: ") and says in lines[0], lines[0]


def _signalled_at(tmp_path, hook: str, args, sig, before=None) -> subprocess.CompletedProcess:
    """Lesson 3 run with ``args``, stopped at the test hook ``hook`` (``pause``), sent ``sig`` there and let go;
    ``before(p)``, if given, runs first (to bring the run to the hook)."""
    report = tmp_path / "paused"
    env = _env(tmp_path)
    env.update(WIDEANN_TEST_PAUSE=hook, WIDEANN_TEST_PAUSE_FILE=str(report))
    p = subprocess.Popen([sys.executable, str(L3), "--quiet", *args], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if before is not None:
            before(p)
        assert wait_for(lambda: report.is_file() and _stopped(int(report.read_text())) or p.poll() is not None, 300)
        assert p.poll() is None, p.communicate()
        os.kill(p.pid, sig)
        os.kill(p.pid, signal.SIGCONT)
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def test_a_folder_there_before_stays_when_the_path_to_it_goes_through_one_the_run_made(tmp_path):
    # --output-dir new/../old: neither new nor new/../old existed until the run made new, so both were taken for
    # folders it made; refused (a --resume with no checkpoint), it removed old, empty but the user's, with new
    (tmp_path / "old").mkdir()
    r = _run(tmp_path, L3, "--epochs", "1", "--output-dir", "new/../old", "--resume")
    _one_line(r, L3, 1, "--resume: no checkpoint in new/../old/checkpoints")
    assert (tmp_path / "old").is_dir()
    assert not (tmp_path / "new").exists()  # (made by the run: removed)


def test_a_run_that_trained_and_diverged_keeps_its_folder_and_its_tables(tmp_path):
    # lesson 1 clears no results before it trains: a model that diverged was refused as a run refused before its
    # work, and its run folder went, with the table it had normalized (51 GB at the reference scale) to do again
    r = _run(tmp_path, L1, "--epochs", "1", "--lr", "1e30", "--output-dir", "runs/diverged")
    _one_line(r, L1, 1, "training diverged")
    data = tmp_path / "runs" / "diverged" / "data"
    assert (data / "example.npy").is_file() and (data / "example.stats.json").is_file()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_a_refused_run_ends_leaves_its_line_and_its_cleanup(tmp_path, sig):
    # stopped as it is refused, before its line and its cleanup (the test hook); a Ctrl-C or SIGTERM there turned
    # them into a KeyboardInterrupt traceback, the run folder it made left behind
    r = _signalled_at(tmp_path, "refused", ["--epochs", "1", "--output-dir", "runs/x", "--resume"], sig)
    _one_line(r, L3, 1, "--resume: no checkpoint")
    # (the example table it normalized stays, complete, for the next run; nothing else, no lock file)
    left = sorted(q.relative_to(tmp_path / "runs").as_posix() for q in (tmp_path / "runs").rglob("*"))
    assert left == ["x", "x/data", "x/data/example.npy", "x/data/example.npy.sources.json",
                    "x/data/example.stats.json"], left


def test_a_second_ctrl_c_while_an_interrupted_run_ends_leaves_its_line(tmp_path):
    # a Ctrl-C pressed twice: the second, landing as the run said it was interrupted, cut its line with a
    # KeyboardInterrupt traceback (and an end by the signal, not exit code 130)
    def ctrl_c_once_begun(p):
        for line in p.stdout:  # (from here the run's own handlers take a Ctrl-C: the lesson's main() has begun)
            if line.startswith("device:"):
                break
        os.kill(p.pid, signal.SIGINT)

    r = _signalled_at(tmp_path, "interrupted", ["--epochs", "1000", "--output-dir", "runs/x"], signal.SIGINT,
                      before=ctrl_c_once_begun)
    assert r.returncode == 130 and r.stderr.startswith(f"{L3.name}: interrupted") and r.stderr.count("\n") == 1, \
        r.stderr[-3000:]


def test_course_run_leaves_the_signal_handlers_of_its_caller_as_they_were(capsys):
    # (its last words are said with interrupts ignored: a caller that goes on, a test session, still takes Ctrl-C,
    # and the processes it starts do not inherit ignored signals)
    from wideann import course

    def refused():
        raise course.LessonError("refused")

    before = signal.getsignal(signal.SIGINT)
    for main in (refused, lambda: os.kill(os.getpid(), signal.SIGINT)):
        with pytest.raises(SystemExit):
            course.run(main)
        assert signal.getsignal(signal.SIGINT) is before  # (SIGTERM and SIGHUP: course.run's own, as ever)
        assert signal.SIG_IGN not in [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)]
    assert capsys.readouterr().err.count("\n") == 2


def test_a_sigterm_as_course_run_takes_over_from_the_lessons_first_line_is_said(tmp_path):
    # course.run put SIGTERM back to its default (the_run_takes_over) before it made it a KeyboardInterrupt
    # (stop_like_ctrl_c): a kill landing between the two ended the lesson by the signal, without a line
    r = _signalled_at(tmp_path, "taking-over", ["--epochs", "1", "--output-dir", "runs/x"], signal.SIGTERM)
    assert r.returncode == 130 and r.stderr.startswith(f"{L3.name}: interrupted") and r.stderr.count("\n") == 1, \
        r.stderr[-3000:]
    assert not (tmp_path / "runs").exists()
