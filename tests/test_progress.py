"""Progress bars of the lessons and of `wideann predict`: drawn on a terminal (steps, rows/s, the running loss),
not with --quiet, only by the main process, and never into a pipe or a log (the lesson runs of
test_trained_runs.py check that last one on all four lessons).

The lessons run for real under `accelerate launch` with stderr on a pseudo-terminal, as a user sees them.
"""
from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("torch")
pytest.importorskip("accelerate")

import wideann  # noqa: E402
from conftest import WIDEANN, stderr_on_a_terminal  # noqa: E402
from test_lessons import _env  # noqa: E402  (the lessons' runs: no user config, no GPU)
from wideann import progress  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


def _on_a_terminal(cmd, cwd, env, timeout=240) -> tuple[int, str]:
    """Run ``cmd`` with stderr on a 120 x 24 pseudo-terminal; its exit code and what it wrote there."""
    return stderr_on_a_terminal(cmd, cwd, env, columns=120, timeout=timeout)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    wideann.make_data(d / "tiny.csv", rows=1000, cols=10, seed=1, noise=0.5)
    return d


def _lesson(script, tiny, out, *args):
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", SCRIPTS / "configs" / "cpu.yaml",
            SCRIPTS / script, "--data", tiny / "tiny.csv", "--output-dir", out, *args]


def test_lesson_shows_a_progress_bar_on_a_terminal_and_none_with_quiet(tmp_path, tiny):
    # 1000 rows: 800 training rows, 13 steps of 64 per epoch
    rc, err = _on_a_terminal(_lesson("1_first_ann.py", tiny, tmp_path / "a", "--epochs", "2"), tmp_path, _env(tmp_path))
    assert rc == 0, err[-3000:]
    for epoch in (1, 2):
        assert f"epoch {epoch}: 100%" in err and "13/13 steps" in err, err[-2000:]
    assert "rows/s" in err and ", loss 0." in err and "\r" in err, err[-2000:]
    rc, err = _on_a_terminal(_lesson("1_first_ann.py", tiny, tmp_path / "b", "--epochs", "1", "--quiet"),
                             tmp_path, _env(tmp_path))
    assert rc == 0, err[-3000:]
    assert "rows/s" not in err and "steps" not in err, f"--quiet still shows progress: {err[-1000:]!r}"

    # wideann predict with the trained model: its own bar over the batches (1000 rows, 10 batches)
    predict = [*WIDEANN, "predict", tmp_path / "a", tiny / "tiny.csv", "-o", tmp_path / "p.csv", "--batch-size", "100"]
    rc, err = _on_a_terminal(predict, tmp_path, _env(tmp_path))
    assert rc == 0, err[-3000:]
    assert "predict: 100%" in err and "10/10 batches" in err and "rows/s" in err, err[-2000:]
    rc, err = _on_a_terminal(predict + ["--quiet"], tmp_path, _env(tmp_path))
    assert rc == 0 and "rows/s" not in err and "batches" not in err, err[-2000:]
    p = subprocess.run(predict, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "\r" not in p.stderr and "rows/s" not in p.stderr, p.stderr


def test_only_the_main_process_draws_the_bar(tmp_path, tiny):
    """Lesson 4 on two CPU processes, both on one terminal: one bar per epoch, not two."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           SCRIPTS / "configs" / "cpu_2proc.yaml", "--main_process_port", str(port), SCRIPTS / "4_multi_gpu_ann.py",
           "--data", tiny / "tiny.csv", "--output-dir", tmp_path / "run", "--epochs", "1", "--hidden", "8",
           "--batch-size", "32"]
    rc, err = _on_a_terminal(cmd, tmp_path, _env(tmp_path))
    assert rc == 0, err[-3000:]
    # 800 training rows, global batch 64: 13 steps; the last drawing of each bar is its 100% line
    assert err.count("epoch 1: 100%") == 1, err[-3000:]


# ---- the wrapper itself, on a real pseudo-terminal --------------------------------------------------
@pytest.fixture
def terminal(monkeypatch):
    """``terminal.start()`` puts sys.stderr on a pseudo-terminal (in the test itself: pytest's output
    capture sets sys.stderr anew between a fixture and its test); ``terminal.written()`` returns what
    was written there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    f = os.fdopen(slave, "w", buffering=1)

    def written() -> str:
        f.flush()
        out = b""
        while select.select([master], [], [], 0.5)[0]:  # the terminal hands the bytes on a moment later
            out += os.read(master, 65536)
        return out.decode("utf-8", "replace")

    yield SimpleNamespace(start=lambda: monkeypatch.setattr(sys, "stderr", f), written=written)
    monkeypatch.undo()
    f.close()
    os.close(master)


def _batches(n, size=10):
    return [(list(range(i, min(i + size, n))), None) for i in range(0, n, size)]


def test_bar_passes_batches_through_and_counts_rows(terminal):
    terminal.start()
    batches = _batches(95)
    bar = progress.bar(batches, "epoch 1")
    seen = []
    for batch in bar:
        seen.append(batch)
        bar.show_loss(0.125)
    assert seen == batches and bar.rows == 95
    out = terminal.written()
    assert "epoch 1: 100%" in out and "10/10 steps" in out and "rows/s, loss 0.125" in out, repr(out)


@pytest.mark.parametrize("why", ["quiet", "other process"])
def test_no_bar_with_quiet_or_on_other_processes(terminal, why):
    kwargs = {"quiet": True} if why == "quiet" else {"accelerator": SimpleNamespace(is_main_process=False)}
    terminal.start()
    bar = progress.bar(_batches(50), "epoch 1", **kwargs)
    assert sum(len(x) for x, _ in bar) == 50 and bar.rows == 50
    assert terminal.written() == ""


def test_no_bar_when_stderr_is_not_a_terminal(capsys):
    bar = progress.bar(_batches(50), "epoch 1")
    assert [len(x) for x, _ in bar] == [10] * 5 and bar.rows == 50
    assert capsys.readouterr().err == ""


def test_bar_resumed_mid_epoch_and_left_early(terminal):
    terminal.start()
    bar = progress.bar(iter(_batches(50)[2:]), "epoch 3", total=5, initial=2)  # a resumed epoch: no len()
    for i, _ in enumerate(bar):
        if i == 1:
            break  # like --max-steps: the bar is removed all the same
    assert bar._bar is None
    assert "2/5 steps" in terminal.written()
