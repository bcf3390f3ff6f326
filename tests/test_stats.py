"""The Python API: Stats (load, save, merge, transform, inverse_transform, to_sklearn), compute_stats,
normalize, denormalize — on real files, against numpy and scikit-learn."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from sklearn.preprocessing import MinMaxScaler

import wideann
from wideann import Stats
from conftest import (default_names, load_stats_json, minmax_oracle, random_numeric_csv, read_csv_table,
                      temp_leftovers, varied_table, write_csv, write_text)


def test_public_api_is_documented():
    for name in ("Stats", "compute_stats", "normalize", "denormalize"):
        obj = getattr(wideann, name)
        assert obj.__doc__ and len(obj.__doc__.strip()) > 20, f"wideann.{name} has no docstring"
    for name in ("load", "save", "merge", "transform", "inverse_transform", "to_sklearn"):
        assert callable(getattr(Stats, name)), f"Stats.{name}"


def test_compute_stats_matches_numpy_exactly(tmp_path, rng):
    rows_txt, values = varied_table(rng, 200)
    path = write_csv(tmp_path / "v.csv", rows_txt, header=[f"c{i}" for i in range(values.shape[1])])
    for arg in (path, os.fspath(path), [path]):
        st = wideann.compute_stats(arg)
        assert isinstance(st, Stats)
        assert st.columns == [f"c{i}" for i in range(values.shape[1])]
        assert st.n_rows == 200
        assert np.array_equal(st.data_min, values.min(axis=0))
        assert np.array_equal(st.data_max, values.max(axis=0))


def test_save_load_round_trips_bit_for_bit(tmp_path, rng):
    rows_txt, values = varied_table(rng, 50)
    st = wideann.compute_stats(write_csv(tmp_path / "v.csv", rows_txt))
    st.save(tmp_path / "s.json")
    again = Stats.load(tmp_path / "s.json")
    assert again == st
    assert np.array_equal(again.data_min, st.data_min) and np.array_equal(again.data_max, st.data_max)
    d = load_stats_json(tmp_path / "s.json")
    assert d["format"] == "wideann-stats" and isinstance(d["version"], int)
    assert d["columns"] == default_names(values.shape[1])
    assert temp_leftovers(tmp_path) == []


def test_transform_and_inverse_match_engine_and_sklearn(tmp_path, rng):
    rows_txt, values = varied_table(rng, 100)
    path = write_csv(tmp_path / "v.csv", rows_txt)
    st = wideann.normalize(path, tmp_path / "t.npy")
    engine = np.load(tmp_path / "t.npy")
    py = st.transform(values)
    np.testing.assert_allclose(py, engine, atol=1e-6)
    # (scikit-learn computes x * scale + min_, which loses ~1e-8 on a column like 1e8 + U(0, 1))
    np.testing.assert_allclose(py, MinMaxScaler().fit_transform(values), rtol=0, atol=1e-7)
    back = st.inverse_transform(py)
    np.testing.assert_allclose(back, values, rtol=1e-12, atol=1e-300)
    # a 1-D input is the target
    np.testing.assert_allclose(st.inverse_transform(py[:, -1]), values[:, -1], rtol=1e-12)
    # column selection by name and position
    np.testing.assert_allclose(st.transform(values[:, [2, 0]], columns=["x3", 0]), py[:, [2, 0]])
    # clip
    assert st.transform(values * 3 + 1, clip=True).max() <= 1


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_to_sklearn_is_a_fitted_minmaxscaler(tmp_path, rng):
    path, vals = random_numeric_csv(tmp_path / "r.csv", rng, 40, 5)
    st = wideann.compute_stats(path)
    sk = st.to_sklearn()
    assert isinstance(sk, MinMaxScaler)
    np.testing.assert_allclose(sk.transform(vals), MinMaxScaler().fit_transform(vals), atol=1e-12)
    assert sk.n_samples_seen_ == 40


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_to_sklearn_scales_a_column_of_a_tiny_range_as_the_engine_does(tmp_path):
    """scikit-learn scales a range below 2.2e-15 by 1, as if constant: the scaler of a column spanning 1e-16 ..
    3e-16 gave 1e-16 for 2e-16, which the engine normalizes to 0.5, and 0.5 back for a prediction of 0.5."""
    raw = np.array([[1e-16, 1.0, 0.0, 7.0], [2e-16, 1.0 + 2**-52, 5e-300, 8.0], [3e-16, 1.0 + 2**-50, 1e-299, 9.0]])
    src = write_csv(tmp_path / "tiny.csv", raw.tolist(), header=["a", "b", "c", "y"])
    st = wideann.normalize(src, tmp_path / "t.npy")
    sk = st.to_sklearn()
    engine = np.load(tmp_path / "t.npy")
    assert engine.tolist() == [[0, 0, 0, 0], [0.5, 0.25, 0.5, 0.5], [1, 1, 1, 1]]
    np.testing.assert_allclose(sk.transform(raw), engine, atol=1e-6)
    np.testing.assert_allclose(sk.inverse_transform(engine.astype(np.float64)), st.inverse_transform(engine),
                               rtol=1e-15)
    # a range whose reciprocal is beyond a double cannot be a scale_: refused, as a range wider than a double is
    with pytest.raises(ValueError, match="column 'a' has a range too small for MinMaxScaler's scale"):
        Stats(["a", "y"], [0.0, 0.0], [1e-309, 1.0], 2).to_sklearn()


def test_merge(tmp_path, rng):
    a, va = random_numeric_csv(tmp_path / "a.csv", rng, 10, 4)
    b, vb = random_numeric_csv(tmp_path / "b.csv", rng, 3, 4)
    sa, sb = wideann.compute_stats(a), wideann.compute_stats(b)
    m = Stats.merge([sa, sb])
    assert m == Stats.merge(sa, sb)
    whole = np.vstack([va, vb])
    assert np.array_equal(m.data_min, whole.min(axis=0)) and m.n_rows == 13
    with pytest.raises(ValueError):
        Stats.merge([sa, wideann.compute_stats(write_csv(tmp_path / "c.csv", [[1, 2, 3]]))])


def test_normalize_api_apply_mode_with_stats_object(tmp_path, rng):
    train, vtr = random_numeric_csv(tmp_path / "train.csv", rng, 20, 3)
    test, vte = random_numeric_csv(tmp_path / "test.csv", rng, 7, 3)
    st = wideann.compute_stats(train)
    used = wideann.normalize(test, tmp_path / "t.npy", stats=st)
    assert used == st
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), minmax_oracle(vte, vtr.min(0), vtr.max(0)), atol=1e-6)
    assert not (tmp_path / "t.stats.json").exists()


def test_denormalize_api(tmp_path, rng):
    path, vals = random_numeric_csv(tmp_path / "r.csv", rng, 30, 4)
    st = wideann.normalize(path, tmp_path / "t.npy")
    n = wideann.denormalize(tmp_path / "t.npy", tmp_path / "b.csv", stats=st)
    assert n == 30
    _, back = read_csv_table(tmp_path / "b.csv")
    np.testing.assert_allclose(back, vals, atol=5e-4)  # float32 precision of a ~2000 range
    np.save(tmp_path / "two.npy", np.load(tmp_path / "t.npy")[:, [3, 3]].copy())
    wideann.denormalize(tmp_path / "two.npy", tmp_path / "yy.csv", stats=tmp_path / "t.stats.json",
                        columns=["y", -1])
    _, yy = read_csv_table(tmp_path / "yy.csv")
    np.testing.assert_allclose(yy[:, 0], vals[:, 3], atol=1e-3)
    np.testing.assert_array_equal(yy[:, 0], yy[:, 1])


def test_api_raises_data_error_and_leaves_nothing(tmp_path):
    bad = write_text(tmp_path / "bad.csv", "a,b\n1,2\n3,x\n")
    with pytest.raises(wideann.DataError) as e:
        wideann.normalize(bad, tmp_path / "t.npy")
    assert "bad.csv" in str(e.value) and "line 3, column 2" in str(e.value)
    assert sorted(os.listdir(tmp_path)) == ["bad.csv"]
    with pytest.raises(wideann.DataError):
        wideann.compute_stats(tmp_path / "missing.csv")


def test_make_data_api(tmp_path):
    wideann.make_data(tmp_path / "d.csv", 50, 7, seed=1)
    header, vals = read_csv_table(tmp_path / "d.csv")
    assert vals.shape == (50, 7) and header[-1] == "y"
    with pytest.raises(ValueError):
        wideann.make_data(tmp_path / "e.csv", 50, 3)
    assert not (tmp_path / "e.csv").exists()


def test_regression_metrics_of_a_target_in_huge_units_do_not_overflow():
    """Squared errors of a target in the units of 1e200 overflow a double: RMSE was inf, R² nan (undefined)."""
    from wideann import metrics

    y = np.array([1e200, 2e200, 3e200, 4e200])
    assert metrics.rmse(y, y * 1.1) == pytest.approx(np.sqrt(np.mean((y * 0.1 / 1e200) ** 2)) * 1e200, rel=1e-12)
    assert metrics.r2(y, y * 1.1) == pytest.approx(metrics.r2(y / 1e200, y * 1.1 / 1e200), rel=1e-12)
    assert metrics.r2(y, y) == 1.0 and np.isnan(metrics.r2(np.full(3, 2.0), np.ones(3)))  # undefined: y constant
    # values beyond 2**1023, whose errors overflow unless halved; errors far below the values, whose squares
    # would vanish if scaled by the values
    assert metrics.rmse([1e308, -1e308, 5e307], [1e308, -1e308, 4e307]) == pytest.approx(1e307 / np.sqrt(3), rel=1e-12)
    assert metrics.r2([1e308, -1e308, 5e307], [1e308, -1e308, 4e307]) == pytest.approx(
        metrics.r2([10.0, -10.0, 5.0], [10.0, -10.0, 4.0]), rel=1e-12)
    assert metrics.rmse([0.0, 1e300], [1e130, 1e300]) == pytest.approx(1e130 / np.sqrt(2), rel=1e-12)
    # tiny and subnormal values, perfect fits, errors beyond any double, a constant y whose mean is inexact
    assert metrics.rmse([0.0], [5e-324]) == 5e-324 and metrics.rmse([0.0], [1.5e-323]) == 1.5e-323
    assert metrics.r2([0.0, 1e-200], [0.0, 1e-200]) == 1.0 == metrics.r2([0.0, 3e-308], [0.0, 3e-308])
    assert metrics.r2([0.0, 1.0], [0.0, 1e160]) == -np.inf
    assert metrics.r2([1.7e308, -1.7e308, -1.7e308, -1.7e308], [0.0] * 4) == pytest.approx(-1 / 3, rel=1e-12)
    assert np.isnan(metrics.r2(np.full(3, 0.1), np.full(3, 1.1))) and np.isnan(metrics.rmse([], []))
    # y spread over one ulp (its mean rounded): SSE / SST is 2, exactly
    assert metrics.r2([1.0, 1.0000000000000002], [1.0, 1.0]) == -1.0
    torch = pytest.importorskip("torch")  # float64 tensors stay float64
    t64 = torch.tensor([1e200, 3e200], dtype=torch.float64)
    assert metrics.rmse(t64, t64 * 1.5) == pytest.approx(metrics.rmse([1e200, 3e200], [1.5e200, 4.5e200]), rel=1e-15)
    # ordinary numbers give the bits they gave before
    t, p = np.array([1.0, 2.0, 3.5]), np.array([1.5, 2.0, 3.0])
    assert metrics.rmse(t, p) == float(np.sqrt(np.mean((p - t) ** 2)))
    assert metrics.r2(t, p) == pytest.approx(1 - np.sum((p - t) ** 2) / np.sum((t - t.mean()) ** 2), rel=1e-15)


def test_columns_takes_one_name_or_position_and_refuses_bools_and_ambiguous_names():
    """columns="ab" was iterated letter by letter (columns a and b); columns=[True] selected column 1; a name
    borne by several columns selected the first of them."""
    st = Stats(["a", "b", "ab"], [0, 0, 0], [1, 1, 2], 1)
    np.testing.assert_array_equal(st.transform(np.array([2.0]), columns="ab"), [1.0])
    np.testing.assert_array_equal(st.column_indices("ab"), [2])
    np.testing.assert_array_equal(st.column_indices(2), [2])
    np.testing.assert_array_equal(st.column_indices(np.int64(-3)), [0])
    np.testing.assert_array_equal(st.column_indices(["ab", 0, -1]), [2, 0, 2])
    for bad in ([True], True, [np.bool_(False)], b"ab", [1.0], [None]):
        with pytest.raises(TypeError, match="names \\(str\\) or positions \\(int\\)"):
            st.column_indices(bad)
    dup = Stats(["y", "x", "y"], [0, 0, 0], [1, 1, 10], 1)
    with pytest.raises(ValueError, match="2 columns are named 'y' \\(positions 0, 2\\)"):
        dup.transform(np.array([5.0]), columns="y")
    assert dup.inverse_transform(np.array([0.5])).tolist() == [5.0]  # the target is the last column


def test_transform_and_inverse_check_the_width_of_their_input_instead_of_broadcasting():
    """An (n, 1) prediction was mapped with x1's range (broadcast over every column: shape (n, 3)); a 1-D y was
    one row to transform but the target to inverse_transform; any width was broadcast."""
    st = Stats(["x1", "x2", "y"], [0, 0, 0], [1, 2, 100], 10)
    # an (n, 1) input is the target, as a 1-D one is, in both directions
    np.testing.assert_array_equal(st.inverse_transform(np.array([[0.1], [0.2]])), [[10.0], [20.0]])
    np.testing.assert_array_equal(st.transform(np.array([[10.0], [20.0]])), [[0.1], [0.2]])
    y = np.array([10.0, 20.0, 30.0])
    np.testing.assert_array_equal(st.transform(y), [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(st.inverse_transform(st.transform(y)), y)
    torch = pytest.importorskip("torch")  # what a PyTorch model gives
    np.testing.assert_allclose(st.inverse_transform(torch.tensor([[0.5], [1.0]])), [[50.0], [100.0]])
    # the full width, or the columns selected
    np.testing.assert_array_equal(st.transform(np.array([[1.0, 1.0, 50.0]])), [[1.0, 0.5, 0.5]])
    np.testing.assert_array_equal(st.transform(np.full((2, 1), 50.0), columns=["y"]), [[0.5], [0.5]])
    np.testing.assert_array_equal(st.inverse_transform(np.array([0.5]), columns="x2"), [1.0])
    for f in (st.transform, st.inverse_transform):
        with pytest.raises(ValueError, match=r"X has 2 columns \(shape \(4, 2\)\), but the stats have 3 columns"):
            f(np.ones((4, 2)))
        with pytest.raises(ValueError, match=r"X has 3 columns \(shape \(2, 3\)\), but 1 column is selected"):
            f(np.full((2, 3), 50.0), columns=["y"])
        with pytest.raises(ValueError, match="a 1-D input is the values of one column, but 2 columns are selected"):
            f(np.ones(2), columns=["x1", "y"])
        with pytest.raises(ValueError, match=r"got 3-D \(shape \(2, 3, 1\)\)"):
            f(np.ones((2, 3, 1)))
        with pytest.raises(ValueError, match="got 0-D"):
            f(5.0)


def test_constructor_refuses_what_load_refuses(tmp_path):
    """Stats(["a"], [0], [1], -5) and a count other than n_rows were accepted, and saved as files that Stats.load
    refuses: the checks are in the constructor, which load calls."""
    for kwargs, err, says in (
            ({"n_rows": -5}, ValueError, "n_rows must be a whole number >= 0, found -5"),
            ({"n_rows": 5, "count": [3]}, ValueError, '"count" of column "a" is 3, but "n_rows" is 5'),
            ({"n_rows": 5, "count": [-1]}, ValueError, "count must be a whole number >= 0, found -1"),
            ({"n_rows": 2.5}, TypeError, "n_rows must be a whole number >= 0, found 2.5"),
            ({"n_rows": True}, TypeError, "n_rows must be a whole number >= 0, found True")):
        with pytest.raises(err, match=re.escape(says)):
            Stats(["a"], [0], [1], **kwargs)
    with pytest.raises(TypeError, match="columns must be a list of strings, not one str"):
        Stats("ab", [0, 0], [1, 1], 1)  # was two columns, "a" and "b"
    ok = Stats(["a"], [0], [1], np.int64(5), count=[np.int64(5)])
    ok.save(tmp_path / "s.json")
    assert Stats.load(tmp_path / "s.json") == ok and ok.n_rows == 5 and type(ok.n_rows) is int
    # a file is refused with the same check, naming the file
    d = load_stats_json(tmp_path / "s.json")
    d["count"] = [3]
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=re.escape(f'{tmp_path / "bad.json"}: "count" of column "a" is 3, but')):
        Stats.load(tmp_path / "bad.json")


def test_save_merge_and_load_say_what_is_wrong_in_one_clean_line(tmp_path):
    """save(bytes) was "Can't mix strings and bytes" (load takes bytes); a missing folder was "[Errno None] PATH:
    ... does not exist: 'PATH'"; merge(st, 3) was an AttributeError."""
    st = Stats(["a", "y"], [0, 1], [1, 2], 3)
    st.save(os.fsencode(tmp_path / "s.json"))
    assert Stats.load(os.fsencode(tmp_path / "s.json")) == st and os.listdir(tmp_path) == ["s.json"]
    with pytest.raises(FileNotFoundError) as e:
        st.save(tmp_path / "nope" / "s.json")
    assert str(e.value) == f"{tmp_path / 'nope' / 's.json'}: output folder {tmp_path / 'nope'} does not exist"
    for args, says in (((st, 3), "argument 2 is int 3"), ((3,), "argument 1 is int 3"),
                       (([st, None],), "argument 2 is NoneType None"),
                       ((st, "b.json"), "argument 2 is str 'b.json' (a path: read it with Stats.load)")):
        with pytest.raises(TypeError, match=re.escape(f"merge: takes Stats objects (or one list of them); {says}")):
            Stats.merge(*args)
    assert Stats.merge([st, st]).n_rows == 6 == Stats.merge(iter([st, st])).n_rows
