"""An interrupt (Ctrl-C, SIGTERM, SIGHUP) and what the command then says agree with what is on disk: an
interrupt before an output's rename leaves nothing (the file that was there before, if any, as it was) and
says "no output written" (exit 130); one that lands after the rename, when the work is done, says the
output is complete (exit 0). Also ``predict``'s other messages that belong to its run folder.

Interrupts are made to land at a chosen point by a ``python -c`` harness around the real command line
that wraps a standard-library call (``os.replace``, ``shutil.rmtree``, ``sys.stderr``): none of wideann's
own components is stood in for."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import wideann
from conftest import WIDEANN, ok, temp_leftovers

torch = pytest.importorskip("torch")

_MAIN = "from wideann.cli import main\nsys.exit(main(sys.argv[1:]))\n"

SLOW_RMTREE = """import shutil, sys, time
real = shutil.rmtree
def slow(*a, **k):
    time.sleep(1.0)
    return real(*a, **k)
shutil.rmtree = slow
""" + _MAIN

# SIGINT to itself right after each rename onto a path named $TRIP (the output), as a Ctrl-C landing there
INTERRUPT_AFTER_RENAME = """import os, signal, sys
real = os.replace
def replace(src, dst, **kw):
    real(src, dst, **kw)
    if os.path.basename(os.fspath(dst)) == os.environ["TRIP"]:
        os.kill(os.getpid(), signal.SIGINT)
os.replace = replace
""" + _MAIN

# SIGINT to itself as the command writes its summary line ("... -> OUT"), after the output is in place
INTERRUPT_AT_THE_SUMMARY = """import os, signal, sys
class Tripwire:
    def __init__(self, f):
        self.f, self.armed = f, True
    def write(self, text):
        if self.armed and " -> " in text:
            self.armed = False
            os.kill(os.getpid(), signal.SIGINT)
        return self.f.write(text)
    def __getattr__(self, name):
        return getattr(self.f, name)
sys.stderr = Tripwire(sys.stderr)
""" + _MAIN


def _harness(script: str, *args, **kw):
    return [sys.executable, "-c", script, *map(str, args)]


def _run_folder(tmp_path, dtype: str = "float32"):
    """A run folder as a lesson leaves it (a small model, its card, the training stats), made without training."""
    from torch import nn

    from wideann import modelcard

    d = tmp_path / "train"
    d.mkdir()
    wideann.make_data(d / "train.csv", rows=300, cols=6, seed=1)
    wideann.normalize([d / "train.csv"], d / "train.npy", dtype=dtype)
    run = tmp_path / "run"
    run.mkdir()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))
    torch.save(model.state_dict(), run / "w.pt")
    modelcard.write(model, run, "w.pt", stats_path=d / "train.stats.json", train=d / "train.npy")
    return run, d / "train.csv"


def test_predict_interrupted_as_its_work_folder_goes_says_what_is_on_disk(tmp_path):
    """The reviewer's case: the output was renamed into place, then the work folder removed; a Ctrl-C meanwhile
    said "no output written", left the complete output (exit 130) and the hidden work folder."""
    run, new = _run_folder(tmp_path)
    out = tmp_path / "pr"
    out.mkdir()
    p = subprocess.Popen(_harness(SLOW_RMTREE, "predict", run, new, "-o", out / "p.csv", "-q", "--device", "cpu"),
                         stderr=subprocess.PIPE, text=True)
    while p.poll() is None:
        if (out / "p.csv").exists():
            p.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    err = p.communicate(timeout=120)[1]
    # (a SIGINT that lands after main returned, as the interpreter exits, ends it by the signal (-2): the
    # summary line was written then, and the output is complete)
    if p.returncode == 0 or "300 predictions -> " in err:
        assert os.listdir(out) == ["p.csv"] and "no output written" not in err, err
        assert len((out / "p.csv").read_text().splitlines()) == 301
    else:
        assert p.returncode == 130 and "no output written" in err and os.listdir(out) == [], (p.returncode, err)


def test_an_interrupt_in_the_middle_of_the_commit_is_held_until_it_is_done(tmp_path):
    """A Ctrl-C landing as the output's rename returns is held back until the commit is done (no half-done
    commit to undo, no window where an undo could itself be cut short), then delivered: the new output is in
    place, nothing else is left, and the run says it is complete (before, predict's rename had none of
    commit_together's handling: the new output stayed, under "no output written")."""
    run, new = _run_folder(tmp_path)
    out = tmp_path / "pr"
    out.mkdir()
    (out / "p.csv").write_text("earlier\n")
    env = dict(os.environ, TRIP="p.csv")
    p = subprocess.run(_harness(INTERRUPT_AFTER_RENAME, "predict", run, new, "-o", out / "p.csv", "-q", "--device",
                                "cpu"), capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and "is complete" in p.stderr and "no output written" not in p.stderr, p.stderr
    assert os.listdir(out) == ["p.csv"] and len((out / "p.csv").read_text().splitlines()) == 301


def test_an_interrupt_after_the_work_is_done_says_the_output_is_complete(tmp_path):
    run, new = _run_folder(tmp_path)
    t = tmp_path / "t.csv"
    wideann.make_data(t, rows=30, cols=6, seed=2)
    ok("normalize", t, "-o", tmp_path / "n.csv")
    out = tmp_path / "out"
    out.mkdir()
    cases = [
        ("stats", t, "-o", out / "s.json"),
        ("normalize", t, "-o", out / "t.npy"),
        ("make-data", "-o", out / "m.csv", "--rows", "5", "--cols", "6"),
        ("denormalize", tmp_path / "n.csv", "-o", out / "d.csv", "--stats", tmp_path / "n.stats.json"),
        ("merge-stats", tmp_path / "n.stats.json", "-o", out / "merged.json"),
        ("predict", run, new, "-o", out / "p.csv", "--device", "cpu"),
    ]
    for args in cases:
        p = subprocess.run(_harness(INTERRUPT_AT_THE_SUMMARY, *args), capture_output=True, text=True, timeout=120)
        output = args[args.index("-o") + 1]
        assert p.returncode == 0 and f"{output} is complete" in p.stderr, (args, p.returncode, p.stderr)
        assert output.is_file() and not temp_leftovers(out), (args, os.listdir(out))
    assert len((out / "p.csv").read_text().splitlines()) == 301


def test_predict_on_a_float16_run_gives_advice_that_fits_predict(tmp_path):
    """The engine's "use --dtype float32" is normalize's advice; predict has no --dtype (it normalizes new data
    as the run's table was)."""
    run, new = _run_folder(tmp_path, dtype="float16")
    lines = new.read_text().splitlines()
    first = lines[1].split(",")
    first[0] = "4e15"
    (tmp_path / "far.csv").write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    p = subprocess.run([sys.executable, "-m", "wideann", "predict", str(run), str(tmp_path / "far.csv"), "-o",
                        str(tmp_path / "p.csv"), "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert "does not fit float16" in p.stderr and "--dtype" not in p.stderr and "float16 table" in p.stderr, p.stderr
    assert f"{tmp_path / 'far.csv'}, line 2, column 1" in p.stderr
    assert not (tmp_path / "p.csv").exists() and not temp_leftovers(tmp_path)


# a signal as the interpreter shuts down, after main() returned (torch's shutdown takes a tenth of a second)
LATE_SIGNAL = """import atexit, os, signal, sys
atexit.register(lambda: os.kill(os.getpid(), getattr(signal, os.environ["LATE"])))
from wideann.cli import console
console()
"""


@pytest.mark.parametrize("late", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_after_the_work_is_done_does_not_turn_it_into_a_failure(tmp_path, late):
    """It ended the process with 130 or 143 (or a traceback from an atexit hook) after the summary line."""
    t = tmp_path / "t.csv"
    wideann.make_data(t, rows=30, cols=6, seed=2)
    p = subprocess.run([sys.executable, "-c", LATE_SIGNAL, "normalize", str(t), "-o", str(tmp_path / "n.npy")],
                       capture_output=True, text=True, env=dict(os.environ, LATE=late), timeout=120)
    assert p.returncode == 0 and "-> " in p.stderr and "Traceback" not in p.stderr, (p.returncode, p.stderr)
    assert "Interrupt" not in p.stderr and sorted(os.listdir(tmp_path)) == ["n.npy", "n.stats.json", "t.csv"]


def test_a_closed_pipe_ends_the_output_quietly(tmp_path):
    # `wideann info t.csv | head -1` said "wideann: error: [Errno 32] Broken pipe", exit 1
    t = tmp_path / "t.csv"
    wideann.make_data(t, rows=30, cols=6, seed=2)
    r, w = os.pipe()
    os.close(r)
    p = subprocess.run([*WIDEANN, "info", str(t)], stdout=w, stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(w)
    assert p.returncode == 141 and p.stderr == "", (p.returncode, p.stderr)


@pytest.mark.parametrize("device, code, says", [
    ("mps", 1, "--device mps: not usable here"),  # (a torch built without it: the machine's answer)
    ("cuda:7", 1, "--device cuda:7: no such CUDA device here"),
    ("meta", 2, "argument --device: 'meta': predict runs on cpu, cuda, cuda:N or mps"),  # (wrong usage)
    ("xla", 2, "argument --device: 'xla': predict runs on cpu, cuda, cuda:N or mps"),
    ("tpu", 2, "argument --device: 'tpu': predict runs on cpu, cuda, cuda:N or mps"),
    ("cuda:x", 2, "argument --device: 'cuda:x': predict runs on cpu, cuda, cuda:N or mps")])
def test_predict_on_a_device_this_torch_cannot_use_is_one_line(tmp_path, device, code, says):
    # --device mps on a torch built without it ended in a 16-line traceback from the model's move; a name that is
    # no device predict runs on is wrong usage (it was exit 1, as a machine without the device is)
    if device.startswith("cuda") and __import__("torch").cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    run, new = _run_folder(tmp_path)
    p = subprocess.run([*WIDEANN, "predict", str(run), str(new), "-o", str(tmp_path / "p.csv"), "--device", device],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == code and says in p.stderr.splitlines()[-1], (p.returncode, p.stderr)
    assert code == 2 or p.stderr.count("\n") == 1, p.stderr  # (wrong usage: argparse's usage line comes first)
    assert not (tmp_path / "p.csv").exists() and not temp_leftovers(tmp_path)


# The program (wideann._entry, as the console script enters it), with a Ctrl-C as the summary line is written,
# after the output is in place, and a second one as the line that answers the first is written (a user pressing
# Ctrl-C twice; a scheduler's SIGTERM after the user's Ctrl-C)
CTRL_C_TWICE = """import os, signal, sys
class Tripwire:
    def __init__(self, f):
        self.f, self.tripped = f, []
    def write(self, text):
        if (" -> " in text or "interrupted" in text) and len(self.tripped) < 2:
            self.tripped.append(text)
            os.kill(os.getpid(), getattr(signal, os.environ["SECOND"] if self.tripped[1:] else "SIGINT"))
        return self.f.write(text)
    def __getattr__(self, name):
        return getattr(self.f, name)
sys.stderr = Tripwire(sys.stderr)
from wideann._entry import console
console()
"""


@pytest.mark.parametrize("second", ["SIGINT", "SIGTERM"])
def test_a_second_interrupt_as_the_first_is_answered_does_not_say_no_output_written(tmp_path, second):
    # the second one escaped main()'s handler into wideann._entry's catch-all, which said "interrupted; no output
    # written" and exit 130, with the table and its stats complete at the output path
    t = tmp_path / "t.csv"
    wideann.make_data(t, rows=30, cols=6, seed=2)
    p = subprocess.run([sys.executable, "-c", CTRL_C_TWICE, "normalize", str(t), "-o", str(tmp_path / "n.npy")],
                       capture_output=True, text=True, env=dict(os.environ, SECOND=second), timeout=120)
    assert sorted(os.listdir(tmp_path)) == ["n.npy", "n.stats.json", "t.csv"]
    assert p.returncode == 0, (p.returncode, p.stderr)
    assert p.stderr == f"wideann: interrupted after the work was done: {tmp_path / 'n.npy'} is complete\n", p.stderr


# stdout unbuffered (PYTHONUNBUFFERED=1), each write taking its time: a reader that has its line leaves meanwhile
SLOW_STDOUT = """import sys, time
class Slow:
    def __init__(self, f):
        self.f = f
    def write(self, text):
        n = self.f.write(text)
        self.f.flush()
        time.sleep(0.3)
        return n
    def __getattr__(self, name):
        return getattr(self.f, name)
sys.stdout = Slow(sys.stdout)
from wideann._entry import console
console()
"""


def test_info_into_head_1_ends_with_0_where_stdout_is_unbuffered(tmp_path):
    # print() wrote the description, then its newline: with PYTHONUNBUFFERED=1 two writes, and `wideann info t.npy |
    # head -1` ended with 141 when head took its line and left before the newline came (by chance, or always here)
    t = tmp_path / "t.csv"
    wideann.make_data(t, rows=30, cols=6, seed=2)
    wideann.normalize([t], tmp_path / "t.npy")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    info = subprocess.Popen([sys.executable, "-c", SLOW_STDOUT, "info", str(tmp_path / "t.npy")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    head = subprocess.Popen(["head", "-1"], stdin=info.stdout, stdout=subprocess.PIPE)
    info.stdout.close()
    line = head.communicate(timeout=60)[0]
    err = info.communicate(timeout=60)[1]
    assert line.startswith(str(tmp_path / "t.npy").encode() + b": .npy table, 30 x 6"), line
    assert (info.returncode, err) == (0, b"")
