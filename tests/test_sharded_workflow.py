"""The sharded workflow as a user runs it on machines that each hold some raw CSV shards (issue 7, point 2):

    wideann stats shard_k.csv -o shard_k.stats.json          (per shard)
    wideann merge-stats shard_*.stats.json -o merged.json
    wideann normalize shard_k.csv -o shards/shard_k.npy --stats merged.json   (per shard)
    accelerate launch scripts/4_multi_gpu_ann.py --data shards/ --stats merged.json

trains exactly the model that the concatenated table trains (same metrics, same weights, same predictions).
"""
import json
import subprocess
import sys
from argparse import Namespace

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("accelerate")

import torch  # noqa: E402

import wideann  # noqa: E402
from conftest import load_stats_json, ok  # noqa: E402
from test_lessons import SCRIPTS, _env, _metrics, launch  # noqa: E402
from wideann import course  # noqa: E402


def _raw_shards(tmp_path, cuts, rows, cols=8):
    """One generated table cut into raw CSV shards (each with the header), as they arrive on several machines."""
    wideann.make_data(tmp_path / "all.csv", rows=rows, cols=cols, seed=3, noise=0.5)
    header, *lines = (tmp_path / "all.csv").read_text().splitlines(keepends=True)
    csvs = []
    for k in range(len(cuts) - 1):
        csvs.append(tmp_path / f"raw_{k}.csv")
        csvs[-1].write_text(header + "".join(lines[cuts[k]:cuts[k + 1]]))
    return csvs


def test_stats_merge_normalize_per_shard_then_lesson4_equals_the_concatenated_table(tmp_path):
    csvs = _raw_shards(tmp_path, [0, 250, 251, 600, 900], 900)  # uneven shards, one of a single row

    # per shard, as on separate machines
    for c in csvs:
        ok("stats", c, "-o", c.with_suffix(".stats.json"))
    ok("merge-stats", *[c.with_suffix(".stats.json") for c in csvs], "-o", tmp_path / "merged.json")
    (tmp_path / "shards").mkdir()
    for k, c in enumerate(csvs):
        ok("normalize", c, "-o", tmp_path / "shards" / f"part-{k:02d}.npy", "--stats", tmp_path / "merged.json")
    info = ok("info", tmp_path / "shards").stdout
    assert "4 .npy shards read as one table, 900 x 8 float32" in info

    # the reference: the concatenated table normalized in one go
    ok("normalize", tmp_path / "all.csv", "-o", tmp_path / "all.npy")
    merged, fitted = (json.loads((tmp_path / n).read_text()) for n in ("merged.json", "all.stats.json"))
    assert (merged["min"], merged["max"], merged["n_rows"]) == (fitted["min"], fitted["max"], fitted["n_rows"])

    common = ["--epochs", "3", "--hidden", "32", "16", "--batch-size", "32", "--patience", "100"]
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    launch(tmp_path, "4_multi_gpu_ann.py", "--data", tmp_path / "all.npy", *common, "--output-dir", whole)
    out = launch(tmp_path, "4_multi_gpu_ann.py", "--data", tmp_path / "shards", "--stats", tmp_path / "merged.json",
                 *common, "--output-dir", sharded)
    assert "table: 900 rows" in out
    a, b = _metrics(whole), _metrics(sharded)
    for key in ("test_rmse", "test_r2", "best_epoch", "best_val_loss", "epochs", "test_rows"):
        assert a[key] == b[key], (key, a[key], b[key])
    wa, wb = torch.load(whole / "best_model.pt"), torch.load(sharded / "best_model.pt")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (whole / "predictions.csv").read_bytes() == (sharded / "predictions.csv").read_bytes()
    # and the shards hold exactly the bytes of the concatenated table
    np.testing.assert_array_equal(wideann.data.load_table(tmp_path / "shards"),
                                  wideann.data.load_table(tmp_path / "all.npy"))


def test_a_lesson_given_one_shards_stats_for_the_shards_refuses_them_naming_both(tmp_path):
    """Shards normalized with the merged stats (no stats file beside them), then the lesson given one shard's
    stats file (the same columns): it trained and reported RMSE and predictions through that shard's min and max.
    Now refused, before anything is written; the stats beside each shard (normalize --stats-out, a copy of the
    merged stats) record what each shard was made with."""
    csvs = _raw_shards(tmp_path, [0, 300, 600, 900], 900)
    for c in csvs:
        ok("stats", c, "-o", c.with_suffix(".stats.json"))
    ok("merge-stats", *[c.with_suffix(".stats.json") for c in csvs], "-o", tmp_path / "merged.json")
    shards = tmp_path / "shards"
    shards.mkdir()
    for k, c in enumerate(csvs):
        ok("normalize", c, "-o", shards / f"part-{k:02d}.npy", "--stats", tmp_path / "merged.json")
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, SCRIPTS / "3_out_of_core_ann.py", "--data", shards, "--stats",
                        csvs[0].with_suffix(".stats.json"), "--output-dir", run, "--epochs", "1"],
                       cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=240)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith(f"3_out_of_core_ann.py: error: --data {shards / 'part-00.npy'} (+2 shards): 900 rows, "
                               f"but {csvs[0].with_suffix('.stats.json')} was fitted on 300: the stats of part of the "
                               "table (one shard's?)"), lines[0]
    assert "epoch" not in r.stdout and not [p for p in run.rglob("*") if p.is_file()]
    # normalized with --stats-out beside each shard: each is a copy of the merged stats, so the folder says which
    # stats made it (no --stats needed), and one shard's own stats are told apart by their min and max
    for k, c in enumerate(csvs):
        out = shards / f"part-{k:02d}.npy"
        ok("normalize", c, "-o", out, "--stats", tmp_path / "merged.json",
           "--stats-out", out.with_suffix(".stats.json"))
        assert load_stats_json(out.with_suffix(".stats.json")) == load_stats_json(tmp_path / "merged.json")
    args = Namespace(data=[str(shards)], test_data=None, stats=None, output_dir=str(run))
    assert course.prepare_data(args).stats.n_rows == 900
    args.stats = str(csvs[0].with_suffix(".stats.json"))
    with pytest.raises(course.LessonError, match="part-00.npy: normalized with other stats"):
        course.prepare_data(args)
