"""Every lesson answers every user mistake with one line on stderr and its exit code, no traceback.

2 for wrong options (argparse's way), 1 for bad data or files; a bug of ours keeps its traceback.

Every mistake is tried against every lesson that has the option, each as a real process with its own
exit status and stderr, through ``tests/lesson_forks.py``: one interpreter start-up for all of them
(each child is a fork, as cheap as the lesson's work until it fails). A few cases also run as plain
``python scripts/N_*.py`` (a fresh interpreter: the fork changes nothing), and a representative set runs
under ``accelerate launch -q``, on one process and on two CPU processes (where the line must appear
once, not once per process). ``accelerate launch`` ends with its own exit code 1 whatever the lesson's
code; with two processes torchrun adds its own report of the failed process (ChildFailedError) after the
lesson's line, which is the launcher's, not the lesson's; without ``-q`` accelerate adds its
CalledProcessError traceback (one case checks that, as the course text says).
"""
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("accelerate")

import wideann  # noqa: E402
from conftest import wait_for  # noqa: E402
from wideann._entry import printable  # noqa: E402
from test_lessons import SCRIPTS, _env, _launch_cmd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LESSONS = {1: "1_first_ann.py", 2: "2_deeper_ann.py", 3: "3_out_of_core_ann.py", 4: "4_multi_gpu_ann.py"}
ALL, LONG_RUN, MULTI, TRACKED = (1, 2, 3, 4), (3, 4), (4,), (2, 3, 4)
TINY = ["--data", "tiny.npy"]
SMALL_RUN = TINY + ["--epochs", "1", "--max-steps", "2", "--checkpoint-every", "1", "--hidden", "8"]

# (name, lessons, arguments, exit code, what the line must say)
CASES = [
    # files that are not there, or not what they should be
    ("missing-data", ALL, ["--data", "missing.npy"], 1, "--data missing.npy: no such file"),
    ("missing-csv", ALL, ["--data", "missing.csv"], 1, "--data missing.csv: no such file"),
    ("data-is-a-folder", ALL, ["--data", "folder.npy"], 1, "--data folder.npy: is a folder"),
    ("data-is-a-fifo", ALL, ["--data", "fifo.npy"], 1,  # (was "no such file or folder")
     "--data fifo.npy: is a FIFO (named pipe), expected a .npy file or a folder of them"),
    ("bad-csv", ALL, ["--data", "bad.csv"], 1, "bad.csv, line 3, column 2: expected a number, found 'x'"),
    ("npy-without-stats", ALL, ["--data", "orphan.npy"], 1,
     "orphan.stats.json: the stats file of orphan.npy is missing"),
    ("not-a-npy", ALL, ["--data", "garbage.npy"], 1, "--data garbage.npy: not a .npy file"),
    ("truncated-npy", ALL, ["--data", "truncated.npy"], 1, "--data truncated.npy: file is truncated"),
    ("missing-stats", ALL, TINY + ["--stats", "missing.json"], 1, "--stats missing.json: no such file"),
    ("stats-not-json", ALL, TINY + ["--stats", "bad.csv"], 1, "bad.csv: line 1, column 1: invalid JSON"),
    ("stats-of-another-table", ALL, TINY + ["--stats", "wide.stats.json"], 1,
     "error: wide.stats.json describes 12 columns but tiny.npy has 10: it is the stats file of another table; "
     "give the one written with tiny.npy (--stats)"),
    ("test-npy-other-columns", ALL, TINY + ["--test-data", "wide.npy"], 1,
     "--test-data wide.npy has 12 columns but the training table tiny.npy has 10"),
    ("test-csv-other-columns", ALL, TINY + ["--test-data", "wide.csv"], 1,
     "wide.csv, line 1: expected 10 fields (as in the stats), found 12"),
    ("test-npy-own-stats", ALL, TINY + ["--test-data", "own_test.npy"], 1,
     "--test-data own_test.npy was normalized with its own stats"),
    ("test-is-training-data", ALL, TINY + ["--test-data", "tiny.npy"], 2,
     "--test-data tiny.npy: this file is also part of --data: the model would be tested on rows it was trained on"),
    ("test-csv-is-training-csv", ALL, ["--data", "tiny.csv", "--test-data", "tiny.csv"], 2,
     "--test-data tiny.csv: this file is also part of --data: the model would be tested"),
    ("test-is-a-shard-of-training-data", ALL, ["--data", "both", "--test-data", "both/test.npy"], 2,
     "--test-data both/test.npy: this file is also part of --data: the model would be tested"),
    ("test-is-a-link-to-training-data", ALL, TINY + ["--test-data", "tiny_link.npy"], 2,
     "--test-data tiny_link.npy: this file is also part of --data (as tiny.npy): the model would be tested"),
    ("missing-test-data", ALL, TINY + ["--test-data", "missing.npy"], 1, "--test-data missing.npy: no such file"),
    # shards normalized with merged stats, given one shard's stats: the lesson trained, and every number in
    # original units came out of that shard's min and max
    ("stats-of-one-shard", ALL, ["--data", "sharded", "--stats", "part-0.json"], 1,
     "error: --data sharded/part-0.npy (+1 shards): 1,203 rows, but part-0.json was fitted on 600: the stats of part "
     "of the table (one shard's?), not the ones a table is normalized with (fitted on all its rows); give the stats "
     "the table was normalized with (for shards: merged, by wideann merge-stats of every shard's stats)"),
    ("too-few-rows", ALL, ["--data", "small.npy"], 1, "1 row is too few to split into training"),
    ("output-dir-is-a-file", ALL, TINY + ["--output-dir", "a_file"], 1, "a_file"),
    ("constant-target", ALL, ["--data", "constant_y.csv", "--test-data", "test.csv"], 1,
     "the target y (the last column) is 7.5 in every row of the training table: there is nothing to learn"),
    # a nan or inf in a table made by hand: named (file, row, column) before training where the lesson reads the
    # rows anyway (lessons 1-2 hold the table) or can afford to (validation and test rows); in the training rows
    # of lessons 3-4 it shows as a training that diverged
    ("nan-in-the-table", LONG_RUN, ["--data", "nan.npy", "--epochs", "2"], 1, "error: training diverged: "),
    ("nan-in-a-table-held-in-memory", (1, 2), ["--data", "nan.npy", "--epochs", "2"], 1,
     "error: nan.npy, row 6, column 3: expected a finite number, found nan"),
    ("nan-in-a-validation-row", ALL, ["--data", "nan_val.npy", "--epochs", "2"], 1,
     "error: nan_val.npy, row 51, column 4: expected a finite number, found nan"),
    ("inf-in-the-test-table", ALL, TINY + ["--test-data", "inf_test.npy", "--epochs", "2"], 1,
     "error: inf_test.npy, row 8, column 4: expected a finite number, found -inf"),
    ("nan-in-a-raw-test-csv", ALL, TINY + ["--test-data", "nan_test.csv", "--epochs", "2"], 1,
     "nan_test.csv, line 9, column 4: expected a finite number, found 'nan'"),
    # a raw test CSV is normalized in the training table's dtype: a value beyond float16's range got normalize's
    # advice ("use --dtype float32"), an option the lessons do not have
    ("far-value-in-a-raw-test-csv-of-a-float16-table", ALL, ["--data", "tiny16.npy", "--test-data", "far_test.csv"],
     1, "far_test.csv, line 2, column 1: normalized value 1.61765e+17 does not fit float16 (at most 65504): the "
        "training table is float16, and this value lies far outside the range of its training data"),
    # options out of range, or not options at all
    ("batch-size-0", ALL, ["--batch-size", "0"], 2, "argument --batch-size: must be at least 1, got 0"),
    ("epochs-0", ALL, ["--epochs", "0"], 2, "argument --epochs: must be at least 1, got 0"),
    ("lr-negative", ALL, ["--lr", "-1"], 2, "argument --lr: must be a number above 0, got -1"),
    ("lr-nan", ALL, ["--lr", "nan"], 2, "argument --lr: must be a number above 0, got nan"),
    ("seed-negative", ALL, ["--seed", "-1"], 2, "argument --seed: must be 0 or more, got -1"),
    ("seed-too-large", ALL, ["--seed", str(2 ** 64)], 2, f"argument --seed: must be below 2**64, got {2 ** 64}"),
    ("output-dir-empty", ALL, ["--output-dir", ""], 2,
     "argument --output-dir: must be a folder's path, got an empty one"),
    ("epochs-not-a-number", ALL, ["--epochs", "x"], 2, "argument --epochs: expected a whole number, got 'x'"),
    ("hidden-0", ALL, ["--hidden", "0"], 2, "argument --hidden: must be at least 1, got 0"),
    ("unknown-option", ALL, ["--bogus"], 2, "unrecognized arguments: --bogus"),
    ("dropout-1", LONG_RUN, ["--dropout", "1"], 2, "argument --dropout: must be at least 0 and below 1, got 1"),
    ("checkpoint-every-0", LONG_RUN, ["--checkpoint-every", "0"], 2, "argument --checkpoint-every: must be at least 1"),
    ("patience-0", LONG_RUN, ["--patience", "0"], 2, "argument --patience: must be at least 1, got 0"),
    ("max-steps-negative", LONG_RUN, ["--max-steps", "-1"], 2, "argument --max-steps: must be 0 or more, got -1"),
    ("grad-accum-0", MULTI, ["--grad-accum", "0"], 2, "argument --grad-accum: must be at least 1, got 0"),
    ("lasso-negative", MULTI, ["--lasso", "-0.1"], 2, "argument --lasso: must be a number of 0 or more, got -0.1"),
    ("resident-budget-negative", MULTI, ["--resident-budget", "-1"], 2,
     "argument --resident-budget: must be a number above 0, got -1"),
    ("resident-that-does-not-fit", MULTI, TINY + ["--data-tier", "resident", "--resident-budget", "1e-9"], 1,
     "--data-tier resident: the 972 rows the batches read take"),
    # --resume without a checkpoint, from something else, with other options
    ("resume-without-checkpoint", LONG_RUN, TINY + ["--output-dir", "fresh{n}", "--resume"], 1,
     "--resume: no checkpoint in fresh{n}/checkpoints to continue from"),
    ("resume-not-a-checkpoint", LONG_RUN, TINY + ["--resume", "folder.npy"], 1,
     "--resume folder.npy: not a complete checkpoint"),
    ("resume-other-options", LONG_RUN, SMALL_RUN + ["--lr", "0.01", "--output-dir", "ckpt{n}", "--resume"], 2,
     "was made with other options: --lr 0.005 (now: 0.01); give the options of the interrupted run"),
    # what the run replaces at its end, refused before any work (it was refused after all the training, or, for
    # its results, removed without a word); these run bound by file permissions (BOUND)
    ("write-protected-metrics", ALL, TINY + ["--output-dir", "protected/metrics"], 1,
     "error: protected/metrics/metrics.json: cannot replace it: it is write-protected (make it writable, or "
     "remove it)"),
    ("write-protected-predictions", ALL, TINY + ["--output-dir", "protected/predictions"], 1,
     "error: protected/predictions/predictions.csv: cannot replace it: it is write-protected"),
    ("write-protected-model", (1,), TINY + ["--output-dir", "protected/model"], 1,
     "error: protected/model/model.pt: cannot replace it: it is write-protected"),
    ("write-protected-best-model", (2, 3, 4), TINY + ["--output-dir", "protected/best_model"], 1,
     "error: protected/best_model/best_model.pt: cannot replace it: it is write-protected"),
    ("write-protected-model-card", ALL, TINY + ["--output-dir", "protected/card"], 1,
     "error: protected/card/model.json: cannot replace it: it is write-protected"),
    ("run-folder-read-only", ALL, TINY + ["--output-dir", "protected/read_only"], 1,
     "error: protected/read_only: cannot write in this folder of the run (permission denied)"),
    ("checkpoints-folder-read-only", LONG_RUN, TINY + ["--output-dir", "protected/checkpoints"], 1,
     "error: protected/checkpoints/checkpoints: cannot write in this folder of the run (permission denied)"),
    # the folder of TensorBoard's curves (--log-with tensorboard): refused as it was first written, once training
    # had begun, with a traceback of TensorBoard's thread; on a --resume after the checkpoint's model was put back
    ("curves-folder-read-only", TRACKED, TINY + ["--log-with", "tensorboard", "--output-dir", "protected/curves{n}"], 1,
     "error: protected/curves{n}/{lesson}: cannot write in this folder of the run (permission denied)"),
    ("resume-curves-folder-read-only", LONG_RUN,
     SMALL_RUN + ["--lr", "0.005", "--log-with", "tensorboard", "--output-dir", "protected/resume-curves{n}",
                  "--resume"],
     1, "error: protected/resume-curves{n}/{lesson}: cannot write in this folder of the run (permission denied)"),
    # one run's curves and another run's files in one folder: --output-dir runs puts the curves into runs/<lesson>,
    # the run folder of the lesson run without --output-dir, which its run lock did not cover
    ("curves-in-the-default-run-folder", TRACKED, TINY + ["--log-with", "tensorboard", "--output-dir", "runs"], 2,
     "error: --output-dir runs with --log-with tensorboard: the run's curves would go into runs/{lesson}, which is the "
     "run folder of {lesson}.py run without --output-dir (runs/{lesson}): one run's curves and another's files"),
    ("curves-in-a-run-folder", TRACKED, TINY + ["--log-with", "tensorboard", "--output-dir", "nested{n}"], 2,
     "error: --output-dir nested{n} with --log-with tensorboard: the run's curves would go into nested{n}/{lesson}, "
     "which is a run folder (it holds a run's files)"),
    ("run-folder-of-curves", ALL, TINY + ["--output-dir", "nested-curves/{n}"], 2,
     "error: --output-dir nested-curves/{n}: this folder holds TensorBoard curves (events.out.tfevents.1.vm.1.0): "
     "it is the folder of the curves of a run in nested-curves (--output-dir nested-curves --log-with tensorboard)"),
    ("curves-folder-is-a-file", TRACKED, TINY + ["--log-with", "tensorboard", "--output-dir", "curves-file{n}"], 1,
     "error: curves-file{n}/{lesson}: is not a folder: the run writes its TensorBoard curves into a folder there"),
    # --resume: the interrupted run's files are there, writable (test_resume); one of them write-protected
    ("resume-write-protected-predictions", LONG_RUN,
     SMALL_RUN + ["--lr", "0.005", "--output-dir", "protected/resume{n}", "--resume"], 1,
     "error: protected/resume{n}/predictions.csv: cannot replace it: it is write-protected"),
    ("predictions-is-a-folder", ALL, TINY + ["--output-dir", "odd"], 1,
     "error: odd/predictions.csv: is a folder, not a file"),
    # (the lessons the tests launch see no GPU, whatever the machine: test_lessons._env)
    ("fp16-without-gpu", MULTI, ["--mixed-precision", "fp16"], 2,
     "--mixed-precision fp16 needs a GPU; on the CPU use bf16 or no"),
]

BOUND = {"write-protected-metrics", "write-protected-predictions", "write-protected-model",
         "write-protected-best-model",
         "write-protected-model-card", "run-folder-read-only", "checkpoints-folder-read-only",
         "resume-write-protected-predictions", "curves-folder-read-only", "resume-curves-folder-read-only"}
"""The cases about file permissions: run as a user bound by them (as root, without the capabilities that let root
write any file: :func:`_bound`), or skipped where that cannot be done."""
PROTECTED = {"metrics": "metrics.json", "predictions": "predictions.csv", "model": "model.pt",
             "best_model": "best_model.pt", "card": "model.json"}  # folder of protected/ -> its write-protected file

BUG_SCRIPTS = {  # not the user's mistakes: they keep their traceback
    "bug_value_error.py": ("ValueError", "def main():\n    raise ValueError('a bug of ours')\n"),
    "bug_missing_file.py": ("FileNotFoundError", "def main():\n    open('written-by-no-one.npy')\n"),
}
CTRL_C = ("ctrl_c.py", "def main():\n    raise KeyboardInterrupt\n")


def _run_id(n, name):
    return f"{n}:{name}"


def _cases():
    return [(n, name, args, code, says.format(n=n, lesson=Path(LESSONS[n]).stem))
            for name, lessons, args, code, says in CASES for n in lessons]


def _bound(cmd: list[str]) -> list[str] | None:
    """``cmd`` as a user bound by file permissions: itself when not root; as root, through ``capsh`` without the
    capabilities that let root write and read any file; None where there is no ``capsh``."""
    if os.geteuid() != 0:
        return cmd
    if not shutil.which("capsh"):
        return None
    return ["capsh", "--drop=cap_dac_override,cap_dac_read_search,cap_fowner", "--", "-c", shlex.join(cmd)]


def _snapshot(folder: Path) -> dict:
    """Every file and folder under ``folder``: its mode, and a file's bytes."""
    return {p.relative_to(folder): (p.stat().st_mode, p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The mistakes' files: good tables, and tables and files with something wrong."""
    d = tmp_path_factory.mktemp("mistakes")
    wideann.make_data(d / "all.csv", rows=1403, cols=10, seed=1, noise=0.5)
    header, *lines = (d / "all.csv").read_text().splitlines(keepends=True)
    (d / "tiny.csv").write_text(header + "".join(lines[:1203]))
    (d / "test.csv").write_text(header + "".join(lines[1203:]))
    wideann.normalize([d / "tiny.csv"], d / "tiny.npy")
    wideann.normalize([d / "test.csv"], d / "own_test.npy")  # fitted on itself: stats beside it
    wideann.make_data(d / "wide.csv", rows=300, cols=12, seed=2)
    wideann.normalize([d / "wide.csv"], d / "wide.npy")
    (d / "bad.csv").write_text("x1,x2,y\n1,2,3\n4,x,6\n")
    (d / "constant_y.csv").write_text(header + "".join(line.rsplit(",", 1)[0] + ",7.5\n" for line in lines[:1203]))
    nan = np.load(d / "tiny.npy")
    nan[5, 2] = np.nan  # a table made by hand: the engine never writes a nan
    np.save(d / "nan.npy", nan)
    shutil.copy(d / "tiny.stats.json", d / "nan.stats.json")
    nan_val = np.load(d / "tiny.npy")
    nan_val[50, 3] = np.nan  # a validation row (the seeded split's validation rows begin at 48)
    np.save(d / "nan_val.npy", nan_val)
    shutil.copy(d / "tiny.stats.json", d / "nan_val.stats.json")
    wideann.normalize([d / "test.csv"], d / "test.npy", stats=d / "tiny.stats.json")
    inf_test = np.load(d / "test.npy")
    inf_test[7, 3] = -np.inf
    np.save(d / "inf_test.npy", inf_test)  # (no stats file beside it: the training table's apply)
    test_lines = (d / "test.csv").read_text().splitlines(keepends=True)
    wideann.normalize([d / "tiny.csv"], d / "tiny16.npy", dtype="float16")
    far = test_lines[1].split(",")
    (d / "far_test.csv").write_text("".join([test_lines[0], ",".join(["4e15"] + far[1:])] + test_lines[2:]))
    test_lines[8] = ",".join(["1", "2", "3", "nan"] + test_lines[8].split(",")[4:])
    (d / "nan_test.csv").write_text("".join(test_lines))
    shutil.copy(d / "tiny.npy", d / "orphan.npy")
    (d / "garbage.npy").write_bytes(np.random.default_rng(0).bytes(500))
    (d / "truncated.npy").write_bytes((d / "tiny.npy").read_bytes()[:5000])
    np.save(d / "small.npy", np.random.default_rng(0).random((1, 10), dtype=np.float32))
    for name in ("small", "garbage", "truncated"):  # their only fault: the table itself
        shutil.copy(d / "tiny.stats.json", d / f"{name}.stats.json")
    (d / "folder.npy").mkdir()
    os.mkfifo(d / "fifo.npy")
    (d / "both").mkdir()  # a folder of shards that holds the test table too
    wideann.normalize([d / "tiny.csv"], d / "both" / "train.npy")
    wideann.normalize([d / "test.csv"], d / "both" / "test.npy", stats=d / "both" / "train.stats.json")
    os.link(d / "tiny.npy", d / "tiny_link.npy")
    (d / "sharded").mkdir()  # tiny.csv's rows in two shards, normalized with their merged stats, as on two machines
    for k, part in enumerate((lines[:600], lines[600:1203])):
        (d / f"part-{k}.csv").write_text(header + "".join(part))
        wideann.compute_stats([d / f"part-{k}.csv"]).save(d / f"part-{k}.json")
    parts = [wideann.Stats.load(d / f"part-{k}.json") for k in range(2)]
    wideann.Stats.merge(parts).save(d / "merged.json")
    for k in range(2):
        wideann.normalize([d / f"part-{k}.csv"], d / "sharded" / f"part-{k}.npy", stats=d / "merged.json")
    (d / "a_file").write_text("not a folder\n")
    (d / "odd" / "predictions.csv").mkdir(parents=True)
    for folder, name in PROTECTED.items():  # a finished run's files, one of them write-protected
        (d / "protected" / folder).mkdir(parents=True)
        for other in PROTECTED.values():
            (d / "protected" / folder / other).write_text(f"{other} of an earlier run\n")
        os.chmod(d / "protected" / folder / name, 0o444)
    (d / "protected" / "read_only").mkdir()
    os.chmod(d / "protected" / "read_only", 0o555)
    (d / "protected" / "checkpoints" / "checkpoints").mkdir(parents=True)
    os.chmod(d / "protected" / "checkpoints" / "checkpoints", 0o555)
    for n in (2, 3, 4):  # an earlier run's curves in a folder that may not be written in; a file where they go
        curves = d / "protected" / f"curves{n}" / Path(LESSONS[n]).stem
        curves.mkdir(parents=True)
        (curves / "events.out.tfevents.1.vm.1.0").write_text("an earlier run's curves\n")
        os.chmod(curves, 0o555)
        (d / f"curves-file{n}").mkdir()
        (d / f"curves-file{n}" / Path(LESSONS[n]).stem).write_text("not a folder\n")
        (d / f"nested{n}" / Path(LESSONS[n]).stem).mkdir(parents=True)  # a run folder where the curves would go
        (d / f"nested{n}" / Path(LESSONS[n]).stem / "metrics.json").write_text("{}\n")
    for n in ALL:  # the curves of a run in nested-curves/ (named after its lesson), where a run folder would go
        (d / "nested-curves" / str(n)).mkdir(parents=True)
        (d / "nested-curves" / str(n) / "events.out.tfevents.1.vm.1.0").write_text("curves\n")
    for name, (_, body) in [*BUG_SCRIPTS.items(), (CTRL_C[0], (None, CTRL_C[1]))]:
        (d / name).write_text(f"from wideann import course\n\n\n{body}\n\ncourse.run(main)\n")
    return d


@pytest.fixture(scope="module")
def forked(work):
    """Every case against every lesson, each a forked process; {id: {"code", "stdout", "stderr"}}."""
    def job(id_, script, args, out=None):
        args = [a.format(n=id_.split(":")[0]) for a in args]
        if out and "--output-dir" not in args:
            args += ["--output-dir", out]
        return {"id": id_, "script": str(script), "args": args, "cwd": str(work), "env": {}}

    jobs = [job(f"setup:{n}", SCRIPTS / LESSONS[n], SMALL_RUN + ["--lr", "0.005", "--output-dir", f"ckpt{n}"])
            for n in LONG_RUN]
    jobs.append({"wait": True})  # the --resume cases need their checkpoints
    jobs += [job(_run_id(n, name), SCRIPTS / LESSONS[n], args, out=f"runs/{n}-{name}")
             for n, name, args, _, _ in _cases() if name not in BOUND]
    jobs += [job(f"bug:{name}", work / name, []) for name in [*BUG_SCRIPTS, CTRL_C[0]]]
    env = _env(work)
    forks = [sys.executable, str(ROOT / "tests" / "lesson_forks.py"), "2"]

    def run_forks(cmd, jobs):
        r = subprocess.run(cmd, cwd=work, env=env, input="".join(json.dumps(j) + "\n" for j in jobs),
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return {res["id"]: res for res in map(json.loads, r.stdout.splitlines())}

    results = run_forks(forks, jobs)
    for n in LONG_RUN:
        setup = results[f"setup:{n}"]
        assert setup["code"] == 0, setup["stderr"][-3000:]
        shutil.copytree(work / f"ckpt{n}", work / "protected" / f"resume{n}")  # an interrupted run's folder
        os.chmod(work / "protected" / f"resume{n}" / "predictions.csv", 0o444)
        shutil.copytree(work / f"ckpt{n}", work / "protected" / f"resume-curves{n}")  # its curves' folder read-only
        (work / "protected" / f"resume-curves{n}" / Path(LESSONS[n]).stem).mkdir(mode=0o555)
    if _bound(forks) is not None:  # (the bound cases are missing where they cannot run: skipped)
        before = _snapshot(work / "protected")
        results.update(run_forks(_bound(forks), [job(_run_id(n, name), SCRIPTS / LESSONS[n], args)
                                                 for n, name, args, _, _ in _cases() if name in BOUND]))
        results["protected-untouched"] = _snapshot(work / "protected") == before
    return results


def check_one_line(code: int, stderr: str, script: str, want_code: int, says: str) -> str:
    """Exit code, exactly one line on stderr, ``<script>: error: ...`` saying ``says``; no traceback."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert code == want_code, f"exit {code}, expected {want_code}; stderr:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr[-3000:]}"
    assert lines[0].startswith(f"{script}: error: "), lines[0]
    assert says in lines[0], f"the line should say {says!r}: {lines[0]}"
    return lines[0]


@pytest.mark.parametrize("n, name, args, code, says", _cases(), ids=[f"L{c[0]}-{c[1]}" for c in _cases()])
def test_a_mistake_is_one_line_and_its_exit_code(forked, n, name, args, code, says):
    if name in BOUND and _run_id(n, name) not in forked:
        pytest.skip("running as root without capsh: every file may be written")
    res = forked[_run_id(n, name)]
    check_one_line(res["code"], res["stderr"], LESSONS[n], code, says)


@pytest.mark.parametrize("n", ALL)
def test_a_nan_outside_the_training_rows_is_named_before_training(forked, n):
    # a nan in the test table was found after all the training, in the lesson's own temporary file of predictions
    for name in ("nan-in-a-validation-row", "inf-in-the-test-table", "nan-in-a-raw-test-csv"):
        res = forked[_run_id(n, name)]
        assert ".tmp" not in res["stderr"], res["stderr"]
        assert not [ln for ln in res["stdout"].splitlines() if ln.startswith("epoch")], (name, res["stdout"])


@pytest.mark.parametrize("n", ALL)
def test_what_the_run_may_not_write_is_refused_before_any_work(forked, n):
    # a write-protected metrics.json, predictions.csv or model, or a run folder that may not be written in: the
    # lesson trained to its end and failed there (naming its hidden temporary, for a folder), or removed the
    # earlier run's write-protected results without a word and wrote its own
    ran = [name for name in sorted(BOUND) if _run_id(n, name) in forked]
    if not ran:
        pytest.skip("running as root without capsh: every file may be written")
    for name in ran:
        res = forked[_run_id(n, name)]
        assert res["code"] == 1 and ".tmp" not in res["stderr"], (name, res["stderr"])
        assert not [ln for ln in res["stdout"].splitlines() if ln.startswith(("epoch", "resumed"))], \
            (name, res["stdout"])
    assert forked["protected-untouched"], "a write-protected file, or a folder that may not be written in, changed"


def test_nothing_is_left_behind_by_a_mistake(forked, work):
    """A failed run leaves no temporary files, no checkpoint and no model in its run folder; a run refused before
    it began its work (all but the training that diverged) leaves no folder it made and left empty (the folder was
    left behind, empty), but the folders that were there before; a table it normalized stays, complete, for the
    next run to use (51 GB at the reference scale: a mistake mended must not cost the normalizing again)."""
    for n, name, *_ in _cases():
        out = work / "runs" / f"{n}-{name}"
        if name != "nan-in-the-table" and name not in BOUND:
            made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) if out.exists() else []
            if name == "constant-target":  # (refused after normalizing its tables: they stay, complete)
                assert "data/constant_y.npy" in made and "data/test/test.npy" in made, (n, made)
                assert all(m.startswith("data") and "/." not in m for m in made), (n, made)
            else:
                assert made == [], (n, name, made)
        if out.is_dir():
            kept = [out / "data"] + ([out / "checkpoints"] if name == "nan-in-the-table" else [])  # (epochs that ran)
            left = [p.relative_to(out) for p in out.rglob("*")
                    if p.is_file() and not any(p.is_relative_to(k) for k in kept)]
            assert left == [], (n, name, left)
    for n in LONG_RUN:  # --resume with no checkpoint: refused after prepare_data had made the folder
        assert not (work / f"fresh{n}").exists()
    assert (work / "odd" / "predictions.csv").is_dir() and (work / "a_file").is_file()  # (there before: kept)
    assert all((work / f"nested{n}" / Path(LESSONS[n]).stem / "metrics.json").is_file() for n in TRACKED)


@pytest.mark.parametrize("name", sorted(BUG_SCRIPTS))
def test_a_bug_of_ours_keeps_its_traceback(forked, name):
    res = forked[f"bug:{name}"]
    assert res["code"] == 1, res
    assert "Traceback (most recent call last)" in res["stderr"], res["stderr"]
    assert BUG_SCRIPTS[name][0] in res["stderr"].splitlines()[-1], res["stderr"]


def test_ctrl_c_is_one_line_and_exit_code_130(forked):
    res = forked[f"bug:{CTRL_C[0]}"]
    assert res["code"] == 130 and res["stderr"] == f"{CTRL_C[0]}: interrupted\n", res


EARLY_LINE = "interrupted before training started; nothing was written"


@pytest.mark.parametrize("n, sig", [(1, signal.SIGINT), (4, signal.SIGINT), (3, signal.SIGTERM), (2, signal.SIGHUP)])
def test_an_interrupt_while_a_lesson_imports_torch_is_one_line(tmp_path, n, sig):
    """A Ctrl-C during a lesson's imports (torch and accelerate: seconds, before any handler of the run) ended it
    by the signal with a ``KeyboardInterrupt`` traceback (SIGTERM and SIGHUP: silently, by the signal). Now it is
    one line and exit code 130. Made certain, not timed: a ``torch`` on ``PYTHONPATH`` whose import says it has
    begun and then waits (reads its stdin), so that the signal lands inside the lesson's ``import torch``."""
    stub = tmp_path / "stub" / "torch"
    stub.mkdir(parents=True)
    ready = tmp_path / "importing"
    (stub / "__init__.py").write_text(f"import sys\nopen({str(ready)!r}, 'w').close()\nsys.stdin.read()\n")
    env = _env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(stub.parent), *filter(None, [env.get("PYTHONPATH")])])
    p = subprocess.Popen([sys.executable, str(SCRIPTS / LESSONS[n]), "--output-dir", "run"], cwd=tmp_path, env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: ready.exists() or p.poll() is not None, timeout=120), "the lesson never imported torch"
        assert p.poll() is None, p.communicate()
        p.send_signal(sig)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130 and err == f"{LESSONS[n]}: {EARLY_LINE}\n", (p.returncode, err)
    assert out == "" and not (tmp_path / "run").exists()


def test_ctrl_c_while_torch_really_loads_is_one_line(tmp_path):
    """The same with the real torch: SIGINT once the lesson's process has torch's library mapped (in ``import
    torch``, or later). Where it lands is the machine's timing, so either of the lesson's two lines is right (the
    import's, or the run's if the imports were done): never a traceback, nor the end by the signal (-2)."""
    p = subprocess.Popen([sys.executable, str(SCRIPTS / LESSONS[1]), "--output-dir", "run", "--epochs", "1"],
                         cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def torch_mapped() -> bool:
        try:
            return "libtorch" in Path(f"/proc/{p.pid}/maps").read_text()
        except OSError:
            return p.poll() is not None
    try:
        if not Path(f"/proc/{p.pid}/maps").exists():
            pytest.skip("no /proc")
        assert wait_for(torch_mapped, timeout=120) and p.poll() is None, p.communicate()
        p.send_signal(signal.SIGINT)
        _out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, (p.returncode, err)
    assert err in (f"{LESSONS[1]}: {EARLY_LINE}\n", f"{LESSONS[1]}: interrupted\n"), err


def test_a_fresh_interpreter_says_the_same(forked, work):
    """The same cases as plain ``python scripts/N_*.py``: exactly the fork's exit code and line."""
    picks = [(1, "epochs-0"), (2, "missing-data"), (3, "dropout-1"), (4, "bad-csv")]

    def plain(pick):
        n, name = pick
        args = next(a for nm, _, a, _, _ in CASES if nm == name)
        cmd = [sys.executable, str(SCRIPTS / LESSONS[n]), *args, "--output-dir", f"runs/plain-{n}-{name}"]
        return subprocess.run(cmd, cwd=work, env=_env(work), capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(plain, picks))
    for (n, name), r in zip(picks, done):
        res = forked[_run_id(n, name)]
        _, _, _, code, says = next(c for c in _cases() if c[:2] == (n, name))
        line = check_one_line(r.returncode, r.stderr, LESSONS[n], code, says)
        assert line == res["stderr"].strip()


def test_a_newline_in_a_file_name_is_shown_escaped_as_the_command_line_shows_it(tmp_path):
    """A lesson's error line showed a newline in a file name as a space (``r q.csv``: the name of another file,
    perhaps one that exists); it is ``\\x0a`` there, as in the command line's lines, whether the name is said by
    the lesson (a missing --data, a folder where the run writes a file) or by the engine (a bad value, a file that
    is not a stats file). A library's message of several lines is still flattened into the line (test_resume)."""
    wideann.make_data(tmp_path / "all.csv", rows=200, cols=6, seed=1)
    wideann.normalize([tmp_path / "all.csv"], tmp_path / "tiny.npy")
    (tmp_path / "b\nad.csv").write_text("x1,x2,y\n1,2,3\n4,x,6\n")
    (tmp_path / "s\nt.json").write_text('{"format": "something else"}')
    (tmp_path / "o\nut" / "predictions.csv").mkdir(parents=True)
    cases = [  # (arguments, what the line says after "error: ")
        (["--data", "r\nq.csv"], "--data r\\x0aq.csv: no such file"),
        (["--data", "b\nad.csv"], "b\\x0aad.csv, line 3, column 2: expected a number, found 'x'"),
        (["--data", "tiny.npy", "--stats", "s\nt.json"], "s\\x0at.json: not a wideann stats file"),
        (["--data", "tiny.npy", "--output-dir", "o\nut"], "o\\x0aut/predictions.csv: is a folder, not a file"),
    ]
    _each_says(tmp_path, cases, lessons=(1, 4))


def _each_says(folder: Path, cases, lessons) -> None:
    """Each case (arguments, what the line says after ``error: ``) run by each lesson in ``folder``, a forked
    process each (``tests/lesson_forks.py``): exit code 1 and that one line."""
    # (each run in a folder of its own: two at once in one run folder, the second is refused by the run lock)
    jobs = [{"id": f"{n}:{k}", "script": str(SCRIPTS / LESSONS[n]), "cwd": str(folder), "env": {},
             "args": args if "--output-dir" in args else [*args, "--output-dir", f"runs/{n}-{k}"]}
            for n in lessons for k, (args, _) in enumerate(cases)]
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "lesson_forks.py"), "2"], cwd=folder,
                       env=_env(folder), input="".join(json.dumps(j) + "\n" for j in jobs), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    results = {res["id"]: res for res in map(json.loads, r.stdout.splitlines())}
    for n in lessons:
        for k, (_, says) in enumerate(cases):
            res = results[f"{n}:{k}"]
            check_one_line(res["code"], res["stderr"], LESSONS[n], 1, f"error: {says}")


def test_a_library_message_is_one_printable_line_as_the_command_line_shows_it():
    """one_line kept what is not printable but a line break: a tab inside the line (part of a file name a library
    quotes, perhaps) went out raw, an escape sequence to the terminal, where the command line shows the same message
    with printable (\\x09, \\x1b). A tab that indents a line after a line break goes with the break."""
    from wideann.course.errors import one_line

    assert one_line("Error(s) in loading state_dict:\n\tMissing key(s): t\tab.pt \x1b[31m \udcff") == \
        "Error(s) in loading state_dict: Missing key(s): t\\x09ab.pt \\x1b[31m \\xff"
    assert one_line("a  b.csv (c\u00e9 \\x0a)") == "a  b.csv (c\u00e9 \\x0a)"  # (a shown() name: as it was)


def test_two_spaces_in_a_file_name_are_said_as_two(tmp_path):
    """A lesson's error line made every run of blanks one space (one_line, meant to flatten a library's message of
    several lines): ``m  n.csv`` was said as ``m n.csv``, the name of another file. Only line breaks are flattened
    now, whoever says the name: the lesson (a missing --data, a table without its stats file, a folder where the
    run writes a file) or the engine (a bad value, a file that is not a stats file)."""
    from wideann.course.errors import one_line

    assert one_line("a  b.csv: cannot be read (Weights only load failed.\n  Re-running  \r\nmay help.)\n") == \
        "a  b.csv: cannot be read (Weights only load failed. Re-running may help.)"
    wideann.make_data(tmp_path / "all.csv", rows=200, cols=6, seed=1)
    wideann.normalize([tmp_path / "all.csv"], tmp_path / "tiny.npy")
    (tmp_path / "b  ad.csv").write_text("x1,x2,y\n1,2,3\n4,x,6\n")
    (tmp_path / "s  t.json").write_text('{"format": "something else"}')
    shutil.copy(tmp_path / "tiny.npy", tmp_path / "no  stats.npy")
    (tmp_path / "o  ut" / "predictions.csv").mkdir(parents=True)
    _each_says(tmp_path, [
        (["--data", "r  q.csv"], "--data r  q.csv: no such file"),
        (["--data", "no  stats.npy"], "--data no  stats.stats.json: the stats file of no  stats.npy is missing"),
        (["--data", "b  ad.csv"], "b  ad.csv, line 3, column 2: expected a number, found 'x'"),
        (["--data", "tiny.npy", "--stats", "s  t.json"], "s  t.json: not a wideann stats file"),
        (["--data", "tiny.npy", "--output-dir", "o  ut"], "o  ut/predictions.csv: is a folder, not a file"),
    ], lessons=(1, 3))


LAUNCHED = [  # (lesson, case, config, -q): one and two processes, options, data and --resume
    (1, "batch-size-0", "cpu.yaml", True),
    (2, "bad-csv", "cpu.yaml", True),
    (3, "too-few-rows", "cpu.yaml", True),
    (3, "resume-other-options", "cpu.yaml", True),
    (4, "test-npy-other-columns", "cpu.yaml", True),
    (4, "missing-data", "cpu_2proc.yaml", True),          # fails on the main process, the other one waits
    (4, "epochs-0", "cpu_2proc.yaml", True),              # fails on both processes at once
    (4, "resume-without-checkpoint", "cpu_2proc.yaml", True),
    (2, "missing-data", "cpu.yaml", False),               # what plain accelerate launch adds
]


def test_under_accelerate_launch_the_line_comes_once(forked, work):
    """``accelerate launch -q``: the lesson's line, once, whatever the number of processes; exit code 1
    (accelerate's for any failure); no traceback of the lesson's, nor of its other processes. Without
    ``-q``, accelerate adds its own CalledProcessError traceback (what the course text says)."""
    def launch(item):
        n, name, config, quiet = item
        args = next(a for nm, _, a, _, _ in CASES if nm == name)
        args = [a.format(n=n) for a in args]
        if "--output-dir" not in args:
            args += ["--output-dir", f"runs/launched-{n}-{name}"]
        cmd = _launch_cmd(LESSONS[n], *args, config=config)
        if quiet:
            cmd.insert(cmd.index("accelerate.commands.launch") + 1, "-q")
        return subprocess.run(cmd, cwd=work, env=_env(work), capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(launch, LAUNCHED))
    for (n, name, config, quiet), r in zip(LAUNCHED, done):
        line = forked[_run_id(n, name)]["stderr"].strip()
        assert r.returncode == 1, (n, name, r.returncode, r.stderr[-3000:])
        ours = [ln for ln in r.stderr.splitlines() if ": error: " in ln]
        assert ours == [line], f"L{n} {name} on {config}: expected the line once\n{r.stderr[-4000:]}"
        if not quiet:
            assert r.stderr.startswith(line) and "subprocess.CalledProcessError" in r.stderr, r.stderr[-3000:]
            assert str(SCRIPTS) + '", line' not in r.stderr, "a traceback of the lesson's"
        elif config == "cpu.yaml":
            assert "Traceback" not in r.stderr and r.stderr.strip() == line, r.stderr[-3000:]
        else:  # torchrun's report of the failed process follows; nothing of the lesson's processes
            assert str(SCRIPTS) + '", line' not in r.stderr and "[rank" not in r.stderr, r.stderr[-4000:]
            assert "ChildFailedError" in r.stderr


def test_on_two_processes_a_write_protected_output_is_said_once_before_any_work(forked, work):
    """Only the main process writes the run's files: it checks them, and the other process ends with it."""
    cmd = _launch_cmd(LESSONS[4], *TINY, "--output-dir", "protected/metrics", config="cpu_2proc.yaml")
    cmd.insert(cmd.index("accelerate.commands.launch") + 1, "-q")
    if _bound(cmd) is None:
        pytest.skip("running as root without capsh: every file may be written")
    r = subprocess.run(_bound(cmd), cwd=work, env=_env(work), capture_output=True, text=True, timeout=300)
    ours = [ln for ln in r.stderr.splitlines() if ": error: " in ln]
    assert r.returncode == 1 and ours == [forked[_run_id(4, "write-protected-metrics")]["stderr"].strip()], \
        r.stderr[-3000:]
    assert "epoch" not in r.stdout and (work / "protected" / "metrics" / "metrics.json").read_text() == \
        "metrics.json of an earlier run\n"


def test_the_course_text_says_what_plain_accelerate_launch_adds():
    text = (SCRIPTS / "README.md").read_text()
    assert "CalledProcessError" in text and "accelerate launch -q" in text


def test_a_single_process_lesson_refuses_a_launch_of_several(work):
    """Lessons 1-3 launched on two processes: one line, said once, before anything is read or written
    (each process would train on all the rows and write the same run folder)."""
    cmd = _launch_cmd(LESSONS[3], "--output-dir", "runs/several", config="cpu_2proc.yaml")
    cmd.insert(cmd.index("accelerate.commands.launch") + 1, "-q")
    r = subprocess.run(cmd, cwd=work, env=_env(work), capture_output=True, text=True, timeout=300)
    ours = [ln for ln in r.stderr.splitlines() if ": error: " in ln]
    assert r.returncode == 1 and ours == [
        "3_out_of_core_ann.py: error: this lesson trains on one process, and this launch started 2 (WORLD_SIZE=2): "
        "run it with python, or accelerate launch without a multi-process config; lesson 4 (4_multi_gpu_ann.py) "
        "trains on several"], r.stderr[-3000:]
    assert not (work / "runs" / "several").exists()


@pytest.mark.parametrize("several", [False, True])
def test_the_options_say_whether_several_processes_may_run(monkeypatch, several):
    from wideann import course

    p = course.parser(None, "x", epochs=1, batch_size=1, lr=1.0, several_processes=several)
    assert p.parse_args([]).epochs == 1
    monkeypatch.setenv("WORLD_SIZE", "4")
    if several:
        assert p.parse_args([]).epochs == 1
    else:
        with pytest.raises(course.UsageError, match=r"this launch started 4 \(WORLD_SIZE=4\)"):
            p.parse_args([])


def test_the_options_know_their_lesson_out_of_what_is_saved_and_logged():
    # the lesson names the folder of its TensorBoard curves (checked before any work); it stays out of vars(args),
    # which checkpoints compare on --resume and trackers and model cards record
    import pickle

    from wideann import course
    from wideann.course.results import tensorboard_folder

    p = course.parser(None, "3_out_of_core_ann", epochs=1, batch_size=1, lr=1.0)
    course.add_tracking_options(p)
    args = p.parse_args(["--log-with", "tensorboard"])
    assert args.lesson == "3_out_of_core_ann" and "lesson" not in vars(args)
    assert tensorboard_folder("runs/x", args) == Path("runs/x/3_out_of_core_ann")
    assert tensorboard_folder("runs/x", p.parse_args([])) is None
    again = pickle.loads(pickle.dumps(args))
    assert again.lesson == args.lesson and vars(again) == vars(args)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_a_lesson_ended_by_kill_or_a_closed_terminal_cleans_up_as_after_ctrl_c(tmp_path, big_csv, sig):
    # kill or a scheduler's time limit (SIGTERM), a closed terminal (SIGHUP), here while the engine writes the
    # normalized table into the run folder: its temporary files went nowhere before, as large as the table
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, str(SCRIPTS / LESSONS[1]), "--data", str(big_csv), "--output-dir", str(run)],
                         cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: list((run / "data").glob(".big.npy.*.tmp")), 120), "pass 2 never started"
        p.send_signal(getattr(signal, sig))
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130 and err == f"{LESSONS[1]}: interrupted\n", (p.returncode, err)
    assert not [f.name for f in (run / "data").iterdir()], "the engine's temporary files were left"


def test_a_lesson_ends_with_its_launcher(tmp_path, big_csv):
    # kill (or timeout) of accelerate launch alone: its launcher of one process does not pass SIGTERM on, and the
    # lesson went on, unseen, writing into its run folder
    run = tmp_path / "run"
    cmd = _launch_cmd(LESSONS[1], "--data", big_csv, "--output-dir", run, config="cpu.yaml")
    launcher = subprocess.Popen(cmd, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    lesson = []
    try:
        assert wait_for(lambda: list((run / "data").glob(".big.npy.*.tmp")), 120), "pass 2 never started"
        lesson = [int(p) for p in Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()]
        assert len(lesson) == 1, lesson
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=30)
        assert wait_for(lambda: not Path(f"/proc/{lesson[0]}").exists()
                        or Path(f"/proc/{lesson[0]}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", 30), \
            "the lesson went on after its launcher ended"
    finally:
        if launcher.poll() is None:
            launcher.kill()
        for pid in lesson:  # (a lesson left going by a failure here must not run on)
            with contextlib.suppress(OSError):
                if LESSONS[1].encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
    assert not [f.name for f in (run / "data").iterdir()], "the engine's temporary files were left"



@pytest.mark.parametrize("argv, launcher", [
    (["/v/bin/python", "/v/bin/accelerate", "launch", "x.py"], True),
    (["/v/bin/accelerate", "launch", "--multi_gpu", "x.py"], True),
    (["/v/bin/python3", "-m", "accelerate.commands.launch", "x.py"], True),
    (["torchrun", "--nproc_per_node", "2", "x.py"], True),
    (["/v/bin/python3", "/v/bin/accelerate-launch", "--cpu", "x.py"], True),  # accelerate's own console script
    (["/usr/bin/python3", "-m", "torch.distributed.run", "x.py"], True),
    (["bash", "/home/me/accelerate-course/start.sh"], False),  # a folder of that name: not a launcher
    (["/v/bin/python", "/tmp/accelerate_sweep.py"], False),
    (["/v/bin/accelerate", "env"], False),
    ([], False),
])
def test_only_a_launcher_ends_a_lesson_when_it_ends(argv, launcher):
    from wideann.interrupts import is_a_launcher

    assert is_a_launcher(argv) is launcher


def test_predictions_that_are_not_numbers_are_refused_in_one_line_naming_the_row(tmp_path):
    # the engine named the lesson's own temporary file (deleted by then): ".predictions.csv.XXXX.tmp.npy, row 8"
    from wideann import course

    stats = tmp_path / "t.stats.json"
    wideann.Stats(["x1", "y"], [0.0, 0.0], [1.0, 10.0], 3).save(stats)
    out = tmp_path / "predictions.csv"
    for truth, pred, says in [([0.1, 0.2, 0.3], [0.1, np.inf, 0.3],
                               "the model's prediction of test row 2 (of 3) is inf"),
                              ([0.1, 0.2, np.nan], [0.1, 0.2, 0.3], "the true y of test row 3 (of 3) is nan")]:
        with pytest.raises(course.LessonError) as e:
            course.write_predictions(np.array(truth), np.array(pred), stats, out)
        assert str(e.value).startswith(f"{out}: {says}, not a finite number"), str(e.value)
        assert sorted(os.listdir(tmp_path)) == ["t.stats.json"]
    course.write_predictions(np.array([0.5]), np.array([0.25]), stats, out)
    assert out.read_text() == "y_true,y_pred\n5,2.5\n"


def test_a_hint_gives_the_stats_to_type_as_bash_reads_them(tmp_path):
    """The test table's hints name the training table's stats as a value of --stats to type: quoted for bash (a
    folder with a space and a quote was shown as it is, and pasted it was three words, one quote left open)."""
    data = tmp_path / "it's data"
    data.mkdir()
    for name, cols, seed in (("t", 6, 1), ("own_test", 6, 2), ("wide", 8, 3)):
        wideann.make_data(tmp_path / f"{name}.csv", rows=200, cols=cols, seed=seed)
        wideann.normalize([tmp_path / f"{name}.csv"], (data if name == "t" else tmp_path) / f"{name}.npy")
    for test in ("own_test.npy", "wide.npy"):
        r = subprocess.run([sys.executable, str(SCRIPTS / LESSONS[1]), "--data", "it's data/t.npy", "--test-data", test,
                            "--epochs", "1", "--output-dir", "run"], cwd=tmp_path, env=_env(tmp_path),
                           capture_output=True, text=True, timeout=300)
        lines = r.stderr.splitlines()
        assert r.returncode == 1 and len(lines) == 1 and " --stats " in lines[0], r.stderr[-3000:]
        pasted = lines[0].split(" --stats ")[-1].removesuffix(")")
        said = subprocess.run(["bash", "-c", "printf '%s\\0' " + pasted], cwd=tmp_path, capture_output=True)
        assert said.returncode == 0 and said.stdout == b"it's data/t.stats.json\0", (lines[0], said)


def test_a_hint_on_stderr_is_quoted_for_the_encoding_of_stderr_not_of_stdout(tmp_path):
    """A hint's path was quoted for stdout's encoding (UTF-8 here: ``'café/t.stats.json'``), but the line goes to
    stderr, here ASCII, which wrote the é as ``\\xe9`` inside '...': pasted, another name. Quoted for stderr, it is
    ``$'caf\\xc3\\xa9/...'``, the name's bytes. (PYTHONIOENCODING sets both streams: stderr is set apart here.)"""
    (tmp_path / "café").mkdir()
    for name, cols, seed in (("t", 6, 1), ("own_test", 6, 2), ("wide", 8, 3)):
        wideann.make_data(tmp_path / f"{name}.csv", rows=200, cols=cols, seed=seed)
        wideann.normalize([tmp_path / f"{name}.csv"], tmp_path / ("café" if name == "t" else "") / f"{name}.npy")
    lesson = str(SCRIPTS / LESSONS[1])
    for test in ("own_test.npy", "wide.npy"):
        argv = [lesson, "--data", "café/t.npy", "--test-data", test, "--epochs", "1", "--output-dir", "run"]
        code = (f"import runpy, sys; sys.stderr.reconfigure(encoding='ascii', errors='backslashreplace'); "
                f"sys.argv = {argv!r}; runpy.run_path({lesson!r}, run_name='__main__')")
        env = dict(_env(tmp_path), PYTHONIOENCODING="utf-8")
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, timeout=300)
        lines = r.stderr.decode("ascii").splitlines()
        assert r.returncode == 1 and len(lines) == 1 and " --stats " in lines[0], r.stderr[-3000:]
        pasted = lines[0].split(" --stats ")[-1].removesuffix(")")
        said = subprocess.run(["bash", "-c", "printf '%s\\0' " + pasted], cwd=tmp_path, capture_output=True)
        assert said.returncode == 0 and said.stdout == "café/t.stats.json\0".encode(), (lines[0], said)


def test_ctrl_c_after_a_checkpoint_says_how_to_continue(tmp_path, monkeypatch, capsys):
    """A Ctrl-C on a long run (lessons 3-4) names the checkpoint it can go on from and --resume; before the run
    has saved one (the folder's checkpoints are then an earlier run's) it says no more than before."""
    from argparse import Namespace

    from wideann import course
    from wideann.course import errors
    monkeypatch.setattr(errors, "_on_interrupt", [])
    monkeypatch.setattr(sys, "argv", ["4_multi_gpu_ann.py"])
    folder = tmp_path / "checkpoints"
    (folder / "step_00000100").mkdir(parents=True)  # an earlier run's checkpoint
    (folder / "step_00000100" / "checkpoint.json").write_text('{"format": "wideann-checkpoint", "version": 1, '
                                                             '"completed_ns": 7}')

    def interrupted():
        raise KeyboardInterrupt

    newest = folder / "step_00000100"
    for resume, ours, said in (
            (None, set(), "4_multi_gpu_ann.py: interrupted\n"),
            (None, {("step_00000100", 7)}, f"4_multi_gpu_ann.py: interrupted; its newest checkpoint is {newest}: run "
                                           "the same command with --resume to continue from it"),
            # (a run of that name, but not the one saved or loaded: an earlier run's, or one remade since)
            (None, {("step_00000100", 6)}, "4_multi_gpu_ann.py: interrupted\n"),
            # resumed from a checkpoint named on the command line: "the same command" would go back to that one
            ("c/step_00000050", {("step_00000100", 7)}, f"interrupted; its newest checkpoint is {newest}: run the "
                                                       f"same command with --resume {newest} (in place of --resume "
                                                       "c/step_00000050) to continue from it"),
            (str(newest), {("step_00000100", 7)}, "run the same command with --resume to continue from it")):
        ckpts = course.Checkpoints(folder, Namespace(epochs=1, resume=resume))
        ckpts._ours = ours  # (added to by save and load)
        with pytest.raises(SystemExit) as e:
            course.run(interrupted)
        err = capsys.readouterr().err
        assert e.value.code == 130 and said in err and err.count("\n") == 1, err


def test_ctrl_c_once_a_checkpoint_is_renamed_names_it(tmp_path, monkeypatch, capsys):
    """A Ctrl-C between a checkpoint's rename (it is complete) and the end of its save (the folder's fsync, the
    pruning, the processes' settle) names it: it is the run's, and the one --resume takes."""
    from argparse import Namespace
    from types import SimpleNamespace

    from wideann import course
    from wideann.course import checkpoints, errors
    monkeypatch.setattr(errors, "_on_interrupt", [])
    monkeypatch.setattr(sys, "argv", ["3_out_of_core_ann.py"])
    folder = tmp_path / "checkpoints"
    accelerator = SimpleNamespace(is_main_process=True, num_processes=1, process_index=0, mixed_precision="no",
                                  _models=[], _optimizers=[],
                                  save_state=lambda p: (Path(p) / "model.safetensors").write_bytes(b"x"))
    ckpts = course.Checkpoints(folder, Namespace(epochs=1))
    real_fsync = checkpoints.fsync

    def interrupted_after_the_rename(path):
        if Path(path) == folder:
            raise KeyboardInterrupt
        real_fsync(path)

    monkeypatch.setattr(checkpoints, "fsync", interrupted_after_the_rename)
    with pytest.raises(SystemExit) as e:
        course.run(lambda: ckpts.save(accelerator, 5))
    err = capsys.readouterr().err
    assert e.value.code == 130 and f"its newest checkpoint is {folder / 'step_00000005'}: run the same command " \
        "with --resume" in err, err


@pytest.mark.parametrize("options, cause", [
    (["--config_file", "cpu.yaml"], "its accelerate config ({config}) says use_cpu: true, which launches one process "
                                    "without --multi_gpu"),
    # a config file named with a newline and a byte that is not UTF-8: shown as the error lines show names (\xNN)
    (["--config_file", "c\npu\udcff.yaml"], "its accelerate config ({config}) says use_cpu: true, which launches one "
                                             "process without --multi_gpu"),
    ([], "without --multi_gpu it starts one"),
    (["--cpu"], "--cpu starts one, whatever --num_processes (and cannot go with --multi_gpu)"),
])
def test_the_num_processes_warning_names_what_made_one_process(tmp_path, options, cause):
    """A real ``accelerate launch --num_processes 2`` of lesson 4 that starts one process: the warning blamed a
    missing --multi_gpu even where an accelerate config with ``use_cpu: true`` (scripts/configs/cpu.yaml) or
    ``--cpu`` made the one-process launch; it names the cause accelerate resolved (the ``ACCELERATE_USE_CPU`` its
    one-process launcher passes on). No accelerate config but the one given (``HF_HOME`` of the test's own)."""
    config = str(ROOT / "scripts" / "configs" / "cpu.yaml")
    if "c\npu\udcff.yaml" in options:
        config = str(shutil.copy(config, tmp_path / "c\npu\udcff.yaml"))
    options = [config if o.endswith(".yaml") else o for o in options]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "-q", *options, "--num_processes", "2",
           "--num_cpu_threads_per_process", "1", str(SCRIPTS / LESSONS[4]), "--data", "missing.npy"]
    r = subprocess.run(cmd, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    warning = f"{LESSONS[4]}: warning: accelerate launch was given --num_processes 2 but started one process " \
              f"(WORLD_SIZE unset): {cause.format(config=printable(config))}; for CPU processes: " \
              "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 ..."
    said = [line for line in r.stderr.splitlines() if line.startswith(f"{LESSONS[4]}: warning: ")]
    assert len(said) == 1 and said[0].startswith(warning), r.stderr
    assert f"{LESSONS[4]}: error: " in r.stderr and "missing.npy" in r.stderr, r.stderr  # then the run went on


@pytest.mark.parametrize("launcher", [
    ["/v/bin/python3", "/v/bin/accelerate", "launch", "--num_processes", "2", "scripts/4_multi_gpu_ann.py"],
    ["/v/bin/python3", "/v/bin/accelerate", "launch", "--cpu", "--num-processes=2", "scripts/4_multi_gpu_ann.py"],
    # its other spellings, said nothing
    ["/v/bin/python3", "/v/bin/accelerate-launch", "--num_processes", "2", "scripts/4_multi_gpu_ann.py"],
    ["/v/bin/python3", "-m", "accelerate.commands.launch", "--num_processes", "2", "scripts/4_multi_gpu_ann.py"],
])
def test_num_processes_without_multi_gpu_is_not_silent(monkeypatch, capsys, launcher):
    """The course's trap: accelerate launch --num_processes 2 (without --multi_gpu) starts ONE process and says
    nothing; lesson 4 says so, with the launch that works."""
    from wideann import course
    from wideann.course import options
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(options, "_launcher_cmdline", lambda: launcher)
    course.parser(None, "x", epochs=1, batch_size=1, lr=1.0, several_processes=True).parse_args([])
    err = capsys.readouterr().err
    assert "warning: accelerate launch was given --num_processes 2 but started one process" in err, err
    assert "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2" in err and err.count("\n") == 1
    # a launch that said nothing of processes, or a lesson's own options after the script: nothing to say
    head = launcher[:launcher.index("--cpu" if "--cpu" in launcher else launcher[-3])]
    for quiet in (head + launcher[-1:], head + launcher[-1:] + ["--num_processes", "2"],
                  # another program's "launch" (the script's own argument, after a program not accelerate)
                  ["/usr/bin/python3", "tool.py", "launch", "--num_processes", "2"],
                  ["/usr/bin/python3", "/tmp/accelerate_sweep.py", "launch", "--num_processes", "4"]):
        monkeypatch.setattr(options, "_launcher_cmdline", lambda: quiet)
        course.parser(None, "x", epochs=1, batch_size=1, lr=1.0, several_processes=True).parse_args([])
        assert capsys.readouterr().err == ""


def test_the_folder_of_aims_repository_is_checked_before_any_work(tmp_path):
    # accelerate gives the Aim tracker the run folder, where Aim keeps its repository in .aim/: unlike TensorBoard's
    # folder, it was not checked before the training, and a file there failed the run as it started tracking. (Aim is
    # not installed here: --log-with aim is refused at once, so the check is called as prepare_data calls it.)
    import importlib.util

    from wideann.course import results
    from wideann.course.options import options_of

    run = tmp_path / "run"
    (run / ".aim").mkdir(parents=True)
    aim = options_of("2_deeper_ann", {"log_with": ["aim"]})
    results.refuse_a_run_folder_that_may_not_be_written(run, aim)  # a repository there: fine
    assert results.aim_folder(run, aim) == run / ".aim"
    assert results.aim_folder(run, options_of("2_deeper_ann", {"log_with": ["tensorboard"]})) is None
    everything = options_of("2_deeper_ann", {"log_with": ["all"]})
    assert (results.aim_folder(run, everything) is None) == (importlib.util.find_spec("aim") is None)
    (run / ".aim").rmdir()
    (run / ".aim").write_text("not a folder\n")
    with pytest.raises(wideann.course.LessonError, match=r"run/\.aim: is not a folder: the Aim tracker keeps its "):
        results.refuse_a_run_folder_that_may_not_be_written(run, aim)
    (run / ".aim").unlink()
    (run / ".aim").mkdir(mode=0o555)
    if os.geteuid() != 0:  # (the superuser may write in any folder)
        with pytest.raises(PermissionError, match="cannot write in this folder of the run"):
            results.refuse_a_run_folder_that_may_not_be_written(run, aim)
