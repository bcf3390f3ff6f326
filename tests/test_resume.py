"""Checkpoints and runs that survive faults (lessons 3 and 4).

- ``kill -9`` at the moments that matter (inside a checkpoint's write, while an old one is deleted,
  while ``best_model.pt`` is written or just after it, once training has ended) and at an arbitrary
  moment, then ``--resume``, again and again: the run ends exactly as an uninterrupted one (metrics,
  ``best_model.pt`` and ``predictions.csv`` bit for bit), and a half-written checkpoint is never loaded.
  Lesson 3 on one process, lesson 4 on two CPU processes (whose checkpoint a one-process run refuses).
- A full disk (a small tmpfs) while a checkpoint, the best model or the predictions are written: one
  line, exit code 1, nothing half-written left, the checkpoints that were complete still there, and
  ``--resume`` after freeing space ends exactly as an uninterrupted run.
- Checkpoints and models load weights-only: a checkpoint file whose unpickling would run code is refused
  (accelerate itself would run it) and the code does not run.

The moments come from the test hook ``WIDEANN_TEST_PAUSE=<point>:<n>`` in ``wideann.course``: the main
process stops itself (SIGSTOP) there; the test then kills every process of the run, or fills the disk
and lets it go on. Nothing of ours is replaced: the lessons run as users run them.
"""
import hashlib
import json
import os
import pickle
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

import wideann  # noqa: E402
from conftest import mounted_tmpfs  # noqa: E402
from test_lessons import SCRIPTS, _env, _launch_cmd  # noqa: E402
from wideann import course  # noqa: E402
from wideann.course import runlock  # noqa: E402

L3, L4 = "3_out_of_core_ann.py", "4_multi_gpu_ann.py"
L3_RUN = ["--epochs", "5", "--hidden", "32", "32", "--dropout", "0.1", "--batch-size", "32",
          "--checkpoint-every", "7", "--patience", "100"]
L4_RUN = ["--epochs", "4", "--max-steps", "30", "--hidden", "32", "16", "--dropout", "0.1", "--batch-size", "16",
          "--grad-accum", "2", "--checkpoint-every", "5", "--patience", "100"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    wideann.make_data(d / "t.csv", rows=1203, cols=10, seed=1, noise=0.5)
    wideann.normalize([d / "t.csv"], d / "t.npy")
    return d / "t.npy"


# ---- running, pausing and killing lessons --------------------------------------------------------
def _cmd(script, args, config):
    if config is None:  # lesson 3: plain python, one process
        return [sys.executable, str(SCRIPTS / script), *map(str, args)]
    return _launch_cmd(script, *args, config=config)


def run_to_end(cwd, script, args, config=None, timeout=300) -> str:
    r = subprocess.run(_cmd(script, args, config), cwd=cwd, env=_env(cwd), capture_output=True, text=True,
                       errors="backslashreplace", timeout=timeout)  # (a command line it prints: a file's bytes)
    assert r.returncode == 0, f"{script} failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r.stdout


def _children() -> dict:
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            kids.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(d))
    return kids


def _tree(pid) -> list:
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _signal_all(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def kill_9(p: subprocess.Popen) -> None:
    """``kill -9`` of the launch and every process under it (torchrun's workers have their own session),
    all frozen first so that none goes on while the others die."""
    pids = _tree(p.pid)
    _signal_all(pids, signal.SIGSTOP)
    pids = _tree(p.pid)
    _signal_all(pids, signal.SIGKILL)
    p.wait(timeout=60)


def _stopped(pid) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


class Paused:
    """A lesson started with the pause hook at ``point``; ``wait()`` returns once it stands there."""

    def __init__(self, cwd, script, args, point, config=None):
        self.report = Path(cwd) / f"paused-{time.monotonic_ns()}"
        env = _env(cwd)
        env.update(WIDEANN_TEST_PAUSE=point, WIDEANN_TEST_PAUSE_FILE=str(self.report))
        self.point = point
        self.out = open(Path(cwd) / f"{self.report.name}.log", "w+")
        self.p = subprocess.Popen(_cmd(script, args, config), cwd=cwd, env=env, stdout=self.out,
                                  stderr=subprocess.STDOUT, text=True)

    def log(self) -> str:
        self.out.seek(0)
        return self.out.read()

    def wait(self, timeout=300) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.report.is_file():
                pid = int(self.report.read_text())
                if _stopped(pid):
                    return pid
            elif self.p.poll() is not None:
                break
            time.sleep(0.02)
        kill_9(self.p)
        pytest.fail(f"the run never reached {self.point}:\n{self.log()[-4000:]}")

    def kill(self):
        kill_9(self.p)

    def go_on(self, pid, timeout=300) -> tuple:
        """Let it continue (SIGCONT) and wait for its end: (exit code, output)."""
        os.kill(pid, signal.SIGCONT)
        code = self.p.wait(timeout=timeout)
        return code, self.log()


def _bash_words(pasted: str, cwd) -> list[bytes]:
    """The words bash reads in ``pasted`` (a file name a lesson's line gives to type), run in ``cwd``."""
    r = subprocess.run(["bash", "-c", "printf '%s\\0' " + pasted], cwd=cwd, capture_output=True)
    assert r.returncode == 0, (pasted, r.stderr)
    return r.stdout.split(b"\0")[:-1]


def resumed_from(out: str, cwd) -> str:
    """The checkpoint a run said it resumed from, as a path from the root: the lesson names it as bash reads it
    (course.shell_path), relative to the folder it ran in, ``cwd``."""
    line = next((ln for ln in out.splitlines() if ln.startswith("resumed from ")), None)
    assert line, f"no 'resumed from' in the output:\n{out[-3000:]}"
    (name,) = shlex.split(re.fullmatch(r"resumed from (.*): epoch \d+, step \d+", line).group(1))
    return os.path.join(cwd, name)


def assert_same_end(a: Path, b: Path):
    """Two runs ended alike: metrics, best model and predictions, bit for bit."""
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    for key in ("test_rmse", "test_r2", "best_epoch", "best_val_loss", "epochs", "test_rows"):
        assert ma[key] == mb[key], (key, ma[key], mb[key])
    wa, wb = (torch.load(r / "best_model.pt", weights_only=True) for r in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()


def _digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _complete(run: Path) -> dict:
    """The complete checkpoints of a run and the digests of their files."""
    return {c.name: _digest(c) for c in (run / "checkpoints").glob("step_*")}


# ---- kill -9 at the moments that matter, then --resume -------------------------------------------
@pytest.fixture(scope="module")
def uninterrupted3(table, tmp_path_factory):
    d = tmp_path_factory.mktemp("l3full")
    run_to_end(d, L3, ["--data", table, *L3_RUN, "--output-dir", d / "run"])
    return d / "run"


def test_lesson3_killed_again_and_again_ends_as_if_never_interrupted(table, uninterrupted3, tmp_path):
    run = tmp_path / "run"
    args = ["--data", table, *L3_RUN, "--output-dir", run]

    # inside a checkpoint's write: every file of it written, not yet complete
    paused = Paused(tmp_path, L3, args, "checkpoint-written:3")
    paused.wait()
    paused.kill()
    half = list((run / "checkpoints").glob(".step_*.tmp"))
    assert len(half) == 1 and (half[0] / "model.safetensors").is_file() and (half[0] / "checkpoint.json").is_file()
    before = course.latest_checkpoint(run / "checkpoints")
    assert before is not None and before.name < half[0].name[1:]

    # a best model written after the last checkpoint (its epoch is run again)
    paused = Paused(tmp_path, L3, [*args, "--resume"], "model-saved:1")
    paused.wait()
    paused.kill()
    assert resumed_from(paused.log(), tmp_path) == str(before), "a half-written checkpoint was loaded"
    latest = course.latest_checkpoint(run / "checkpoints")
    kept = latest / "best_model.pt"
    assert not kept.exists() or kept.read_bytes() != (run / "best_model.pt").read_bytes()

    # while an old checkpoint is deleted
    paused = Paused(tmp_path, L3, [*args, "--resume"], "checkpoint-pruning:2")
    paused.wait()
    paused.kill()
    assert resumed_from(paused.log(), tmp_path) == str(latest)
    assert list((run / "checkpoints").glob(".trash.*"))

    # inside the write of best_model.pt
    paused = Paused(tmp_path, L3, [*args, "--resume"], "model-written:1")
    paused.wait()
    paused.kill()
    assert list(run.glob(".best_model.pt.*.tmp"))

    # training over, the test predictions about to be written
    paused = Paused(tmp_path, L3, [*args, "--resume"], "predictions-begin:1")
    paused.wait()
    paused.kill()
    assert not (run / "predictions.csv").exists()

    out = run_to_end(tmp_path, L3, [*args, "--resume"])
    assert "resumed from" in out
    assert_same_end(uninterrupted3, run)
    # resumed after training: the throughput is still the whole run's (5 epochs of the training rows)
    n_train = int(re.search(r"-> (\d+) training rows", out).group(1))
    assert_whole_run_throughput(run, 5 * n_train)
    assert_whole_run_throughput(uninterrupted3, 5 * n_train)
    assert not list((run / "checkpoints").glob(".*")), "leftovers of killed saves"
    assert not list(run.glob(".*.tmp"))
    assert len(list((run / "checkpoints").glob("step_*"))) == 2


@pytest.fixture(scope="module")
def uninterrupted4(table, tmp_path_factory):
    """Lesson 4 on two CPU processes, never interrupted: its folder and its output."""
    d = tmp_path_factory.mktemp("l4full")
    out = run_to_end(d, L4, ["--data", table, *L4_RUN, "--output-dir", d / "run"], config="cpu_2proc.yaml")
    return d / "run", out


def epoch_lines(out: str) -> dict:
    """Epoch -> (training loss, validation loss), as printed."""
    found = re.findall(r"^epoch +(\d+) +training loss \(MSE\) ([\d.]+) +validation loss ([\d.]+)", out, re.M)
    return {int(e): (t, v) for e, t, v in found}


def assert_whole_run_throughput(run: Path, rows: int):
    """metrics.json's throughput covers the whole run: samples/s x seconds gives every row trained."""
    m = json.loads((run / "metrics.json").read_text())
    assert m["samples_per_second"] * m["train_seconds"] == pytest.approx(rows, rel=1e-6), m
    assert m["train_samples_per_second"] >= m["samples_per_second"] > 0, m


def test_lesson4_on_two_processes_killed_again_and_again_ends_as_if_never_interrupted(table, uninterrupted4, tmp_path):
    full = uninterrupted4[0]
    run = tmp_path / "run"
    args = ["--data", table, *L4_RUN, "--output-dir", run]

    # at an arbitrary moment, from outside: as soon as the first checkpoint is there
    p = subprocess.Popen(_cmd(L4, args, "cpu_2proc.yaml"), cwd=tmp_path, env=_env(tmp_path),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while course.latest_checkpoint(run / "checkpoints") is None and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    kill_9(p)
    assert not (run / "metrics.json").exists(), "the run ended before it could be interrupted"

    # inside a checkpoint's write (the other process waits for the main one)
    paused = Paused(tmp_path, L4, [*args, "--resume"], "checkpoint-written:2", config="cpu_2proc.yaml")
    paused.wait()
    paused.kill()
    assert list((run / "checkpoints").glob(".step_*.tmp"))
    latest = course.latest_checkpoint(run / "checkpoints")

    # a best model written after the last checkpoint
    paused = Paused(tmp_path, L4, [*args, "--resume"], "model-saved:1", config="cpu_2proc.yaml")
    paused.wait()
    paused.kill()
    assert resumed_from(paused.log(), tmp_path) == str(latest)

    # training over
    paused = Paused(tmp_path, L4, [*args, "--resume"], "predictions-begin:1", config="cpu_2proc.yaml")
    paused.wait()
    paused.kill()

    out = run_to_end(tmp_path, L4, [*args, "--resume"], config="cpu_2proc.yaml")
    assert "x 2 process(es)" in out and "resumed from" in out
    assert_same_end(full, run)
    m, mfull = (json.loads((r / "metrics.json").read_text()) for r in (run, full))
    assert m["world_size"] == 2
    # the rows each process trained in the whole run, not since the last resume (which trained none)
    assert m["train_rows_per_process"] == mfull["train_rows_per_process"]
    assert_whole_run_throughput(run, sum(m["train_rows_per_process"]))

    # the checkpoint is of two processes: a resume on one is refused
    r = subprocess.run(_cmd(L4, [*args, "--resume"], None), cwd=tmp_path, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr[-3000:]
    assert "was made by 2 process(es), this run has 1: launch it as the interrupted run was" in r.stderr


def test_lesson4_resumed_within_an_epoch_reports_the_training_loss_of_every_process(table, uninterrupted4, tmp_path):
    # each process's running loss is its own: a checkpoint holding only the main process's would count
    # that one twice for the steps before it, and the resumed epoch's training loss would be off
    full, full_out = uninterrupted4
    run = tmp_path / "run"
    args = ["--data", table, *L4_RUN, "--output-dir", run]
    paused = Paused(tmp_path, L4, args, "checkpoint-begin:2", config="cpu_2proc.yaml")  # the first one complete
    paused.wait()
    paused.kill()
    first = course.latest_checkpoint(run / "checkpoints")
    assert first is not None and json.loads((first / course.CHECKPOINT_INFO).read_text())["step"] == 5

    out = run_to_end(tmp_path, L4, [*args, "--resume"], config="cpu_2proc.yaml")
    assert resumed_from(out, tmp_path) == str(first) and "epoch 1, step 10" in out  # within epoch 1 (14 batches)
    assert epoch_lines(out) == epoch_lines(full_out) and 1 in epoch_lines(out)
    assert_same_end(full, run)
    m, mfull = (json.loads((r / "metrics.json").read_text()) for r in (run, full))
    assert m["train_rows_per_process"] == mfull["train_rows_per_process"]
    assert_whole_run_throughput(run, sum(m["train_rows_per_process"]))


def test_lesson4_processes_draw_random_numbers_of_their_own(uninterrupted4):
    # the same initial weights, but not the same dropout masks: the torch random state each process saved
    # with a checkpoint (accelerate's random_states_<process>.pkl) differs
    latest = course.latest_checkpoint(uninterrupted4[0] / "checkpoints")
    states = [torch.load(latest / f"random_states_{i}.pkl", weights_only=False)["torch_manual_seed"] for i in (0, 1)]
    assert not torch.equal(states[0], states[1])


def test_lesson4_resumes_from_a_checkpoint_of_before_the_per_process_numbers(table, tmp_path):
    # a checkpoint written by lesson 4 before its TrainingState held each process's numbers and the run's
    # totals: resumed (its running loss is the main process's, as it was then), not a traceback
    run = tmp_path / "run"
    args = ["--data", table, *L4_RUN, "--output-dir", run]
    paused = Paused(tmp_path, L4, args, "checkpoint-begin:2")
    paused.wait()
    paused.kill()
    first = course.latest_checkpoint(run / "checkpoints")
    state_file = first / "custom_checkpoint_0.pkl"
    state = torch.load(state_file, weights_only=True)
    for key in ("per_process", "rows_trained", "train_seconds", "steps_seconds"):
        del state[key]
    torch.save(state, state_file)
    out = run_to_end(tmp_path, L4, [*args, "--resume"])
    assert resumed_from(out, tmp_path) == str(first)
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2  # (--max-steps 30, 27 steps an epoch)


@pytest.mark.parametrize("script, run_args, pause, resumed", [
    # --max-steps reached inside epoch 2, on a checkpoint step: that step, the epoch's last, is saved once, at the
    # epoch's end (the 7th save for lesson 4: 27 steps an epoch; the 6th for lesson 3); killed in that save, the run
    # goes on from the checkpoint before (lesson 4: the end of epoch 1; lesson 3: step 28, inside epoch 2). (It was
    # saved twice, inside the epoch and at its end, and a run killed in between resumed with no step left to run.)
    (L4, L4_RUN, "checkpoint-begin:7", "step_00000027: epoch 2, step 0"),
    (L3, [*L3_RUN, "--max-steps", "35"], "checkpoint-begin:6", "step_00000028: epoch 2, step 1"),
])
def test_a_run_killed_as_it_reached_max_steps_ends_its_last_epoch_when_resumed(table, tmp_path, script, run_args,
                                                                               pause, resumed):
    full = tmp_path / "full"
    full_out = run_to_end(tmp_path, script, ["--data", table, *run_args, "--output-dir", full])
    run = tmp_path / "run"
    args = ["--data", table, *run_args, "--output-dir", run]
    paused = Paused(tmp_path, script, args, pause)
    paused.wait()
    paused.kill()
    out = run_to_end(tmp_path, script, [*args, "--resume"])
    assert resumed in out.split("resumed from ")[1].splitlines()[0], out[-3000:]
    assert epoch_lines(out) == {2: epoch_lines(full_out)[2]}
    assert_same_end(full, run)


QUICK3 = ["--epochs", "2", "--hidden", "8", "--batch-size", "64", "--patience", "100"]


@pytest.fixture(scope="module")
def finished3(table, tmp_path_factory):
    """Lesson 3 with QUICK3 run to its end once (checkpoints step_14 and step_28): its run folder and its output.
    The tests that need such an earlier run in their run folder each take a copy (:func:`copy_run`) and change
    that; this one stays as the run left it."""
    d = tmp_path_factory.mktemp("l3quick")
    out = run_to_end(d, L3, ["--data", table, *QUICK3, "--output-dir", d / "run"])
    return d / "run", out


def copy_run(finished, dst: Path) -> str:
    """A copy at ``dst`` of the run folder of ``finished`` (:func:`finished3`'s) as the run left it: each file's
    bytes, mode and times, and the hard links between its files (a checkpoint's best_model.pt is the run's own
    file: a copy that split the two would make --resume put it back and remove the run's results). Returns the
    run's output."""
    src, out = finished
    inodes = {}
    for folder, dirs, files in os.walk(src):
        here = dst / Path(folder).relative_to(src)
        here.mkdir(parents=True)
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            assert not os.path.islink(os.path.join(folder, name)), "a link in a finished run: copy it as a link"
            if (st.st_dev, st.st_ino) in inodes:
                os.link(inodes[st.st_dev, st.st_ino], here / name)
            else:
                shutil.copy2(os.path.join(folder, name), here / name)
                inodes[st.st_dev, st.st_ino] = here / name
    return out


def test_a_run_resumed_after_a_bad_epoch_of_the_warm_up_stops_early_where_an_uninterrupted_one_does(table, tmp_path):
    # early stopping counts no epoch that ends before the one-cycle rate's peak (here 6 epochs of 14 steps: its
    # first 84 of 280 steps); the count is in the checkpoint and the peak comes from the options, so a run resumed
    # just after a bad epoch of the warm-up (epoch 4) stops, with --patience 1, where an uninterrupted run stops
    run_args = ["--epochs", "20", "--hidden", "32", "32", "--batch-size", "64", "--lr", "0.1", "--patience", "1"]
    full = tmp_path / "full"
    full_out = run_to_end(tmp_path, L3, ["--data", table, *run_args, "--output-dir", full])
    lines = epoch_lines(full_out)
    assert "*best*" not in full_out.split("epoch   4 ")[1].splitlines()[0], "epoch 4 was no bad epoch: tests nothing"
    assert len(lines) > 6 and "early stop: no improvement for 1 epochs" in full_out, full_out[-3000:]
    run = tmp_path / "run"
    args = ["--data", table, *run_args, "--output-dir", run]
    paused = Paused(tmp_path, L3, args, "checkpoint-begin:5")  # in the save after epoch 5
    paused.wait()
    paused.kill()
    out = run_to_end(tmp_path, L3, [*args, "--resume"])
    assert "step_00000056: epoch 5, step 0" in out, out[-3000:]  # from the end of epoch 4
    assert epoch_lines(out) == {e: v for e, v in lines.items() if e >= 5}
    assert_same_end(full, run)


def test_resume_refuses_a_checkpoint_made_with_other_data(tmp_path):
    # the same path, other rows: a run interrupted before its first checkpoint, resumed, went on from the
    # checkpoint of the run before it, trained on other data, and reported that run's model on these rows
    wideann.make_data(tmp_path / "a.csv", rows=400, cols=6, seed=1)
    wideann.make_data(tmp_path / "b.csv", rows=400, cols=6, seed=9, noise=4)
    table = tmp_path / "t.npy"
    wideann.normalize([tmp_path / "a.csv"], table)
    args = ["--data", table, *QUICK3, "--output-dir", tmp_path / "run"]
    run_to_end(tmp_path, L3, args)
    wideann.normalize([tmp_path / "b.csv"], table)  # regenerated from other data, same shape
    r = subprocess.run(_cmd(L3, [*args, "--resume"], None), cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                       text=True, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "was made with other data: --data " in lines[0] and f"{table} is not the file it was made with" in lines[0]
    # the same data, as they were: resumed (--quiet and --log-every change what a run shows, not what it computes)
    wideann.normalize([tmp_path / "a.csv"], table)
    assert "resumed from" in run_to_end(tmp_path, L3, [*args, "--resume", "--quiet", "--log-every", "3"])


def test_a_second_run_in_a_run_folder_in_use_is_refused_and_a_killed_runs_lock_holds_nothing(table, tmp_path):
    # a job submitted twice, or a --resume of a run that has not died: the two removed each other's half-written
    # checkpoints (one ended in a traceback) and could leave one's best_model.pt beside the other's results
    run = tmp_path / "run"
    args = ["--data", table, *L3_RUN, "--output-dir", run]
    paused = Paused(tmp_path, L3, args, "checkpoint-begin:2")
    pid = paused.wait()
    before = _complete(run)
    for again in (args, [*args, "--resume"]):
        r = subprocess.run(_cmd(L3, again, None), cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr[-3000:]
        assert f"{run}: another run is writing in this folder (process {pid} on " in r.stderr, r.stderr
        assert "epoch" not in r.stdout and "resumed" not in r.stdout
    assert _complete(run) == before
    paused.kill()  # the lock goes with the process: the file it leaves locks nothing
    assert (run / runlock.LOCK_NAME).exists()
    out = run_to_end(tmp_path, L3, [*args, "--resume"])
    assert "resumed from" in out and not (run / runlock.LOCK_NAME).exists()


def test_the_run_folder_lock_file_of_another_users_run_is_taken_over_once_it_has_died(table, tmp_path):
    # a folder shared with another user, whose run was killed there: its lock file (theirs, 0644) could not be
    # opened to be written, and every later run was refused with "Permission denied", though no one held it
    import fcntl

    if os.geteuid() != 0 or not shutil.which("capsh"):
        pytest.skip("needs root (a file of another user) and capsh (to run as one bound by file permissions)")
    run = tmp_path / "run"
    run.mkdir()
    lock = run / runlock.LOCK_NAME
    lock.write_text("process 1 on elsewhere\n")
    os.chown(lock, 65534, 65534)
    cmd = _cmd(L3, ["--data", table, *QUICK3, "--output-dir", run], None)
    bound = ["capsh", "--drop=cap_dac_override,cap_dac_read_search,cap_fowner", "--", "-c", shlex.join(cmd)]
    with open(lock) as held:  # their run, alive: said as such, not as "permission denied"
        fcntl.flock(held, fcntl.LOCK_EX)
        r = subprocess.run(bound, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr[-3000:]
    assert f"{run}: another run is writing in this folder (process 1 on elsewhere holds " in r.stderr, r.stderr
    r = subprocess.run(bound, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]  # their run, killed: its lock file taken over, and gone at the end
    assert "test RMSE" in r.stdout and not lock.exists()


SAVES_A_STEP_TWICE = """
import sys
from types import SimpleNamespace

import torch
from accelerate import Accelerator

from wideann import course


def main():
    accelerator = Accelerator(cpu=True)
    accelerator.prepare(torch.nn.Linear(4, 1))
    checkpoints = course.Checkpoints(sys.argv[1], SimpleNamespace(resume=None, lr=0.1))
    checkpoints.save(accelerator, 27)
    checkpoints.save(accelerator, 27)  # the same step again: swapped in


course.run(main)
"""


def test_a_step_saved_again_is_swapped_in_never_missing_and_a_ctrl_c_names_no_earlier_runs_checkpoint(finished3,
                                                                                                      tmp_path):
    # the same step saved again (the end of an epoch did, after --checkpoint-every had just saved its last step). The
    # older copy went out first (and was deleted) before the new one came in: a Ctrl-C or a kill between left --resume
    # the checkpoint before, or an earlier run's, and the Ctrl-C named that one. Now the two are swapped at once.
    run = tmp_path / "run"
    copy_run(finished3, run)  # an earlier run: step_14, step_28
    program = tmp_path / "saves_a_step_twice.py"
    program.write_text(SAVES_A_STEP_TWICE)
    ckpts = run / "checkpoints"
    paused = Paused(tmp_path, program, [ckpts], "checkpoint-swapped")
    pid = paused.wait()
    info = json.loads((ckpts / "step_00000027" / course.CHECKPOINT_INFO).read_text())
    old = json.loads((ckpts / ".step_00000027.tmp" / course.CHECKPOINT_INFO).read_text())  # the first copy, going
    assert info["step"] == old["step"] == 27 and info["completed_ns"] > old["completed_ns"]
    assert course.latest_checkpoint(ckpts).name == "step_00000027"  # (by completion: the earlier run's 28 is older)
    os.kill(pid, signal.SIGINT)
    code, out = paused.go_on(pid)
    assert code == 130 and "saves_a_step_twice.py: interrupted" in out, out[-3000:]
    assert "its newest checkpoint is " in out and "step_00000027: run the same command with --resume" in out, \
        out[-3000:]
    assert "step_00000028" not in out, out[-3000:]


def test_a_ctrl_c_hint_names_the_checkpoint_to_resume_from_as_bash_reads_it(table, tmp_path):
    # a run resumed from a checkpoint named on the command line, interrupted once it has saved one of its own: the
    # line says to run the same command with --resume NEWEST. The name was shown as it is: in a folder with a space
    # and a quote, pasted into bash, it was three words, one quote left open. Now quoted for bash (shell_path).
    run = tmp_path / "it's my run"
    args = ["--data", table, *QUICK3, "--checkpoint-every", "7", "--output-dir", run]
    first = Paused(tmp_path, L3, args, "checkpoint-begin:2")  # step 7 saved
    first.wait()
    first.kill()
    ckpts = run / "checkpoints"
    assert course.latest_checkpoint(ckpts).name == "step_00000007"
    paused = Paused(tmp_path, L3, [*args, "--resume", ckpts / "step_00000007"], "checkpoint-begin:2")  # 14 saved
    pid = paused.wait()
    os.kill(pid, signal.SIGINT)
    code, out = paused.go_on(pid)
    assert code == 130, out[-3000:]
    (line,) = [ln for ln in out.splitlines() if ln.startswith("3_out_of_core_ann.py: interrupted")]
    m = re.fullmatch(r".*: run the same command with --resume (.*) \(in place of --resume (.*)\) to continue from "
                     r"it \(the same batches, the same final model\)", line)
    assert m, line
    newest = course.latest_checkpoint(ckpts)
    for pasted, folder in zip(m.groups(), (newest, ckpts / "step_00000007")):
        assert _bash_words(pasted, tmp_path) == [os.fsencode(folder.relative_to(tmp_path))], line
    assert newest.name != "step_00000007" and (newest / course.CHECKPOINT_INFO).is_file(), newest


def test_a_resumed_run_logs_each_epoch_once_with_its_throughput(table, tmp_path):
    # the last step of an epoch was saved by --checkpoint-every, then again after the epoch. Killed in the second save,
    # after the epoch was logged, the run resumed from the first: an epoch of no steps left, logged to TensorBoard a
    # second time at the same step, as 0 samples/s. Now a step that ends an epoch is saved once, after the epoch.
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = ["--data", table, *QUICK3, "--checkpoint-every", "7", "--log-with", "tensorboard"]  # 14 steps an epoch
    for n in (2, 3):  # (the second or third save: the end of the first epoch, and the one before it)
        run = tmp_path / f"run{n}"
        paused = Paused(tmp_path, L3, [*args, "--output-dir", run], f"checkpoint-begin:{n}")
        paused.wait()
        paused.kill()
        assert "epoch   1 " in paused.log()
        run_to_end(tmp_path, L3, [*args, "--output-dir", run, "--resume"])
        curves = EventAccumulator(str(run / "3_out_of_core_ann"))
        curves.Reload()
        logged = [(e.step, e.value) for e in curves.Scalars("epoch/samples_per_second")]
        assert [step for step, _ in logged] == [14, 28] and all(v > 0 for _, v in logged), (n, logged)
        assert [e.value for e in curves.Scalars("epoch")] == [1, 2], n


def test_a_new_run_stopped_before_its_first_checkpoint_is_not_resumed_from_an_earlier_runs(table, finished3,
                                                                                          tmp_path):
    # a run started without --resume where an earlier run had left its checkpoints, killed before it saved one of its
    # own: --resume took the earlier run's newest and went on with that run (its options and data were the same, all
    # that --resume checked), or refused it for options "of the interrupted run" that the interrupted run had not had.
    # (The run folder's name has a space and a quote: the --resume of the line, pasted into bash, names the checkpoint.)
    run = tmp_path / "it's a run"
    args = ["--data", table, *QUICK3, "--output-dir", run]
    copy_run(finished3, run)
    earlier = course.latest_checkpoint(run / "checkpoints")
    paused = Paused(tmp_path, L3, args, "checkpoint-begin:1")
    paused.wait()
    paused.kill()
    r = subprocess.run(_cmd(L3, [*args, "--resume"], None), cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                       text=True, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-3000:]
    assert (f"--resume: the newest checkpoint in {run / 'checkpoints'}, {earlier.name}, is an earlier run's: the run "
            "started here after it without --resume ended before it saved a checkpoint of its own; run without "
            "--resume to start again (or, to go on with that earlier run, --resume ") in lines[0], lines[0]
    assert _bash_words(lines[0].split("that earlier run, --resume ")[1].removesuffix(")"), tmp_path) == [
        os.fsencode(earlier.relative_to(tmp_path))], lines[0]
    assert "resumed" not in r.stdout and course.latest_checkpoint(run / "checkpoints") == earlier
    # named, the earlier run's checkpoint is taken: that run goes on, and is the folder's run again
    assert resumed_from(run_to_end(tmp_path, L3, [*args, "--resume", earlier]), tmp_path) == str(earlier)
    assert "resumed from" in run_to_end(tmp_path, L3, [*args, "--resume"])
    # a new run that has saved a checkpoint of its own is resumed from it, and no longer lists the earlier run's
    paused = Paused(tmp_path, L3, [*args, "--checkpoint-every", "3"], "checkpoint-begin:2")
    paused.wait()
    paused.kill()
    out = run_to_end(tmp_path, L3, [*args, "--checkpoint-every", "3", "--resume"])
    assert resumed_from(out, tmp_path).endswith("step_00000003")
    assert not (run / "checkpoints" / ".earlier-run.json").exists()


def test_a_run_in_the_folder_of_a_running_runs_curves_is_refused(table, tmp_path):
    # --output-dir x --log-with tensorboard writes its curves into x/3_out_of_core_ann, which a run given that folder
    # (--output-dir x/3_out_of_core_ann) took for its own: each locked its run folder only, and both wrote into it
    outer = tmp_path / "x"
    paused = Paused(tmp_path, L3, ["--data", table, *QUICK3, "--log-with", "tensorboard", "--output-dir", outer],
                    "checkpoint-begin:1")
    pid = paused.wait()
    curves = outer / "3_out_of_core_ann"
    inner = ["--data", table, *QUICK3, "--output-dir", curves]
    r = subprocess.run(_cmd(L3, inner, None), cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr[-3000:]
    assert f"--output-dir {curves}: this folder holds TensorBoard curves" in r.stderr
    # before its curves are written (its events file moved away a moment): its lock on their folder refuses the run
    events = next(curves.glob("events.out.tfevents.*"))
    events.rename(tmp_path / events.name)
    r = subprocess.run(_cmd(L3, inner, None), cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                       timeout=300)
    (tmp_path / events.name).rename(events)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr[-3000:]
    assert f"{curves}: another run is writing in this folder (process {pid} on " in r.stderr, r.stderr
    assert "epoch" not in r.stdout and not (curves / "metrics.json").exists()
    paused.kill()


def test_swap_folders_never_leaves_the_place_empty(tmp_path, monkeypatch):
    from wideann.course import checkpoints

    def folder(name, text):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text(text)
        return tmp_path / name

    for exchange in (True, False):  # renameat2(RENAME_EXCHANGE), and two renames where the system has none
        if not exchange:
            monkeypatch.setattr(checkpoints, "_renameat2", lambda: None)
        elif checkpoints._renameat2() is None:
            continue
        there, new = folder(f"step_{exchange}", "old"), folder(f".step_{exchange}.tmp", "new")
        old = checkpoints.swap_folders(new, there)
        assert (there / "f").read_text() == "new" and (old / "f").read_text() == "old"
        assert sorted(p.name for p in tmp_path.iterdir() if str(exchange) in p.name) == sorted([there.name, old.name])


def test_a_lock_file_of_another_user_that_cannot_be_locked_read_only_is_refused_not_ignored(tmp_path, monkeypatch):
    # NFS takes an exclusive flock only on a file opened to be written (EBADF on one opened to be read): another
    # user's lock file there must not let a run go ahead unlocked beside theirs, which may be alive
    import errno
    import fcntl

    lock = tmp_path / runlock.LOCK_NAME
    lock.write_text("process 1 on elsewhere\n")
    real_open, real_flock = os.open, fcntl.flock

    def theirs(path, flags, *a):
        if os.fspath(path) == os.fspath(lock) and flags & os.O_RDWR:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, *a)

    def nfs(fd, op):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real_flock(fd, op)

    monkeypatch.setattr(runlock.os, "open", theirs)
    monkeypatch.setattr(runlock.fcntl, "flock", nfs)
    runlock.lessons_lock_their_run_folder(True)
    try:
        with pytest.raises(course.LessonError, match="the lock file of another user's run .process 1 on elsewhere."):
            runlock.hold_the_run_folder(tmp_path)
        assert not runlock._held
    finally:
        runlock.release_run_folders()
        runlock.lessons_lock_their_run_folder(False)


def _valid_utf8_json(path: Path):
    """A JSON file every reader takes: UTF-8, and no lone surrogate (``"\\udcff"``: jq shows U+FFFD) in it."""
    d = json.loads(path.read_bytes().decode("utf-8"))
    json.dumps(d, ensure_ascii=False).encode("utf-8")  # (UnicodeEncodeError on a lone surrogate)
    return d


@pytest.mark.parametrize("lesson", [L3, L4])
def test_a_data_file_whose_name_is_not_utf8_is_kept_exactly_in_valid_utf8_json(tmp_path, lesson):
    # model.json, checkpoint.json and the table's .sources.json held the name as "\udcff"; now readable text
    # (\xff) with its exact bytes beside it, read back exactly: the table is reused, --resume accepted, predict works
    from wideann import modelcard

    raw = tmp_path / os.fsdecode(b"t\xff.csv")
    wideann.make_data(raw, rows=300, cols=6, seed=1)
    run = tmp_path / "run"
    args = ["--data", raw, *QUICK3, "--output-dir", run]
    run_to_end(tmp_path, lesson, args)
    shown_as, exact = f"{tmp_path}/t\\xff.csv", f"{tmp_path}/t%FF.csv"
    card = _valid_utf8_json(run / "model.json")
    assert card["options"]["data"] == [shown_as] and card["option_bytes"] == {"data": [exact]}, card
    assert modelcard.read(run)["options"]["data"] == [str(raw)]
    step = sorted((run / "checkpoints").glob("step_*"))[-1]
    info = _valid_utf8_json(step / course.CHECKPOINT_INFO)
    assert info["options"]["data"] == [shown_as] and info["option_bytes"]["data"] == [exact], info
    assert info["data"]["--data"][0][0] == "t\\xff.csv" and info["data_bytes"] == {"--data": [["t%FF.csv", None, None]]}
    sources = run / "data" / os.fsdecode(b"t\xff.npy.sources.json")
    made_from = _valid_utf8_json(sources)
    assert made_from["sources"][0][0] == shown_as and made_from["source_bytes"][0][0] == exact, made_from
    # read back exactly: the table normalized earlier is used, and the run resumed with the same --data
    out = run_to_end(tmp_path, lesson, [*args, "--resume"])
    assert "normalized from" in out and "\nnormalizing with" not in out, out
    if lesson == L4:  # (the rest is lesson 3's code too, and each lesson run here costs seconds: lesson 3 alone)
        return
    r = subprocess.run([sys.executable, "-m", "wideann", "predict", run, raw, "-o", tmp_path / "p.csv"],
                       cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and (tmp_path / "p.csv").is_file(), r.stderr
    # files written before, with the surrogate, are read as they were
    from wideann._exact_names import exact_fields
    from wideann.course.checkpoints import EXACT_NAMES

    step = sorted((run / "checkpoints").glob("step_*"))[-1]
    old = exact_fields(json.loads((step / course.CHECKPOINT_INFO).read_text()), EXACT_NAMES)
    assert "option_bytes" not in old and old["options"]["data"] == [str(raw)]
    (step / course.CHECKPOINT_INFO).write_text(json.dumps(old))
    assert "\\udcff" in (step / course.CHECKPOINT_INFO).read_text()
    sources.write_text(json.dumps([[str(raw), *made_from["sources"][0][1:]]]))
    out = run_to_end(tmp_path, L3, [*args, "--resume"])
    assert "normalized from" in out and "\nnormalizing with" not in out, out
    # exact names that are not those of the text beside them (an edit): refused in one line, not guessed
    step = sorted((run / "checkpoints").glob("step_*"))[-1]
    info = json.loads((step / course.CHECKPOINT_INFO).read_text())
    info["option_bytes"] = {"data": [f"{tmp_path}/other%FF.csv"]}
    (step / course.CHECKPOINT_INFO).write_text(json.dumps(info))
    r = subprocess.run(_cmd(L3, [*args, "--resume"], None), cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                       text=True, errors="backslashreplace", timeout=300)
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "checkpoint.json: \"option_bytes\" does not match \"options\"" \
        in lines[0], r.stderr


def test_a_run_folder_removed_between_its_making_and_the_lock_is_made_again(tmp_path, monkeypatch):
    # a run refused in this folder removes the folder it made, left empty, just as another run starts there: made
    # (there already) by the second run, gone as it opens its lock file; the open found no folder (a traceback)
    run = tmp_path / "new" / "run"
    real_open = os.open
    removed = []

    def refused_meanwhile(path, flags, *a):  # the other run's rmdir, landing between make_folder and the open
        if os.fspath(path) == os.fspath(run / runlock.LOCK_NAME) and not removed:
            run.rmdir()
            run.parent.rmdir()
            removed.append(run)
        return real_open(path, flags, *a)

    monkeypatch.setattr(runlock.os, "open", refused_meanwhile)
    runlock.lessons_lock_their_run_folder(True)
    try:
        runlock.make_folder(run)
        runlock.hold_the_run_folder(run)
        assert removed and (run / runlock.LOCK_NAME).is_file()
        assert os.path.realpath(run) in runlock._held
    finally:
        runlock.release_run_folders()
        runlock.lessons_lock_their_run_folder(False)
    assert not (run / runlock.LOCK_NAME).exists()


def test_prepare_data_outside_a_lesson_locks_nothing(table, tmp_path):
    # a test or a notebook calling it would hold the folder until its process ends, refusing the lessons run there
    from types import SimpleNamespace

    run = tmp_path / "run"
    course.prepare_data(SimpleNamespace(data=[str(table)], test_data=None, stats=None, output_dir=str(run)))
    assert not (run / runlock.LOCK_NAME).exists()
    assert "resumed" not in run_to_end(tmp_path, L3, ["--data", table, *QUICK3, "--output-dir", run])


def test_a_resume_that_puts_back_an_older_model_removes_the_later_models_results(tmp_path, table, finished3):
    # resumed from the first epoch's checkpoint of a finished run and stopped: the older best model was put back
    # beside the results of the later one
    run = tmp_path / "run"
    args = ["--data", table, *QUICK3, "--output-dir", run]
    copy_run(finished3, run)
    first = sorted((run / "checkpoints").glob("step_*"))[0]
    older = (first / "best_model.pt").read_bytes()
    assert older != (run / "best_model.pt").read_bytes()  # epoch 2 was better
    # stopped inside epoch 2, before it saves a model of its own (--checkpoint-every may change on --resume)
    paused = Paused(tmp_path, L3, [*args, "--resume", first, "--checkpoint-every", "3"], "checkpoint-begin:1")
    paused.wait()
    paused.kill()
    assert "removed the results of an earlier run" in paused.log()
    assert (run / "best_model.pt").read_bytes() == older
    assert not [n for n in ("metrics.json", "predictions.csv", "predicted_vs_actual.png") if (run / n).exists()]


def test_a_run_killed_before_its_first_model_is_written_leaves_the_earlier_model_without_its_results(tmp_path, table,
                                                                                                    finished3):
    # the results went as the new run started training (with the earlier run's curves: the folder's curves and
    # results are always one run's); the earlier model stays until the new run saves its own
    run = tmp_path / "run"
    copy_run(finished3, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    paused = Paused(tmp_path, L3, ["--data", table, *QUICK3, "--hidden", "16", "--output-dir", run], "model-begin:1")
    paused.wait()
    paused.kill()
    assert "removed the results of an earlier run" in paused.log()
    results = {"metrics.json", "predictions.csv", "loss.png", "predicted_vs_actual.png"}
    left = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    left.pop(runlock.LOCK_NAME)  # (the killed run's lock file: it locks nothing, the next run takes it over)
    assert left == {
        k: v for k, v in before.items() if k not in results}


def test_a_refused_resume_leaves_the_finished_run_whole(tmp_path, table, finished3):
    run = tmp_path / "run"
    copy_run(finished3, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert {"metrics.json", "predictions.csv", "loss.png", "predicted_vs_actual.png"} <= set(before)
    r = subprocess.run(_cmd(L3, ["--data", table, *QUICK3, "--epochs", "3", "--output-dir", run, "--resume"], None),
                       cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "was made with other options: --epochs 2 (now: 3)" in r.stderr, r.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_rerun_stopped_before_its_end_leaves_no_results_of_the_run_before(table, finished3, tmp_path):
    run = tmp_path / "run"
    first = copy_run(finished3, run)  # (its output: a first run in its folder)
    assert "removed the results" not in first
    results = ["metrics.json", "predictions.csv", "loss.png", "predicted_vs_actual.png"]
    assert all((run / name).is_file() for name in results)
    # another run in the same folder, stopped as its predictions begin: its model, no results of the first
    args = ["--data", table, *QUICK3, "--hidden", "16", "--output-dir", run]
    paused = Paused(tmp_path, L3, args, "predictions-begin:1")
    paused.wait()
    paused.kill()
    assert "removed the results of an earlier run" in paused.log()
    assert not [name for name in results if (run / name).exists() and name != "loss.png"]  # (drawn by the new run)
    assert json.loads((run / "model.json").read_text())["options"]["hidden"] == [16]
    # what a kill inside the writes of the predictions leaves (the engine's and the package's temporary
    # names) goes with --resume
    left = [run / ".predictions.csv.Ab3xYz.tmp", run / ".predictions.csv.ab3_xyz9.tmp.npy"]
    for f in left:
        f.write_bytes(b"half")
    run_to_end(tmp_path, L3, [*args, "--resume"])
    assert not [f for f in left if f.exists()] and all((run / name).is_file() for name in results)


# ---- a full disk ----------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs; skipped where mounting is not allowed."""
    yield from mounted_tmpfs(tmp_path, "2m", "disk")


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 16, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return filler


def one_line(code: int, out: str, says: str) -> str:
    lines = [ln for ln in out.splitlines() if ": error: " in ln]
    assert code == 1 and "Traceback" not in out, f"exit {code}:\n{out[-4000:]}"
    assert len(lines) == 1 and says in lines[0], out[-4000:]
    return lines[0]


@pytest.mark.parametrize("point, says", [
    ("checkpoint-begin:3", "the disk filled up while writing checkpoint step_00000021"),
    ("model-begin:2", "the disk filled up while writing the model best_model.pt"),
    ("predictions-begin:1", "the disk filled up while writing the predictions predictions.csv"),
])
def test_a_disk_that_fills_up_during_a_write(table, uninterrupted3, small_disk, tmp_path, point, says):
    """Paused just after the free-space check, the disk filled, then on: the write itself fails."""
    run = small_disk / "run"
    args = ["--data", table, *L3_RUN, "--output-dir", run]
    paused = Paused(tmp_path, L3, args, point)
    pid = paused.wait()
    complete = _complete(run)
    best = (run / "best_model.pt").read_bytes() if (run / "best_model.pt").exists() else None
    filler = fill(small_disk)
    code, out = paused.go_on(pid)
    line = one_line(code, out, says)
    assert "free some space and run again" in line
    assert _complete(run) == complete, "a complete checkpoint was changed"
    assert not list((run / "checkpoints").glob(".*")) and not list(run.glob(".*")), "half-written files left"
    if best is not None:
        assert (run / "best_model.pt").read_bytes() == best
    assert not (run / "predictions.csv").exists()

    filler.unlink()
    assert resumed_from(run_to_end(tmp_path, L3, [*args, "--resume"]), tmp_path)
    assert_same_end(uninterrupted3, run)


def test_a_disk_that_fills_up_on_two_processes_is_said_once(table, small_disk, tmp_path):
    """Lesson 4 on two processes: every process learns that the checkpoint failed, one line is said."""
    run = small_disk / "run"
    paused = Paused(tmp_path, L4, ["--data", table, *L4_RUN, "--output-dir", run], "checkpoint-begin:2",
                    config="cpu_2proc.yaml")
    pid = paused.wait()
    complete = _complete(run)
    fill(small_disk)
    code, out = paused.go_on(pid)
    assert code == 1
    lines = [ln for ln in out.splitlines() if ": error: " in ln]
    assert len(lines) == 1 and "the disk filled up while writing checkpoint step_00000010" in lines[0], out[-4000:]
    assert "[rank" not in out and str(SCRIPTS) + '", line' not in out, out[-4000:]
    assert _complete(run) == complete and not list((run / "checkpoints").glob(".*"))


def test_too_little_space_is_refused_before_the_write(table, tiny_fs, tmp_path):
    """A 64 KiB disk: the first checkpoint does not fit, and the lesson says so before writing it."""
    run = tiny_fs / "run"
    r = subprocess.run(_cmd(L3, ["--data", table, *L3_RUN, "--output-dir", run], None), cwd=tmp_path,
                       env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    line = one_line(r.returncode, r.stderr, "not enough free space for checkpoint step_00000007: needs")
    assert str(run / "checkpoints") in line and "free some space and run again" in line
    assert not list((run / "checkpoints").iterdir())


# ---- weights only -------------------------------------------------------------------------------
class _RunsCode:
    """Unpickling this creates a file: what a checkpoint must never be able to do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _State:
    def __init__(self):
        self.epoch, self.history = 1, []

    def state_dict(self):
        return dict(vars(self))

    def load_state_dict(self, state):
        vars(self).update(state)


def _args(**kw):
    from types import SimpleNamespace

    return SimpleNamespace(**{"lr": 0.1, "resume": None, "output_dir": "x", "data": None, **kw})


def _fresh(folder, args=None, files=(), seed=0):
    """What a lesson has when it saves or resumes: a real Accelerator, a model, optimizer and schedule
    after one step, a registered training state, and the run's Checkpoints."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    model, opt, sched = accelerator.prepare(model, opt, sched)
    model(torch.ones(2, 4)).sum().backward()
    opt.step()
    sched.step()
    state = _State()
    accelerator.register_for_checkpointing(state)
    return accelerator, model, state, course.Checkpoints(folder, args or _args(), files=files)


def test_a_checkpoint_comes_back_exactly(tmp_path):
    best_path = tmp_path / "best_model.pt"
    acc, model, state, ckpts = _fresh(tmp_path / "c", files=[best_path], seed=0)
    state.epoch, state.history = 7, [{"epoch": 1, "val_loss": float("inf")}]
    course.save_model(model.state_dict(), best_path)
    ckpts.save(acc, 5)
    want = {k: v.clone() for k, v in model.state_dict().items()}
    best = best_path.read_bytes()
    course.save_model({"w": torch.ones(1)}, best_path)  # written after the checkpoint

    acc, model, state, ckpts = _fresh(tmp_path / "c", files=[best_path], seed=1)
    assert not torch.equal(model.state_dict()["weight"], want["weight"])
    assert ckpts.load(acc).name == "step_00000005"
    assert all(torch.equal(model.state_dict()[k], want[k]) for k in want)
    assert state.epoch == 7 and state.history == [{"epoch": 1, "val_loss": float("inf")}]
    assert best_path.read_bytes() == best, "best_model.pt is not the one of the checkpoint's time"
    # (what a killed write left beside it goes as a lesson locks its run folder, resumed or not:
    # test_killed_writes.py)


@pytest.mark.parametrize("victim", ["custom_checkpoint_0.pkl", "optimizer.bin", "scheduler.bin",
                                    "random_states_0.pkl", "best_model.pt"])
def test_a_checkpoint_file_that_would_run_code_is_refused(tmp_path, victim, monkeypatch):
    folder, best_path = tmp_path / "c", tmp_path / "best_model.pt"
    acc, model, _, ckpts = _fresh(folder, files=[best_path])
    course.save_model(model.state_dict(), best_path)
    step = ckpts.save(acc, 3)
    marker = tmp_path / "code-ran"
    (step / victim).unlink()
    with open(step / victim, "wb") as f:  # tensors and, inside, a call
        pickle.dump({"weights": torch.zeros(2), "payload": _RunsCode(marker)}, f, protocol=2)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # even where a user asked for unsafe loads

    acc, _, _, ckpts = _fresh(folder, files=[best_path])
    with pytest.raises(course.LessonError, match=f"{victim}: refused: .* could run code"):
        ckpts.load(acc)
    assert not marker.exists(), "code in a checkpoint ran"


def test_accelerate_alone_would_run_the_code_of_a_registered_object(tmp_path):
    """Why the lessons do not leave loading to accelerate: it loads ``register_for_checkpointing``
    objects with ``weights_only=False`` (this test fails the day it stops doing so)."""
    from accelerate.checkpointing import load_custom_state

    marker = tmp_path / "code-ran"
    with open(tmp_path / "custom_checkpoint_0.pkl", "wb") as f:
        pickle.dump(_RunsCode(marker), f)
    with pytest.raises(Exception):
        load_custom_state(_State(), str(tmp_path), 0)  # not a state dict; the code ran before that
    assert marker.exists()


def test_the_lessons_load_models_weights_only():
    import ast

    for name in ("2_deeper_ann.py", L3, L4):
        tree = ast.parse((SCRIPTS / name).read_text())
        loads = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and ast.unparse(c.func) == "torch.load"]
        assert loads, name
        for c in loads:
            assert any(k.arg == "weights_only" and ast.unparse(k.value) == "True" for k in c.keywords), \
                f"{name}: {ast.unparse(c)}"


# ---- the checkpoint folder ------------------------------------------------------------------------
def test_only_complete_checkpoints_count_and_the_newest_is_never_removed(tmp_path):
    folder = tmp_path / "checkpoints"
    acc, _, _, ckpts = _fresh(folder)
    ckpts.save(acc, 5250)  # left by an earlier, longer run
    old = folder / "step_00005250"
    info = json.loads((old / "checkpoint.json").read_text())
    info["completed_ns"] = 1
    (old / "checkpoint.json").write_text(json.dumps(info))
    (folder / ".step_00000030.tmp").mkdir()           # a save that was killed half-way
    (folder / "step_00000040").mkdir()                # no checkpoint.json: never complete
    (folder / ".trash.step_00000001.123").mkdir()     # a removal that was killed half-way
    assert course.latest_checkpoint(folder) == old

    ckpts.save(acc, 10)
    assert course.latest_checkpoint(folder).name == "step_00000010"
    assert not (folder / ".step_00000030.tmp").exists() and not (folder / ".trash.step_00000001.123").exists()
    ckpts.save(acc, 20)
    ckpts.save(acc, 20)  # the same step again (the end of an epoch): replaced
    assert sorted(p.name for p in folder.glob("step_*")) == ["step_00000010", "step_00000020", "step_00000040"]
    assert course.latest_checkpoint(folder).name == "step_00000020"
    ckpts.save(acc, 30)
    assert sorted(p.name for p in folder.glob("step_*") if (p / "checkpoint.json").exists()) == \
        ["step_00000020", "step_00000030"]


def test_a_resume_with_other_options_is_refused_and_paths_compare_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.npy").write_bytes(b"")
    folder = tmp_path / "checkpoints"
    acc, _, _, ckpts = _fresh(folder, _args(data="t.npy", checkpoint_every=5))
    ckpts.save(acc, 1)
    # the same table named another way, another checkpoint period: the same run
    acc, _, _, ckpts = _fresh(folder, _args(data=str(tmp_path / "t.npy"), checkpoint_every=9))
    ckpts.load(acc)
    acc, _, _, ckpts = _fresh(folder, _args(data="t.npy", checkpoint_every=5, lr=0.5, hidden=[3]))
    with pytest.raises(course.UsageError, match=r"--hidden not given \(now: 3\), --lr 0.1 \(now: 0.5\)"):
        ckpts.load(acc)


def test_a_resume_on_another_number_of_processes_says_so_before_the_options_chosen_for_it(tmp_path):
    # --batch-size left out is chosen per process (lesson 4): resumed on another number of processes it differs,
    # and the line named the batch size the user never gave instead of the number of processes
    folder = tmp_path / "checkpoints"
    acc, _, _, ckpts = _fresh(folder, _args(batch_size=32))
    step = ckpts.save(acc, 1)
    info = json.loads((step / course.CHECKPOINT_INFO).read_text())
    info["processes"] = 2
    (step / course.CHECKPOINT_INFO).write_text(json.dumps(info))
    acc, _, _, ckpts = _fresh(folder, _args(batch_size=64))
    with pytest.raises(course.UsageError, match=r"was made by 2 process\(es\), this run has 1: launch it as"):
        ckpts.load(acc)


def test_a_resume_in_another_mixed_precision_is_refused(tmp_path):
    # the precision is not only an option: it comes from the launcher's config and the device too (bf16 on a GPU
    # that has it, none on a CPU), so a run resumed elsewhere went on in another one without a word, and its
    # metrics.json named the last precision as the whole run's
    folder = tmp_path / "checkpoints"
    acc, _, _, ckpts = _fresh(folder)
    step = ckpts.save(acc, 1)
    info = json.loads((step / course.CHECKPOINT_INFO).read_text())
    assert info["mixed_precision"] == "no"
    info["mixed_precision"] = "bf16"  # as on a GPU
    (step / course.CHECKPOINT_INFO).write_text(json.dumps(info))
    acc, _, _, ckpts = _fresh(folder)
    with pytest.raises(course.UsageError, match=r"was trained in mixed precision bf16, this run would train in no"):
        ckpts.load(acc)
    del info["mixed_precision"]  # a checkpoint made before it was recorded: the precision cannot be checked
    (step / course.CHECKPOINT_INFO).write_text(json.dumps(info))
    acc, _, _, ckpts = _fresh(folder)
    assert ckpts.load(acc) == step


def test_a_model_saved_twice_is_the_same_bytes(tmp_path):
    """model.json records the SHA-256 of model.pt: equal weights must give equal bytes. Given a path,
    torch.save named the archive's records after it, the random temporary name the model is written under."""
    torch.manual_seed(0)
    state = torch.nn.Linear(5, 3).state_dict()
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        course.save_model(state, tmp_path / run / "model.pt")
    a, b = ((tmp_path / run / "model.pt").read_bytes() for run in ("a", "b"))
    assert a == b
    assert torch.equal(torch.load(tmp_path / "a" / "model.pt", weights_only=True)["weight"], state["weight"])


def test_a_resume_from_another_folders_checkpoint_leaves_this_folders_earlier_run_listed(table, finished3, tmp_path):
    # --resume other/checkpoints/step_N forgot .earlier-run.json of this run folder: killed before its first
    # checkpoint, a bare --resume then went on, silently, with the earlier run whose results a new run had cleared
    run, other = tmp_path / "run", tmp_path / "other"
    args = ["--data", table, *QUICK3, "--output-dir", run]
    copy_run(finished3, run)
    earlier = course.latest_checkpoint(run / "checkpoints")
    first = sorted((run / "checkpoints").glob("step_*"))[0]  # (of the first epoch: a run resumed from it saves one)
    theirs = other / "checkpoints" / first.name
    shutil.copytree(first, theirs)
    paused = Paused(tmp_path, L3, args, "checkpoint-begin:1")  # a new run, killed before its first checkpoint
    paused.wait()
    paused.kill()
    assert (run / "checkpoints" / ".earlier-run.json").is_file()
    paused = Paused(tmp_path, L3, [*args, "--resume", theirs], "checkpoint-begin:1")
    paused.wait()
    paused.kill()
    assert resumed_from(paused.log(), tmp_path) == str(theirs)
    assert (run / "checkpoints" / ".earlier-run.json").is_file()
    r = subprocess.run(_cmd(L3, [*args, "--resume"], None), cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1 and f"{earlier.name}, is an earlier run's" in r.stderr, r.stderr[-3000:]
    assert "resumed" not in r.stdout


def test_the_temporary_file_of_a_killed_earlier_run_json_write_goes_at_the_resume_and_at_the_next_save(table,
                                                                                                       finished3,
                                                                                                       tmp_path):
    # a kill -9 as a new run writes .earlier-run.json leaves its temporary file in the checkpoints folder, which
    # neither --resume nor the next save removed (they removed those of the run's files and of killed saves)
    run = tmp_path / "run"
    args = ["--data", table, *QUICK3, "--output-dir", run]
    copy_run(finished3, run)
    left = run / "checkpoints" / ".earlier-run.json.k1ll3d_9.tmp"
    left.write_text('{"format": "wideann-earl')
    assert "resumed from" in run_to_end(tmp_path, L3, [*args, "--resume"])
    assert not left.exists()
    left.write_text('{"format": "wideann-earl')
    paused = Paused(tmp_path, L3, args, "checkpoint-begin:1")
    paused.wait()
    paused.kill()
    assert not left.exists()
    assert (run / "checkpoints" / ".earlier-run.json").is_file()  # (the new run's own, written whole)


def test_a_new_run_removes_what_killed_saves_left_as_it_starts(table, finished3, tmp_path):
    # what a killed save leaves in the checkpoints folder (a checkpoint's size) went only at the next save or
    # --resume: a new run killed before its first save left it there. Only those go: never a complete checkpoint,
    # never a file of the user's
    run = tmp_path / "run"
    ckpts = run / "checkpoints"
    args = ["--data", table, *QUICK3, "--output-dir", run]
    copy_run(finished3, run)
    paused = Paused(tmp_path, L3, args, "checkpoint-written:1")  # a new run, killed inside its first save
    paused.wait()
    paused.kill()
    left = list(ckpts.glob(".step_*.tmp"))
    assert len(left) == 1 and (left[0] / course.CHECKPOINT_INFO).is_file()
    left += [ckpts / ".trash.step_00000001.4242", ckpts / ".earlier-run.json.k1ll3d_9.tmp"]  # a removal, a listing
    left[1].mkdir()
    left[2].write_text('{"format": "wideann-earl')
    # (and names of ours but for their digits, not ASCII ones: \d took them)
    theirs = [ckpts / ".step_notes", ckpts / ".trash", ckpts / "notes.txt", ckpts / ".step_\u0661.tmp",
              ckpts / ".trash.step_00000001.\u0664\u0662"]
    for p in theirs:
        p.write_text("mine\n")
    complete = _complete(run)
    assert complete
    paused = Paused(tmp_path, L3, args, "earlier-run-listed")  # the next new run, stopped before it trains
    paused.wait()
    paused.kill()
    assert [p.name for p in left if os.path.lexists(p)] == []
    assert _complete(run) == complete
    assert [p.read_text() for p in theirs] == ["mine\n"] * len(theirs)


@pytest.mark.parametrize("script, config", [(L3, None), (L4, "cpu.yaml")])
def test_a_new_run_lists_the_earlier_runs_checkpoints_before_it_removes_that_runs_results(table, finished3, tmp_path,
                                                                                          script, config):
    # the results went first: a run killed before it listed the earlier run's checkpoints (.earlier-run.json) left
    # no list, and a bare --resume then went on with the earlier run, silently, its results gone
    run = tmp_path / "run"
    args = ["--data", table, *QUICK3, "--output-dir", run]
    if script == L3:  # (the earlier run: lesson 3's, as every test takes it; lesson 4's, its own)
        copy_run(finished3, run)
    else:
        run_to_end(tmp_path, script, args, config)
    earlier = course.latest_checkpoint(run / "checkpoints")
    paused = Paused(tmp_path, script, args, "earlier-run-listed", config)
    paused.wait()
    assert (run / "metrics.json").is_file()  # (listed before the earlier run's results go)
    paused.kill()
    r = subprocess.run(_cmd(script, [*args, "--resume"], config), cwd=tmp_path, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and f"{earlier.name}, is an earlier run's" in r.stderr, r.stderr[-3000:]
    assert "resumed" not in r.stdout


def test_a_folder_named_like_a_checkpoint_or_hparams_but_for_a_final_newline_is_not_ours(tmp_path):
    """"step_5\\n" (a user's folder, holding a copy of a checkpoint) is not the checkpoint step_5: taken as one, a
    bare --resume went on from it and a save pruned it; nor is "1700000000.5\\n" in a curves folder TensorBoard's
    hparams folder, which a new run empties and removes. (A regular expression's "$" matches before a final
    newline.)"""
    from wideann.course import checkpoints, results

    for name in ("step_00000005\n", "step_00000005"):
        (tmp_path / name).mkdir()
        (tmp_path / name / checkpoints.CHECKPOINT_INFO).write_text('{"format": "wideann-checkpoint"}')
    assert checkpoints.latest_checkpoint(tmp_path) == tmp_path / "step_00000005"
    shutil.rmtree(tmp_path / "step_00000005")
    assert checkpoints.latest_checkpoint(tmp_path) is None
    curves = tmp_path / "curves"
    (curves / "1700000000.5\n").mkdir(parents=True)
    kept = curves / "1700000000.5\n" / "events.out.tfevents.1.host"
    kept.write_bytes(b"a user's")
    results._remove_curves(curves)
    assert kept.read_bytes() == b"a user's"


def test_a_link_named_like_an_hparams_folder_is_not_followed_by_the_removal_of_the_curves(tmp_path):
    """A link in a curves folder to another run's hparams folder, kept under its name to view both in TensorBoard
    (``ln -s ~/old/3_out_of_core_ann/1700000000.5 run/3_out_of_core_ann/``): a new run removed that folder's event
    files and hparams.yml through the link, then failed at its rmdir of the link (NotADirectoryError). The link
    stays, and so does all it points to; the run's own curves go."""
    theirs = tmp_path / "old"
    theirs.mkdir()
    for name in ("events.out.tfevents.1.host", "hparams.yml"):
        (theirs / name).write_bytes(b"another run's")
    curves = tmp_path / "run" / "3_out_of_core_ann"
    curves.mkdir(parents=True)
    (curves / "events.out.tfevents.2.host").write_bytes(b"this run's")
    (curves / "1700000000.5").symlink_to(theirs, target_is_directory=True)
    assert course.clear_results(tmp_path / "run", curves=curves) == []
    assert sorted(p.name for p in theirs.iterdir()) == ["events.out.tfevents.1.host", "hparams.yml"]
    assert (curves / "1700000000.5").is_symlink() and not (curves / "events.out.tfevents.2.host").exists()


def test_a_resume_from_a_checkpoint_a_killed_save_left_unrenamed_keeps_its_files(table, tmp_path):
    """``--resume RUN/checkpoints/.step_N.tmp``: a save killed after its last file (checkpoint.json), before its
    rename, left a checkpoint whole under its temporary name. The load's sweep of what killed saves left removed it
    before its kept files were put back, so the model it had kept was taken for one written after it: best_model.pt
    deleted, the earlier results with it."""
    run = tmp_path / "run"
    args = ["--data", table, *L3_RUN, "--output-dir", run]
    paused = Paused(tmp_path, L3, args, "checkpoint-written:6")
    paused.wait()
    paused.kill()
    (half,) = (run / "checkpoints").glob(".step_*.tmp")
    kept = (half / "best_model.pt").read_bytes()  # (a best model saved before it: the test needs one)
    paused = Paused(tmp_path, L3, [*args, "--resume", half], "resumed")
    paused.wait()
    try:
        assert (run / "best_model.pt").read_bytes() == kept, paused.log()[-3000:]
        assert not half.exists()  # (its files back, it goes as every leftover of a killed save)
    finally:
        paused.kill()
