"""The four lessons, end to end under `accelerate launch`, on tiny data (CPU only).

- every lesson writes a sane metrics.json, its plots and its checkpoints;
- lesson 4 on 2 CPU processes ends with the same metrics as on 1 process with the same global batch,
  and each process trained on half of the rows.

Killed runs and --resume: tests/test_resume.py; the users' mistakes: tests/test_lesson_errors.py.
"""
import json
import math
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

import wideann  # noqa: E402
import wideann.data  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
CONFIGS = SCRIPTS / "configs"
PNG = b"\x89PNG\r\n\x1a\n"


def _env(tmp_path):
    env = dict(os.environ)
    env["HF_HOME"] = str(tmp_path / "hf")  # no user accelerate config can leak into the runs
    env.pop("ACCELERATE_USE_CPU", None)
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU's runs on any machine (the GPU's: benchmarks/gpu_checks.sh)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_cmd(script, *args, config="cpu.yaml"):
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if config:
        cmd += ["--config_file", str(CONFIGS / config)]
        if config == "cpu_2proc.yaml":
            cmd += ["--main_process_port", str(_free_port())]
    return cmd + [str(SCRIPTS / script), *map(str, args)]


def launch(tmp_path, script, *args, config="cpu.yaml", timeout=240):
    r = subprocess.run(_launch_cmd(script, *args, config=config), cwd=tmp_path, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{script} failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small raw CSV, its normalized table, and a separately normalized test table."""
    d = tmp_path_factory.mktemp("tiny")
    # one generated file split in two: make-data puts the columns on scales that depend on the seed
    wideann.make_data(d / "all.csv", rows=1403, cols=10, seed=1, noise=0.5)
    header, *lines = (d / "all.csv").read_text().splitlines(keepends=True)
    (d / "tiny.csv").write_text(header + "".join(lines[:1203]))
    (d / "tiny_test.csv").write_text(header + "".join(lines[1203:]))
    wideann.normalize([d / "tiny.csv"], d / "tiny.npy")
    return d


def _metrics(out: Path) -> dict:
    m = json.loads((out / "metrics.json").read_text())
    for key in ("test_rmse", "test_r2", "epochs", "train_seconds", "samples_per_second", "world_size"):
        assert key in m, key
    assert math.isfinite(m["test_rmse"]) and m["test_rmse"] > 0
    assert math.isfinite(m["test_r2"]) and m["test_r2"] <= 1
    assert m["train_seconds"] > 0 and m["samples_per_second"] > 0
    return m


def _is_png(p: Path):
    assert p.is_file(), p
    assert p.read_bytes()[:8] == PNG and p.stat().st_size > 2000, p


def test_lesson1_runs_with_no_data_option_on_the_shipped_example(tmp_path):
    out = launch(tmp_path, "1_first_ann.py", "--epochs", "1", config=None)
    run = tmp_path / "runs" / "1_first_ann"
    assert "wideann normalize" in out and "example.csv" in out, out
    assert (run / "data" / "example.npy").is_file() and (run / "data" / "example.stats.json").is_file()
    m = _metrics(run)
    assert m["epochs"] == 1 and m["world_size"] == 1
    assert "trained 1 epoch in " in out, out  # (not "1 epochs")
    assert m["test_rows"] == 3200
    assert m["test_rmse"] < 4.0  # even one epoch beats predicting the mean (std of y is ~5)


def test_lesson2_csv_input_and_separate_test_data(tmp_path, tiny):
    out_dir = tmp_path / "l2"
    out = launch(tmp_path, "2_deeper_ann.py", "--data", tiny / "tiny.csv", "--test-data", tiny / "tiny_test.csv",
                 "--epochs", "4", "--hidden", "16", "8", "--output-dir", out_dir)
    assert "wideann normalize" in out and "--stats" in out
    m = _metrics(out_dir)
    assert m["epochs"] == 4 and m["test_rows"] == 200 and 1 <= m["best_epoch"] <= 4
    _is_png(out_dir / "loss.png")
    state = torch.load(out_dir / "best_model.pt", weights_only=True)
    assert state["net.0.weight"].shape == (16, 9)


def test_predictions_of_a_table_whose_first_column_has_the_targets_name_are_in_the_targets_units(tmp_path, tiny):
    # the target was denormalized by its name, and the first column of that name was taken: its min and max
    header, *lines = (tiny / "tiny.csv").read_text().splitlines(keepends=True)
    dup = "y," + header.split(",", 1)[1]
    (tmp_path / "dup.csv").write_text(dup + "".join(lines))
    test_header, *test_lines = (tiny / "tiny_test.csv").read_text().splitlines(keepends=True)
    (tmp_path / "dup_test.csv").write_text(dup + "".join(test_lines))
    out = launch(tmp_path, "1_first_ann.py", "--data", "dup.csv", "--test-data", "dup_test.csv", "--epochs", "1",
                 "--output-dir", "run", config=None)
    assert "--columns -1 -1" in out
    y_true = np.loadtxt(tmp_path / "run" / "predictions.csv", delimiter=",", skiprows=1)[:, 0]
    want = np.array([float(line.rsplit(",", 1)[1]) for line in test_lines])
    np.testing.assert_allclose(y_true, want, rtol=1e-6, atol=1e-5 * np.abs(want).max())


def test_r2_of_one_test_row_is_undefined_and_metrics_json_stays_json(tmp_path, tiny):
    test_header, *test_lines = (tiny / "tiny_test.csv").read_text().splitlines(keepends=True)
    (tmp_path / "one.csv").write_text(test_header + test_lines[0])
    out = launch(tmp_path, "1_first_ann.py", "--data", tiny / "tiny.csv", "--test-data", "one.csv", "--epochs", "1",
                 "--output-dir", "run", config=None)
    assert "R² undefined (y is the same in every test row)" in out

    def no_constants(name):
        raise AssertionError(f"metrics.json holds {name}, which JSON does not have")

    m = json.loads((tmp_path / "run" / "metrics.json").read_text(), parse_constant=no_constants)
    assert m["test_r2"] is None and m["test_rows"] == 1 and math.isfinite(m["test_rmse"])


def test_lesson3_writes_predictions_in_original_units_plots_and_checkpoints(tmp_path, tiny):
    out_dir = tmp_path / "l3"
    launch(tmp_path, "3_out_of_core_ann.py", "--data", tiny / "tiny.npy", "--epochs", "3", "--hidden", "16",
           "--batch-size", "32", "--checkpoint-every", "10", "--output-dir", out_dir)
    m = _metrics(out_dir)
    _is_png(out_dir / "loss.png")
    _is_png(out_dir / "predicted_vs_actual.png")
    ckpts = sorted((out_dir / "checkpoints").glob("step_*"))
    assert 1 <= len(ckpts) <= 2 and (ckpts[-1] / "model.safetensors").is_file()
    assert not list((out_dir / "checkpoints").glob(".*.tmp"))
    # predictions.csv is in original units and agrees with the metrics
    pred = np.loadtxt(out_dir / "predictions.csv", delimiter=",", skiprows=1)
    assert pred.shape == (m["test_rows"], 2)
    raw = np.loadtxt(tiny / "tiny.csv", delimiter=",", skiprows=1)
    test_rows = wideann.data.split_rows(len(raw), test_fraction=0.2, val_fraction=0.1, seed=0).test
    np.testing.assert_allclose(pred[:, 0], raw[test_rows, -1], atol=1e-4, err_msg="y_true is not in original units")
    assert abs(np.sqrt(np.mean((pred[:, 1] - pred[:, 0]) ** 2)) - m["test_rmse"]) < 1e-4 * max(1, m["test_rmse"])


def test_lesson4_two_cpu_processes_equal_one_with_the_same_global_batch(tmp_path, tiny):
    # 1203 rows: the split leaves a training set that does not divide into the global batch, so the
    # last batch of every epoch is short and split unevenly between the processes
    # --dropout 0: its random masks differ between 1 and 2 processes (843 training rows is a small table,
    # whose default dropout is 0.2)
    common = ["--data", tiny / "tiny.npy", "--epochs", "3", "--hidden", "32", "16", "--patience", "100",
              "--dropout", "0"]
    one = tmp_path / "one"
    launch(tmp_path, "4_multi_gpu_ann.py", *common, "--batch-size", "64", "--output-dir", one)
    two = tmp_path / "two"
    out = launch(tmp_path, "4_multi_gpu_ann.py", *common, "--batch-size", "32", "--output-dir", two,
                 config="cpu_2proc.yaml")
    assert "x 2 process(es)" in out, "the 2-process config did not start 2 processes"
    acc = tmp_path / "acc"
    launch(tmp_path, "4_multi_gpu_ann.py", *common, "--batch-size", "16", "--grad-accum", "2",
           "--output-dir", acc, config="cpu_2proc.yaml")

    m1, m2, m3 = _metrics(one), _metrics(two), _metrics(acc)
    assert (m1["world_size"], m2["world_size"], m3["world_size"]) == (1, 2, 2)
    assert m1["global_batch_size"] == m2["global_batch_size"] == m3["global_batch_size"] == 64
    for m in (m2, m3):
        assert abs(m["test_rmse"] - m1["test_rmse"]) < 1e-4 * max(1, m1["test_rmse"])
        assert abs(m["test_r2"] - m1["test_r2"]) < 1e-4
        assert abs(m["best_val_loss"] - m1["best_val_loss"]) < 1e-4 * m1["best_val_loss"]
    # each process trained on half of the rows, and together on all of them every epoch
    n_train = m1["train_rows_per_process"][0]
    for m in (m2, m3):
        a, b = m["train_rows_per_process"]
        assert a + b == n_train and abs(a - b) <= m["epochs"]
    for run in (one, two):
        _is_png(run / "loss.png")
        _is_png(run / "predicted_vs_actual.png")
        assert list((run / "checkpoints").glob("step_*"))
        assert (run / "predictions.csv").is_file()


def test_cpu_configs_are_what_their_names_say():
    import yaml

    one = yaml.safe_load((CONFIGS / "cpu.yaml").read_text())
    two = yaml.safe_load((CONFIGS / "cpu_2proc.yaml").read_text())
    gpus = yaml.safe_load((CONFIGS / "4gpu.yaml").read_text())
    nodes = yaml.safe_load((CONFIGS / "multinode.yaml").read_text())
    assert one["num_processes"] == 1 and one["use_cpu"]
    # MULTI_CPU would start one process without mpirun: the trap DESIGN.md describes
    assert two["distributed_type"] == "MULTI_GPU" and two["num_processes"] == 2
    assert gpus["num_processes"] == 4 and gpus["mixed_precision"] == "bf16"
    assert nodes["num_machines"] >= 2 and nodes["num_processes"] % nodes["num_machines"] == 0


@pytest.mark.parametrize("script, lr, args", [
    ("3_out_of_core_ann.py", "2.00e-03", ["--max-steps", "1"]),
    ("4_multi_gpu_ann.py", "1.00e-03", ["--epochs", "1", "--batch-size", "5000"]),  # one step: one batch an epoch
])
def test_a_run_too_short_for_a_cycle_trains_at_the_learning_rate(tmp_path, tiny, script, lr, args):
    # OneCycleLR of 1 step trained at lr / 250,000: the run reported the untrained model as trained
    out = launch(tmp_path, script, "--data", tiny / "tiny.npy", "--hidden", "16", "--quiet", *args,
                 "--output-dir", tmp_path / "run")
    assert "too few steps (1) for a one-cycle schedule: the learning rate stays" in out, out
    epoch = next(line for line in out.splitlines() if line.startswith("epoch   1"))
    assert f"lr {lr}" in epoch, epoch
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 1


def epochs_run(out: str) -> list:
    """(epoch, was it the best so far) for each epoch line a lesson printed."""
    return [(int(m.group(1)), "*best*" in line) for line in out.splitlines() if (m := re.match(r"epoch +(\d+) ", line))]


@pytest.mark.parametrize("script", ["3_out_of_core_ann.py", "4_multi_gpu_ann.py"])
def test_early_stopping_counts_no_epoch_of_the_learning_rates_warm_up(tmp_path, tiny, script):
    # the one-cycle rate rises for the first 30% of the steps: a run stopped at an epoch there that did not improve
    # (large steps make the validation loss jump), before the falling part of the cycle where it improves most
    epochs, batch = 20, 64
    out = launch(tmp_path, script, "--data", tiny / "tiny.npy", "--epochs", epochs, "--batch-size", batch,
                 "--hidden", "32", "32", "--lr", "0.1", "--patience", "1", "--quiet", "--output-dir", tmp_path / "run")
    steps = math.ceil(int(re.search(r"-> (\d+) training rows", out).group(1)) / batch)  # an epoch's
    warmup = int(0.3 * epochs * steps)  # the steps before the rate's peak
    run = epochs_run(out)
    in_warmup = [e for e, best in run if not best and e * steps < warmup]
    assert in_warmup, f"no bad epoch in the warm-up: the test would show nothing\n{out}"
    # with --patience 1 the run stops after its first bad epoch past the peak, and only then
    counted = next((e for e, best in run if not best and e * steps >= warmup), epochs)
    assert len(run) == counted, out
    assert ("early stop: no improvement for 1 epochs" in out) == (counted < epochs), out
