"""What a finished lesson run leaves its user: a model that `wideann predict` applies to new raw data,
and the run's history in an experiment tracker (TensorBoard, read back from its event files).

The four lessons train for real (`accelerate launch`, lesson 4 on two CPU processes) on a small table
with a separate raw test CSV; `wideann predict` on that CSV must give exactly the lesson's own
`predictions.csv`.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

import wideann  # noqa: E402
from conftest import WIDEANN, assert_failed_cleanly, run_cli, temp_leftovers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
CONFIGS = SCRIPTS / "configs"
LESSONS = {1: "1_first_ann", 2: "2_deeper_ann", 3: "3_out_of_core_ann", 4: "4_multi_gpu_ann"}


def _env(tmp_path) -> dict:
    env = dict(os.environ)
    env["HF_HOME"] = str(tmp_path / "hf")  # no user accelerate config can leak into the runs
    env.pop("ACCELERATE_USE_CPU", None)
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(cwd, lesson: int, *args, processes: int = 1) -> str:
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if processes == 2:
        cmd += ["--config_file", str(CONFIGS / "cpu_2proc.yaml"), "--main_process_port", str(_free_port())]
    else:
        cmd += ["--config_file", str(CONFIGS / "cpu.yaml")]
    cmd += [str(SCRIPTS / f"{LESSONS[lesson]}.py"), *map(str, args)]
    r = subprocess.run(cmd, cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"lesson {lesson} failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    assert "rows/s" not in r.stderr and "\r" not in r.stderr, "a progress bar was drawn into a pipe"
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Lessons 1-4 trained on a 10-column table, tested on a separate raw CSV of 300 rows; lessons 2-4
    log to TensorBoard every 5 steps. Lesson 2 runs twice into one folder (4 epochs, then 3)."""
    d = tmp_path_factory.mktemp("runs")
    wideann.make_data(d / "all.csv", rows=1500, cols=10, seed=3, noise=0.5)
    header, *lines = (d / "all.csv").read_text().splitlines(keepends=True)
    (d / "train.csv").write_text(header + "".join(lines[:1200]))
    (d / "test.csv").write_text(header + "".join(lines[1200:]))
    common = ["--data", d / "train.csv", "--test-data", d / "test.csv"]
    tracked = ["--log-with", "tensorboard", "--log-every", "5"]
    _launch(d, 1, *common, "--epochs", "2", "--output-dir", d / "l1")
    _launch(d, 2, *common, "--epochs", "4", "--hidden", "16", "8", "--output-dir", d / "l2", *tracked)
    _launch(d, 2, *common, "--epochs", "3", "--hidden", "16", "8", "--output-dir", d / "l2", *tracked)
    _launch(d, 3, *common, "--epochs", "3", "--hidden", "16", "8", "--dropout", "0.1", "--output-dir", d / "l3",
            *tracked)
    _launch(d, 4, *common, "--epochs", "2", "--hidden", "32", "16", "--batch-size", "32", "--grad-accum", "2",
            "--output-dir", d / "l4", *tracked, processes=2)
    return d


# ---- wideann predict ------------------------------------------------------------------------------
def _column(path: Path, name: str) -> list[str]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return [r[rows[0].index(name)] for r in rows[1:]]


@pytest.mark.parametrize("lesson", [1, 2, 3, 4])
def test_predict_gives_the_lessons_own_predictions(runs, tmp_path, lesson):
    run = runs / f"l{lesson}"
    card = json.loads((run / "model.json").read_text())
    assert card["format"] == "wideann-model" and card["layers"], card
    assert card["options"]["epochs"] == {1: 2, 2: 3, 3: 3, 4: 2}[lesson]
    assert json.loads((run / "stats.json").read_text())["columns"][-1] == "y"
    out = tmp_path / "pred.csv"
    p = run_cli("predict", run, runs / "test.csv", "-o", out)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and "300 predictions" in p.stderr
    want = _column(run / "predictions.csv", "y_pred")
    assert len(want) == 300
    if lesson == 4:  # two processes predicted 150 rows each: other batches, so the last bits may differ
        np.testing.assert_allclose(np.array(_column(out, "y_pred"), float), np.array(want, float), rtol=1e-6)
    else:
        assert _column(out, "y_pred") == want, "wideann predict differs from the lesson's predictions.csv"
    assert sorted(os.listdir(tmp_path)) == ["pred.csv"]


def test_predict_gives_the_predictions_of_a_bf16_run(tmp_path):
    """Lesson 4 trained under bf16 autocast (it works on a CPU) predicted its test set under autocast too: 6% off
    what `wideann predict` computes with the saved float32 weights. The test runs in full precision now."""
    wideann.make_data(tmp_path / "all.csv", rows=900, cols=8, seed=4, noise=0.5)
    header, *lines = (tmp_path / "all.csv").read_text().splitlines(keepends=True)
    (tmp_path / "train.csv").write_text(header + "".join(lines[:700]))
    (tmp_path / "test.csv").write_text(header + "".join(lines[700:]))
    run = tmp_path / "bf16"
    _launch(tmp_path, 4, "--data", tmp_path / "train.csv", "--test-data", tmp_path / "test.csv", "--epochs", "2",
            "--hidden", "32", "16", "--batch-size", "32", "--mixed-precision", "bf16", "--output-dir", run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["mixed_precision"] == "bf16"
    out = tmp_path / "pred.csv"
    p = run_cli("predict", run, tmp_path / "test.csv", "-o", out)
    assert p.returncode == 0, p.stderr
    assert _column(out, "y_pred") == _column(run / "predictions.csv", "y_pred")
    # and the test metrics are those of these predictions
    y_true, y_pred = (np.array(_column(run / "predictions.csv", c), float) for c in ("y_true", "y_pred"))
    assert abs(np.sqrt(np.mean((y_pred - y_true) ** 2)) - metrics["test_rmse"]) < 1e-4 * metrics["test_rmse"]


def test_predict_gives_the_predictions_of_a_run_on_a_float16_table(tmp_path):
    """A raw test CSV was normalized by the lesson in float32 and by `wideann predict` in the training table's
    float16: predictions up to 3e-4 apart. The lesson normalizes it in the training table's dtype now."""
    wideann.make_data(tmp_path / "all.csv", rows=900, cols=8, seed=5, noise=0.5)
    header, *lines = (tmp_path / "all.csv").read_text().splitlines(keepends=True)
    (tmp_path / "train.csv").write_text(header + "".join(lines[:700]))
    (tmp_path / "test.csv").write_text(header + "".join(lines[700:]))
    wideann.normalize([tmp_path / "train.csv"], tmp_path / "train.npy", dtype="float16")
    run = tmp_path / "f16"
    _launch(tmp_path, 3, "--data", tmp_path / "train.npy", "--test-data", tmp_path / "test.csv", "--epochs", "2",
            "--hidden", "16", "8", "--output-dir", run)
    assert json.loads((run / "metrics.json").read_text())["table_dtype"] == "float16"
    assert np.load(run / "data" / "test" / "test.npy", mmap_mode="r").dtype == np.float16
    out = tmp_path / "pred.csv"
    p = run_cli("predict", run, tmp_path / "test.csv", "-o", out)
    assert p.returncode == 0, p.stderr
    assert _column(out, "y_pred") == _column(run / "predictions.csv", "y_pred")


def test_predict_on_the_inputs_alone_with_row_numbers(runs, tmp_path):
    """New data has no target column: the input columns alone give the same predictions."""
    with open(runs / "test.csv") as src, open(tmp_path / "new.csv", "w") as dst:
        for line in src:
            dst.write(line.rsplit(",", 1)[0] + "\n")
    out = tmp_path / "pred.csv"
    p = run_cli("predict", runs / "l3", tmp_path / "new.csv", "-o", out, "--row-numbers", "--batch-size", "7")
    assert p.returncode == 0, p.stderr
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["row", "y_pred"]
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(300)]
    want = np.array(_column(runs / "l3" / "predictions.csv", "y_pred"), dtype=float)
    got = np.array([r[1] for r in rows[1:]], dtype=float)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())  # other batch sizes


def test_rebuilt_model_is_the_lessons_architecture(runs):
    layers = json.loads((runs / "l3" / "model.json").read_text())["layers"]
    assert [l["type"] for l in layers] == ["Linear", "LayerNorm", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert [l["name"] for l in layers[:2]] == ["net.0", "net.1"]
    assert layers[0]["in_features"] == 9 and layers[0]["out_features"] == 16 and layers[3]["p"] == 0.1
    weights = torch.load(runs / "l3" / "best_model.pt", weights_only=True)
    assert weights["net.0.weight"].shape == (16, 9)  # the lessons' own file is still a plain state_dict


def _bad(runs, tmp_path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_predict_refuses_other_columns(runs, tmp_path):
    header, *lines = (runs / "test.csv").read_text().splitlines(keepends=True)
    out = tmp_path / "pred.csv"
    short = _bad(runs, tmp_path, "short.csv", "".join(",".join(l.split(",")[:8]) + "\n" for l in [header] + lines))
    msg = assert_failed_cleanly(run_cli("predict", runs / "l1", short, "-o", out), leftovers=[out], folder=tmp_path,
                                names=[str(short)], line=1)
    assert "8 columns" in msg and "10" in msg
    renamed = _bad(runs, tmp_path, "renamed.csv", header.replace("x3", "x33") + "".join(lines))
    assert_failed_cleanly(run_cli("predict", runs / "l1", renamed, "-o", out), leftovers=[out], folder=tmp_path,
                          names=[str(renamed), "x3"], line=1, column=3)
    lines[4] = "n/a," + lines[4].split(",", 1)[1]
    bad = _bad(runs, tmp_path, "bad.csv", header + "".join(lines))
    assert_failed_cleanly(run_cli("predict", runs / "l1", bad, "-o", out), leftovers=[out], folder=tmp_path,
                          names=[str(bad)], line=6, column=1)


def test_predict_refuses_what_is_not_a_usable_run(runs, tmp_path):
    out = tmp_path / "pred.csv"
    new = runs / "test.csv"
    assert_failed_cleanly(run_cli("predict", tmp_path / "nope", new, "-o", out), names=["nope"], leftovers=[out])
    (tmp_path / "empty").mkdir()
    assert_failed_cleanly(run_cli("predict", tmp_path / "empty", new, "-o", out), names=["model.json"],
                          leftovers=[out])
    # weights of another architecture under the run's name
    mixed = tmp_path / "mixed"
    shutil.copytree(runs / "l1", mixed, ignore=shutil.ignore_patterns("data"))
    shutil.copy(runs / "l2" / "best_model.pt", mixed / "model.pt")
    assert_failed_cleanly(run_cli("predict", mixed, new, "-o", out), names=["model.pt"], leftovers=[out],
                          folder=tmp_path)
    # a model the lesson could not describe
    card = json.loads((runs / "l1" / "model.json").read_text())
    card.update(layers=None, not_rebuildable="layer net.1 (Bilinear) is not one wideann predict can rebuild")
    del card["sha256"]["card"]  # (as a card written before its own digest)
    (mixed / "model.json").write_text(json.dumps(card))
    msg = assert_failed_cleanly(run_cli("predict", mixed, new, "-o", out), leftovers=[out])
    assert "cannot be rebuilt" in msg and "Bilinear" in msg
    # output: a missing folder, not a CSV; wrong usage
    assert_failed_cleanly(run_cli("predict", runs / "l1", new, "-o", tmp_path / "no" / "p.csv"), names=["no"])
    assert_failed_cleanly(run_cli("predict", runs / "l1", new, "-o", tmp_path / "p.npy"), names=["p.npy"], code=2)
    p = run_cli("predict", runs / "l1", new, "-o", out, "--batch-size", "0")
    assert p.returncode == 2 and "--batch-size" in p.stderr and "Traceback" not in p.stderr
    assert temp_leftovers(tmp_path) == [] and not out.exists()


def test_predict_refuses_to_write_over_what_it_reads(runs, tmp_path):
    shutil.copytree(runs / "l1", tmp_path / "l1", ignore=shutil.ignore_patterns("data"))
    shutil.copy(runs / "test.csv", tmp_path / "new.csv")
    for out in (tmp_path / "new.csv", tmp_path / "l1" / "model.json", tmp_path / "l1" / "stats.json",
                tmp_path / "l1" / "model.pt"):
        before = out.read_bytes()
        msg = assert_failed_cleanly(run_cli("predict", tmp_path / "l1", tmp_path / "new.csv", "-o", out), code=2,
                                    names=[out.name])
        assert "is also an input of this command" in msg and out.read_bytes() == before


def test_predict_says_which_record_got_a_prediction_that_is_not_a_number(runs, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(runs / "l1", broken, ignore=shutil.ignore_patterns("data"))
    card = json.loads((broken / "model.json").read_text())
    weights = torch.load(broken / card["weights"], weights_only=True)
    last_bias = [k for k in weights if k.endswith("bias")][-1]
    weights[last_bias] = torch.full_like(weights[last_bias], float("nan"))
    torch.save(weights, broken / card["weights"])
    del card["sha256"]  # (as a card written before the digests: these weights are read, not refused)
    (broken / "model.json").write_text(json.dumps(card))
    out = tmp_path / "pred.csv"
    msg = assert_failed_cleanly(run_cli("predict", broken, runs / "test.csv", "-o", out), leftovers=[out],
                                folder=tmp_path, names=[str(runs / "test.csv")])
    assert "the model's prediction for record 0 (counted from 0, as --row-numbers counts them) is nan" in msg


def test_predict_refuses_a_run_whose_files_are_not_its_cards(runs, tmp_path):
    # a best model written after its card (a run stopped between the two), or stats copied from another run
    out = tmp_path / "pred.csv"
    for name, other in (("model.pt", runs / "l1"), ("stats.json", runs / "l2")):
        run = tmp_path / f"swapped-{name}"
        shutil.copytree(runs / "l1", run, ignore=shutil.ignore_patterns("data"))
        if name == "model.pt":
            weights = torch.load(run / name, weights_only=True)
            torch.save({k: v + 1 for k, v in weights.items()}, run / name)  # other numbers, same layers
        else:
            stats = json.loads((run / name).read_text())
            stats["max"][-1] += 1.0  # another table's range of y
            (run / name).write_text(json.dumps(stats))
        msg = assert_failed_cleanly(run_cli("predict", run, runs / "test.csv", "-o", out), leftovers=[out],
                                    folder=tmp_path, names=[str(run / name)])
        assert "not the file model.json was written with (its SHA-256 differs)" in msg


@pytest.mark.parametrize("removed", ["all", "card", "weights"])
def test_predict_reads_a_card_without_its_digests_but_says_what_it_could_not_check(runs, tmp_path, removed):
    # a card written before 2026-11-27 records no SHA-256 (or not its own): read, since a long run written by an
    # earlier wideann stays usable, but not without a word: swapped weights would be wrong numbers said by no one
    run = tmp_path / "old"
    shutil.copytree(runs / "l2", run, ignore=shutil.ignore_patterns("data"))
    card = json.loads((run / "model.json").read_text())
    if removed == "all":
        del card["sha256"]
    else:
        del card["sha256"][removed]
        if removed == "weights":  # (its own digest covers the others: an old card's, written without that one)
            del card["sha256"]["card"]
    (run / "model.json").write_text(json.dumps(card, indent=1))
    out = tmp_path / "pred.csv"
    r = run_cli("predict", run, runs / "test.csv", "-o", out)
    assert r.returncode == 0, r.stderr
    warning = [ln for ln in r.stderr.splitlines() if ln.startswith("wideann: warning: ")]
    assert len(warning) == 1 and f"{run / 'model.json'} records no SHA-256 of " in warning[0], r.stderr
    assert ("best_model.pt" in warning[0]) == (removed in ("all", "weights")), warning
    assert ("stats.json" in warning[0]) == (removed == "all"), warning
    assert out.read_bytes() == run_cli_output(runs / "l2", runs / "test.csv", tmp_path / "whole.csv")
    # a card that records them all: no warning
    r = run_cli("predict", runs / "l2", runs / "test.csv", "-o", tmp_path / "whole2.csv")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr


def run_cli_output(run, new, out) -> bytes:
    r = run_cli("predict", run, new, "-o", out)
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


@pytest.mark.parametrize("edit", [
    {"weights": 5}, {"stats": None}, {"target": ["y"]}, {"n_inputs": "9"}, {"n_inputs": 0}, {"inputs": ["as_is"]},
    {"inputs": "scaled"}, {"layers": "Linear"}, {"layers": ["Linear"]}, {"layers": [{"type": "Linear"}]},
    {"layers": [{"type": "Linear", "name": "net.0", "in_features": 9, "bias": True}]},
    {"layers": [{"type": "Linear", "name": "net.0", "in_features": "9", "out_features": 1, "bias": True}]},
    {"layers": [{"type": "Linear", "name": "net.0", "in_features": -1, "out_features": 1, "bias": True}]},
])
def test_predict_says_what_is_wrong_with_an_edited_card_in_one_line(runs, tmp_path, edit):
    run = tmp_path / "edited"
    shutil.copytree(runs / "l1", run, ignore=shutil.ignore_patterns("data"))
    card = json.loads((run / "model.json").read_text())
    card.update(edit)
    del card["sha256"]["card"]  # (as a card written before its own digest: its fields are checked one by one)
    (run / "model.json").write_text(json.dumps(card))
    out = tmp_path / "pred.csv"
    assert_failed_cleanly(run_cli("predict", run, runs / "test.csv", "-o", out), leftovers=[out], folder=tmp_path,
                          names=["model.json"])


@pytest.mark.parametrize("edit", ["activation", "inputs", "options"])
def test_predict_refuses_a_card_edited_by_hand(runs, tmp_path, edit):
    # well-typed edits that the field checks cannot see: the rebuilt network would not be the trained one
    run = tmp_path / "edited"
    shutil.copytree(runs / "l2", run, ignore=shutil.ignore_patterns("data"))
    text = (run / "model.json").read_text()
    card = json.loads(text)
    if edit == "activation":
        layer = next(layer for layer in card["layers"] if layer["type"] == "ReLU")
        layer.update(type="GELU", approximate="none")
    elif edit == "inputs":
        card["inputs"] = "centered" if card["inputs"] == "as_is" else "as_is"
    else:
        card["options"]["hidden"] = [1, 2, 3]
    (run / "model.json").write_text(json.dumps(card, indent=1))
    out = tmp_path / "pred.csv"
    msg = assert_failed_cleanly(run_cli("predict", run, runs / "test.csv", "-o", out), leftovers=[out],
                                folder=tmp_path, names=[str(run / "model.json")])
    assert "edited since the lesson wrote it" in msg
    # the card as written, only laid out another way (keys reordered, no indent), is the same card
    (run / "model.json").write_text(json.dumps(dict(reversed(json.loads(text).items()))))
    r = run_cli("predict", run, runs / "test.csv", "-o", out)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("content", [b"hi\n", b"a", b""])
def test_predict_says_a_damaged_weights_file_in_one_line(runs, tmp_path, content):
    run = tmp_path / "damaged"
    shutil.copytree(runs / "l1", run, ignore=shutil.ignore_patterns("data"))
    card = json.loads((run / "model.json").read_text())
    del card["sha256"]  # as a card written before the digests: the weights themselves are read
    (run / "model.json").write_text(json.dumps(card))
    (run / "model.pt").write_bytes(content)
    out = tmp_path / "pred.csv"
    assert_failed_cleanly(run_cli("predict", run, runs / "test.csv", "-o", out), leftovers=[out], folder=tmp_path,
                          names=[str(run / "model.pt")])


def test_predict_counts_a_quoted_header_field_with_a_comma_as_one(runs, tmp_path):
    run = tmp_path / "quoted"
    shutil.copytree(runs / "l1", run, ignore=shutil.ignore_patterns("data"))
    stats = json.loads((run / "stats.json").read_text())
    stats["columns"][0] = "x,1"  # a column name with the delimiter in it, quoted in the CSV
    (run / "stats.json").write_text(json.dumps(stats))
    card = json.loads((run / "model.json").read_text())
    del card["sha256"]  # (the stats were edited on purpose)
    (run / "model.json").write_text(json.dumps(card))
    header, body = (runs / "test.csv").read_text().split("\n", 1)
    new = tmp_path / "new.csv"
    new.write_text('"x,1",' + header.split(",", 1)[1] + "\n" + body)
    r = run_cli("predict", run, new, "-o", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 301


def test_predict_on_a_full_disk_leaves_nothing(runs, tiny_fs):
    out = tiny_fs / "pred.csv"
    big = runs / "big_test.csv"
    if not big.exists():
        wideann.make_data(big, rows=4000, cols=10, seed=9)  # ~160 KB normalized: more than the 64 KiB disk
    msg = assert_failed_cleanly(run_cli("predict", runs / "l1", big, "-o", out), leftovers=[out], folder=tiny_fs)
    assert "space" in msg


def test_predict_starts_the_cli_without_torch_for_other_commands():
    code = ("import sys, wideann.cli as c; c.build_parser().parse_args(['predict', 'r', 'n.csv', '-o', 'o.csv']); "
            "print('torch' in sys.modules, 'numpy' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split() == ["False", "False"], r.stdout + r.stderr


# ---- experiment tracking --------------------------------------------------------------------------
def _events(run: Path, lesson: int):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = run / LESSONS[lesson]
    acc = EventAccumulator(str(folder))
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    return folder, scalars


def _hparams(folder: Path) -> dict:
    """The options as TensorBoard's hparams plugin stored them (the newest run in the folder)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    found = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        acc = EventAccumulator(str(sub))
        acc.Reload()
        try:
            contents = acc.PluginTagToContent("hparams").values()
        except KeyError:  # a folder without them (accelerate's hparams.yml)
            continue
        for content in contents:
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            if data.HasField("session_start_info"):
                found = {k: (v.string_value if v.HasField("string_value") else v.number_value)
                         for k, v in data.session_start_info.hparams.items()}
    return found


def _close(a, b, rel=1e-6):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def test_tensorboard_has_the_options_losses_learning_rate_throughput_and_final_metrics(runs):
    run = runs / "l2"
    metrics = json.loads((run / "metrics.json").read_text())
    folder, s = _events(run, 2)
    # per step, every 5 steps: 1200 rows -> 1080 training rows -> 17 steps of 64 per epoch, 3 epochs
    assert [step for step, _ in s["train/loss"]] == list(range(5, 52, 5))
    assert all(0 < v < 1 for _, v in s["train/loss"])
    assert all(_close(v, 2e-3) for _, v in s["train/lr"])
    # per epoch
    assert [step for step, _ in s["epoch/val_loss"]] == [17, 34, 51]
    assert [v for _, v in s["epoch"]] == [1, 2, 3]
    assert _close(min(v for _, v in s["epoch/val_loss"]), metrics["best_val_loss"])
    assert all(v > 0 for _, v in s["epoch/samples_per_second"]) and len(s["epoch/train_loss"]) == 3
    # the final numbers
    for key in ("test_rmse", "test_r2", "best_val_loss", "samples_per_second"):
        assert _close(s[f"final/{key}"][0][1], metrics[key]), key
    # the options
    hp = _hparams(folder)
    assert hp["hidden"] == "16 8" and hp["epochs"] == 3 and hp["batch_size"] == 64 and hp["log_with"] == "tensorboard"


def test_a_new_run_in_the_same_folder_replaces_the_old_curves(runs):
    """Lesson 2 ran 4 epochs, then 3 into the same folder: TensorBoard shows the second run only."""
    metrics = json.loads((runs / "l2" / "metrics.json").read_text())
    _, s = _events(runs / "l2", 2)
    assert len(list((runs / "l2" / LESSONS[2]).glob("events.out.tfevents.*"))) == 1  # the first run's went
    assert [v for _, v in s["epoch"]] == [1, 2, 3]
    assert _close(s["final/test_rmse"][-1][1], metrics["test_rmse"]) and len(s["final/test_rmse"]) == 1


def test_tracking_in_lessons_3_and_4(runs):
    _, s3 = _events(runs / "l3", 3)
    lrs = [v for _, v in s3["train/lr"]]
    assert max(lrs) <= 2e-3 * (1 + 1e-6) and len(set(lrs)) > 3, "the one-cycle schedule's rate is logged"
    # lesson 4, two processes: one writer (the main process); steps are optimizer steps
    m4 = json.loads((runs / "l4" / "metrics.json").read_text())
    assert m4["world_size"] == 2
    assert len(list((runs / "l4" / LESSONS[4]).glob("events.out.tfevents.*"))) == 1
    _, s4 = _events(runs / "l4", 4)
    steps_per_epoch = math.ceil(math.ceil(1080 / 64) / 2)  # global batch 2 x 32 rows, 2 batches per step
    assert [step for step, _ in s4["epoch/val_loss"]] == [steps_per_epoch, 2 * steps_per_epoch]
    assert _close(s4["final/test_rmse"][0][1], m4["test_rmse"])


def _run(tmp_path, lesson: int, *args) -> subprocess.CompletedProcess:
    """A lesson run with python (one process), into tmp_path/run."""
    return subprocess.run([sys.executable, str(SCRIPTS / f"{LESSONS[lesson]}.py"), *map(str, args), "--quiet",
                           "--output-dir", tmp_path / "run"], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def tracked_run(tmp_path):
    """A small table (and a copy of it with a nan in a training row), and a function that runs a lesson on it
    into tmp_path/run, tracked by TensorBoard; what a finished run leaves is checked."""
    wideann.make_data(tmp_path / "t.csv", rows=700, cols=6, seed=5, noise=0.5)
    wideann.normalize([tmp_path / "t.csv"], tmp_path / "t.npy")
    nan = np.load(tmp_path / "t.npy")
    nan[2, 1] = np.nan  # a training row: lessons 3-4 do not read them ahead, the training diverges
    np.save(tmp_path / "nan.npy", nan)
    shutil.copy(tmp_path / "t.stats.json", tmp_path / "nan.stats.json")

    def run(lesson, *args, table="t.npy", tracked=True, code=0):
        r = _run(tmp_path, lesson, "--data", tmp_path / table, "--epochs", "2", "--hidden", "8",
                 *(["--log-with", "tensorboard", "--log-every", "2"] if tracked else []), *args)
        assert r.returncode == code, r.stderr[-3000:]
        return r
    return run


def _curves_and_results(run: Path, lesson: int):
    folder = run / LESSONS[lesson]
    scalars = _events(run, lesson)[1] if folder.is_dir() else {}
    results = {n: (run / n).read_bytes() for n in ("metrics.json", "predictions.csv", "loss.png") if (run / n).exists()}
    return scalars, results


@pytest.mark.parametrize("lesson", [2, 3])
def test_a_run_refused_before_it_trains_leaves_the_earlier_runs_curves_and_results(tmp_path, tracked_run, lesson):
    # lesson 2 started its trackers (TensorBoard purged the earlier run's curves) before it looked at the data
    tracked_run(lesson)
    scalars, results = _curves_and_results(tmp_path / "run", lesson)
    assert scalars["epoch"] and "final/test_rmse" in scalars and set(results) == {"metrics.json", "predictions.csv",
                                                                                   "loss.png"}
    r = tracked_run(lesson, table="missing.npy", code=1)
    assert "no such file" in r.stderr
    assert _curves_and_results(tmp_path / "run", lesson) == (scalars, results)


@pytest.mark.parametrize("lesson", [3, 4])
def test_a_run_that_fails_in_training_leaves_no_results_beside_its_own_curves(tmp_path, tracked_run, lesson):
    # the failed run's trackers purged the earlier run's curves, and its metrics.json and predictions.csv stayed
    tracked_run(lesson)
    first = json.loads((tmp_path / "run" / "metrics.json").read_text())
    r = tracked_run(lesson, table="nan.npy", code=1)
    assert "training diverged" in r.stderr
    scalars, results = _curves_and_results(tmp_path / "run", lesson)
    assert results == {} and "removed the results of an earlier run" in r.stdout
    assert "final/test_rmse" not in scalars and len(scalars["epoch/val_loss"]) == 2  # the failed run's curves alone
    assert not math.isfinite(scalars["epoch/val_loss"][0][1]) and math.isfinite(first["test_rmse"])


def test_a_run_without_a_tracker_removes_the_earlier_runs_curves(tmp_path, tracked_run):
    # they stayed, beside results that were not theirs
    tracked_run(3)
    assert list((tmp_path / "run" / LESSONS[3]).rglob("events.out.tfevents.*"))
    r = tracked_run(3, "--lr", "0.01", tracked=False)
    assert "its TensorBoard curves (3_out_of_core_ann/)" in r.stdout
    assert not (tmp_path / "run" / LESSONS[3]).exists() and (tmp_path / "run" / "metrics.json").is_file()
    # a run resumed keeps its own curves (and continues them, when tracked)
    tracked_run(3, "--lr", "0.01")
    r = tracked_run(3, "--lr", "0.01", "--resume")
    assert "resumed from" in r.stdout and "removed the results" not in r.stdout
    assert [v for _, v in _events(tmp_path / "run", 3)[1]["epoch"]] == [1, 2]


def _lesson_alone(*args) -> subprocess.CompletedProcess:
    """A lesson's argument parsing, without accelerate launch (it fails before any work)."""
    return subprocess.run([sys.executable, str(SCRIPTS / "2_deeper_ann.py"), *args], capture_output=True,
                          text=True, timeout=120)


def test_a_tracker_that_is_not_installed_is_a_one_line_usage_error():
    import importlib.util

    from wideann.course import TRACKER_PACKAGES

    absent = next((t for t in ("aim", "clearml", "dvclive", "swanlab", "comet_ml", "trackio", "mlflow", "wandb")
                   if importlib.util.find_spec(t) is None), None)
    if absent is None:
        pytest.skip("every tracker is installed here")
    for args, words in ((["--log-with", absent], ["not installed", f"pip install {TRACKER_PACKAGES[absent]}"]),
                        (["--log-with", "tensorbored"], ["unknown tracker", "tensorboard"])):
        p = _lesson_alone(*args)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        assert p.returncode == 2 and len(lines) == 1, p.stderr
        assert all(w in lines[0] for w in words) and "--log-with" in lines[0], lines[0]


# ---- bounded memory -------------------------------------------------------------------------------
_PEAK_RSS = r"""
import json, resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"rc": p.returncode, "stderr": p.stderr[-2000:],
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def _peak_rss_mb(args) -> float:
    """Peak RSS of ``wideann ARGS`` (ru_maxrss of the only child of a fresh wrapper process)."""
    out = subprocess.run([sys.executable, "-c", _PEAK_RSS, *WIDEANN, *map(str, args)], capture_output=True,
                         text=True, timeout=600)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0, res["stderr"]
    return res["maxrss_kb"] / 1024


def test_predict_memory_does_not_grow_with_the_rows(tmp_path):
    """12,849 columns: 250 and 1,000 rows (normalized: 13 and 51 MB) predicted in batches of 64 rows
    take the same peak memory; holding the table would add 38 MB."""
    cols, r = 12_849, np.random.default_rng(5)
    pool = [(",".join(f"{v:.2f}" for v in r.uniform(0, 100, cols)) + "\n").encode() for _ in range(20)]
    header = (",".join([f"x{i}" for i in range(1, cols)] + ["y"]) + "\n").encode()
    for rows in (250, 1000):
        with open(tmp_path / f"t{rows}.csv", "wb") as f:
            f.write(header)
            for i in range(rows):
                f.write(pool[(i * 7 + i // 20) % 20])
    _launch(tmp_path, 1, "--data", tmp_path / "t250.csv", "--epochs", "1", "--hidden", "8",
            "--output-dir", tmp_path / "run")
    rss = {rows: _peak_rss_mb(["predict", tmp_path / "run", tmp_path / f"t{rows}.csv", "-o",
                               tmp_path / f"p{rows}.csv", "--batch-size", "64", "--threads", "2"])
           for rows in (250, 1000)}
    assert len((tmp_path / "p1000.csv").read_text().splitlines()) == 1001
    assert rss[1000] - rss[250] < 16, f"peak RSS grew from {rss[250]:.0f} to {rss[1000]:.0f} MB with 4x the rows"


# ---- the model card ---------------------------------------------------------------------------------
def test_a_model_the_card_cannot_rebuild_is_marked_so_when_saved(tmp_path):
    """An unknown layer type, or a forward that is not the layers in order, is caught at save time."""
    from torch import nn

    from wideann import modelcard

    wideann.make_data(tmp_path / "d.csv", rows=50, cols=6)
    wideann.normalize([tmp_path / "d.csv"], tmp_path / "d.npy")
    stats = tmp_path / "d.stats.json"

    class Doubled(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))

        def forward(self, x):
            return 2 * self.net(x)

    good = nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4), nn.GELU(), nn.Dropout(0.2), nn.Linear(4, 1))
    for model, why in ((good, None), (Doubled(), "forward"),
                       (nn.Sequential(nn.Linear(5, 1), nn.Softplus()), "Softplus")):
        model.train()
        rng = torch.get_rng_state()
        card = modelcard.write(model, tmp_path, "w.pt", stats_path=stats, train=tmp_path / "d.npy")
        assert model.training, "the check must give the model back in training mode"
        assert torch.equal(torch.get_rng_state(), rng), "saving must not draw from the run's random numbers"
        if why is None:
            assert card["layers"] and "not_rebuildable" not in card
            rebuilt = modelcard.build(card["layers"])
            modelcard.load_weights(rebuilt, card["layers"], model.state_dict())
            x = torch.rand(3, 5)
            assert torch.equal(rebuilt.eval()(x), model.eval()(x))
        else:
            assert card["layers"] is None and why in card["not_rebuildable"], card
    assert (tmp_path / "stats.json").read_bytes() == stats.read_bytes()
