"""The defaults the lessons choose from the table's size, and that with them the lessons learn.

- ``wideann.defaults``: options left out are filled from the number of training rows, given ones are kept;
  the batch rule; ``split_rows``' block size on small tables.
- lesson 4 with its defaults learns on a wide table (400 columns, 5 informative inputs, 6,000 rows) where
  its old defaults did not: test R² 0.957 now, 0.656 with the old ones (inputs in [0, 1], no lasso, 256-row
  batches; measured with the lesson of commit fc86d48, the same options). The lasso keeps the weights of
  the noise inputs near 0, far below those of the informative ones.
- lesson 3 with its defaults on a small real table (scikit-learn's diabetes data, 442 rows) is close to
  RidgeCV on the same split.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import wideann
from test_lessons import _env
from wideann import data, defaults

ROOT = Path(__file__).resolve().parents[1]


def _args(**kw):
    base = dict(epochs=None, patience=None, dropout=None, batch_size=None, grad_accum=1)
    base.update(kw)
    return argparse.Namespace(**base)


def test_small_and_large_tables_get_their_defaults_and_given_options_are_kept():
    small = _args()
    lines = defaults.choose(small, n_train=310)
    assert (small.epochs, small.patience, small.dropout) == (100, 20, 0.2)
    assert "310 training rows" in lines[0] and "--epochs 100" in lines[0]
    large = _args()
    defaults.choose(large, n_train=42_000)
    assert (large.epochs, large.patience, large.dropout, large.batch_size) == (30, 5, 0.0, 256)
    given = _args(epochs=7, dropout=0.5, batch_size=100)
    lines = defaults.choose(given, n_train=310)
    assert (given.epochs, given.dropout, given.batch_size, given.patience) == (7, 0.5, 100, 20)
    assert "--epochs" not in lines[0] and "--patience 20" in lines[0]
    everything_given = _args(epochs=1, patience=1, dropout=0.0, batch_size=8)
    assert defaults.choose(everything_given, n_train=10) == []
    no_such_options = argparse.Namespace(epochs=3)  # lesson 1-2 style: nothing to choose
    assert defaults.choose(no_such_options, n_train=10) == []


def test_batch_size_keeps_at_least_100_steps_an_epoch_counting_all_processes():
    assert defaults.batch_size(42_000) == 256           # 165 steps
    assert defaults.batch_size(11_200) == 64            # 175 steps (128 would give 88)
    assert defaults.batch_size(11_200, processes=2) == 32
    assert defaults.batch_size(11_200, grad_accum=4) == 16
    assert defaults.batch_size(310) == defaults.SMALLEST_BATCH
    assert defaults.batch_size(10 ** 7, processes=8) == 256
    for n in [1, 99, 5_000, 25_600, 25_601, 10 ** 6]:
        b = defaults.batch_size(n)
        assert defaults.SMALLEST_BATCH <= b <= defaults.LARGEST_BATCH
        assert b == defaults.SMALLEST_BATCH or -(-n // b) >= defaults.MIN_STEPS_PER_EPOCH


def test_split_of_a_small_table_keeps_its_fractions():
    s = data.split_rows(442, test_fraction=0.2, val_fraction=0.1, seed=0)
    assert (len(s.test), len(s.val)) == (88, 44)
    assert len({tuple(data.split_rows(442, 0.2, 0.1, seed=k).test) for k in range(20)}) == 20
    assert data.split_block_rows(442) == 4 and data.split_block_rows(150) == 1
    assert data.split_block_rows(6_400) == data.split_block_rows(10 ** 7) == data.SPLIT_BLOCK_ROWS


def _launch(tmp_path, script, *args):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "scripts" / "configs" / "cpu.yaml"), str(ROOT / "scripts" / script), *map(str, args)]
    r = subprocess.run(cmd, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{script} failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r.stdout


def test_lesson4_learns_on_a_wide_table_and_its_lasso_drops_the_noise_inputs(tmp_path):
    wideann.make_data(tmp_path / "wide.csv", rows=6000, cols=400, seed=3, noise=1.0)
    wideann.normalize([tmp_path / "wide.csv"], tmp_path / "wide.npy")
    run = tmp_path / "run"
    # --hidden 256 64 instead of 1024 256: 4x faster, and the old defaults fail at either width (0.656, 0.661)
    out = _launch(tmp_path, "4_multi_gpu_ann.py", "--data", tmp_path / "wide.npy", "--hidden", 256, 64,
                  "--output-dir", run)
    assert "defaults chosen from the size of the table (4,200 training rows" in out and "--batch-size 32" in out
    m = json.loads((run / "metrics.json").read_text())
    assert m["test_r2"] > 0.85, m  # 0.957 measured; best possible about 0.96; the old defaults: 0.656
    import torch

    norm = torch.load(run / "best_model.pt")["net.0.weight"].norm(dim=0)  # per input, over its 256 weights
    informative, noise = norm[:5], norm[5:]  # Friedman's x1..x5; 394 noise inputs
    # measured: informative 0.21 to 0.55, noise 0.0045 on average and 0.021 at most
    assert float(informative.min()) > 20 * float(noise.mean()), (informative, noise.mean())
    assert float(informative.min()) > 3 * float(noise.max()), (informative, noise.max())


def test_lesson3_on_a_small_real_table_is_close_to_ridge(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import RidgeCV

    d = load_diabetes(scaled=False)
    csv = tmp_path / "diabetes.csv"
    csv.write_text(",".join(list(d.feature_names) + ["y"]) + "\n"
                   + "".join(",".join(f"{v:.10g}" for v in list(r) + [t]) + "\n" for r, t in zip(d.data, d.target)))
    wideann.normalize([csv], tmp_path / "diabetes.npy")
    run = tmp_path / "run"
    out = _launch(tmp_path, "3_out_of_core_ann.py", "--data", tmp_path / "diabetes.npy", "--output-dir", run)
    assert "a small table" in out and "--epochs 100" in out and "--dropout 0.2" in out
    m = json.loads((run / "metrics.json").read_text())

    table = data.load_table(tmp_path / "diabetes.npy")
    split = data.split_rows(len(table), test_fraction=0.2, val_fraction=0.1, seed=0)
    train = np.concatenate([split.train, split.val])
    ridge = RidgeCV(alphas=np.logspace(-6, 3, 19)).fit(table[train, :-1], table[train, -1])
    y = table[split.test, -1]
    ridge_r2 = 1 - np.sum((ridge.predict(table[split.test, :-1]) - y) ** 2) / np.sum((y - y.mean()) ** 2)
    assert m["test_rows"] == 88
    # measured: lesson 3 0.525, RidgeCV 0.547 on this split; before the small-table defaults and the finer
    # split, lesson 3 reached 0.521 against 0.590 (issue 9)
    assert m["test_r2"] > ridge_r2 - 0.1, (m["test_r2"], ridge_r2)
