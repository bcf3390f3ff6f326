"""Property tests (hypothesis): round trip, merge of any split, thread count never changes bytes."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import wideann
from conftest import cli_env, default_names, minmax_oracle, ok, read_csv_table

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def tables(draw, max_rows=40, max_cols=6):
    """Tables whose columns each have their own magnitude and offset (constant columns included)."""
    rows = draw(st.integers(1, max_rows))
    cols = draw(st.integers(1, max_cols))
    out = np.empty((rows, cols))
    for j in range(cols):
        kind = draw(st.sampled_from(["free", "scaled", "int", "const"]))
        if kind == "free":
            col = draw(st.lists(st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False,
                                          allow_subnormal=False), min_size=rows, max_size=rows))
        elif kind == "scaled":
            exp = draw(st.integers(-9, 9))
            off = draw(st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False))
            unit = draw(st.lists(st.floats(-1, 1, allow_subnormal=False), min_size=rows, max_size=rows))
            col = [off + u * 10.0 ** exp for u in unit]
        elif kind == "int":
            col = draw(st.lists(st.integers(-10**6, 10**6), min_size=rows, max_size=rows))
        else:
            col = [draw(st.floats(-1e9, 1e9, allow_nan=False, allow_subnormal=False))] * rows
        out[:, j] = col
    return out


def _write(path: Path, vals: np.ndarray, header=True) -> Path:
    lines = [",".join(default_names(vals.shape[1]))] if header else []
    lines += [",".join(repr(float(x)) for x in r) for r in vals]
    path.write_text("\n".join(lines) + "\n")
    return path


def _tol(vals):
    lo, hi = vals.min(axis=0), vals.max(axis=0)
    return 2.5e-7 * (hi - lo) + 4 * np.finfo(np.float64).eps * np.maximum(abs(lo), abs(hi))


@settings(max_examples=100, **SETTINGS)
@given(vals=tables())
def test_denormalize_normalize_round_trip(vals):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        src = _write(d / "in.csv", vals)
        st_ = wideann.normalize([src], d / "t.npy", threads=2)
        norm = np.load(d / "t.npy")
        assert norm.shape == vals.shape
        np.testing.assert_allclose(norm, minmax_oracle(vals), atol=1e-6)
        assert np.array_equal(st_.data_min, vals.min(axis=0)) and np.array_equal(st_.data_max, vals.max(axis=0))
        n = wideann.denormalize(d / "t.npy", d / "back.csv", stats=d / "t.stats.json")
        assert n == vals.shape[0]
        _, back = read_csv_table(d / "back.csv")
        back = back.reshape(vals.shape)
        err = np.abs(back - vals)
        assert np.all(err <= _tol(vals)), (err.max(axis=0), _tol(vals))
        # the Python transform agrees with the engine
        np.testing.assert_allclose(st_.transform(vals), norm, atol=1e-6)


@settings(max_examples=60, **SETTINGS)
@given(vals=tables(max_rows=30), data=st.data())
def test_merge_of_any_split_equals_whole(vals, data):
    rows = vals.shape[0]
    cuts = sorted(data.draw(st.sets(st.integers(1, rows - 1), max_size=min(4, rows - 1))) if rows > 1 else [])
    bounds = [0, *cuts, rows]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        whole = wideann.compute_stats(_write(d / "whole.csv", vals), threads=1)
        parts = []
        files = []
        first_header = False
        for i in range(len(bounds) - 1):
            # (a later split carries a header only beside a first one's: after a first without, refused)
            header = data.draw(st.booleans()) if i == 0 or files and first_header else False
            first_header = header if i == 0 else first_header
            f = _write(d / f"s{i}.csv", vals[bounds[i]:bounds[i + 1]], header=header)
            files.append(f)
            parts.append(wideann.compute_stats(f, header="auto", threads=1))
        merged = wideann.Stats.merge(parts)
        assert merged.columns == whole.columns
        assert merged.n_rows == whole.n_rows == rows
        assert np.array_equal(merged.data_min, whole.data_min)
        assert np.array_equal(merged.data_max, whole.data_max)
        # and via files, through save/load
        for i, p in enumerate(parts):
            p.save(d / f"s{i}.json")
        reloaded = wideann.Stats.merge([wideann.Stats.load(d / f"s{i}.json") for i in range(len(parts))])
        assert np.array_equal(reloaded.data_min, whole.data_min) and reloaded.n_rows == rows
        # several inputs at once give the same stats as the whole file
        together = wideann.compute_stats(files, threads=2)
        assert np.array_equal(together.data_min, whole.data_min) and together.n_rows == rows


@settings(max_examples=4, **SETTINGS)
@given(vals=tables(max_rows=400, max_cols=5), block=st.sampled_from([64, 100, 257, 1000]),
       crlf=st.booleans())
def test_thread_count_does_not_change_bytes(vals, block, crlf):
    """Small blocks (WIDEANN_BLOCK_SIZE) give many blocks even for small inputs."""
    assume(vals.shape[0] >= 20)
    env = cli_env(WIDEANN_BLOCK_SIZE=block)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        src = _write(d / "in.csv", vals)
        if crlf:
            src.write_bytes(src.read_bytes().replace(b"\n", b"\r\n"))
        outs = {}
        for t in (1, 3, 8):
            ok("normalize", src, "-o", d / f"t{t}.npy", "--threads", t, env=env)
            ok("normalize", src, "-o", d / f"t{t}.csv", "--threads", t, "--stats-out", d / f"c{t}.json", env=env)
            outs[t] = ((d / f"t{t}.npy").read_bytes(), (d / f"t{t}.csv").read_bytes(),
                       (d / f"t{t}.stats.json").read_text())
        for t in (3, 8):
            assert outs[t][0] == outs[1][0], f"npy differs with {t} threads"
            assert outs[t][1] == outs[1][1], f"csv differs with {t} threads"
        np.testing.assert_allclose(np.load(d / "t8.npy"), minmax_oracle(vals), atol=1e-6)


def test_thread_count_does_not_change_bytes_many_blocks(tmp_path, rng):
    """A fixed, larger case: ~2 MB over 2 KiB blocks, every output kind, 1/2/3/8 threads."""
    vals = np.round(rng.uniform(-1e5, 1e5, (8000, 25)), 4)
    vals[:, 3] = 7.0
    src = _write(tmp_path / "in.csv", vals)
    env = cli_env(WIDEANN_BLOCK_SIZE=2048)
    ref = None
    for t in (1, 2, 3, 8):
        ok("normalize", src, "-o", tmp_path / f"a{t}.npy", "--threads", t, env=env)
        ok("normalize", src, "-o", tmp_path / f"b{t}.npy", "--threads", t, "--dtype", "float16",
           "--stats-out", tmp_path / f"b{t}.json", env=env)
        ok("normalize", src, "-o", tmp_path / f"c{t}.csv", "--threads", t, env=env)
        ok("stats", src, "-o", tmp_path / f"s{t}.json", "--threads", t, env=env)
        ok("denormalize", tmp_path / "a1.npy", "-o", tmp_path / f"d{t}.csv", "--stats", tmp_path / "a1.stats.json",
           "--threads", t, env=env)
        got = tuple((tmp_path / n).read_bytes() for n in (f"a{t}.npy", f"b{t}.npy", f"c{t}.csv", f"d{t}.csv"))
        stats = wideann.Stats.load(tmp_path / f"s{t}.json")
        if ref is None:
            ref = got, stats
        else:
            for name, a, b in zip(("npy", "float16", "csv", "denormalized csv"), got, ref[0]):
                assert a == b, f"{name} output differs between 1 and {t} threads"
            assert stats == ref[1]
    np.testing.assert_allclose(np.load(tmp_path / "a1.npy"), minmax_oracle(vals), atol=1e-6)
