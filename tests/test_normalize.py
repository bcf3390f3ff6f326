"""normalize / denormalize / stats / merge-stats / make-data / info through the real CLI, checked
against independent oracles (scikit-learn's MinMaxScaler, Python's float parser, numpy)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.preprocessing import MinMaxScaler

from conftest import (default_names, load_stats_json, minmax_oracle, ok, random_numeric_csv,
                      read_csv_table, run_cli, varied_table, write_csv, write_text,
                      assert_failed_cleanly)


# ---- the oracle ---------------------------------------------------------------------------------

@pytest.fixture
def varied(tmp_path, rng):
    rows_txt, values = varied_table(rng, 300)
    names = [f"c{j}" for j in range(values.shape[1] - 1)] + ["y"]
    path = write_csv(tmp_path / "raw.csv", rows_txt, header=names)
    return path, names, values


def test_npy_matches_sklearn_minmaxscaler(tmp_path, varied):
    path, names, values = varied
    out = tmp_path / "t.npy"
    ok("normalize", path, "-o", out)
    want = MinMaxScaler().fit_transform(values)
    got = np.load(out)
    assert got.dtype == np.float32
    assert got.shape == values.shape
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=1e-6)
    # every column spans exactly [0, 1]
    assert np.all(got.min(axis=0) == 0) and np.all(got.max(axis=0) == 1)


def test_npy_is_memory_mappable_rows_by_columns(tmp_path, varied):
    path, names, values = varied
    out = tmp_path / "t.npy"
    ok("normalize", path, "-o", out)
    m = np.load(out, mmap_mode="r")
    assert isinstance(m, np.memmap)
    assert m.shape == values.shape and m.dtype == np.float32
    assert m.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.asarray(m[-1], dtype=np.float64), minmax_oracle(values)[-1], atol=1e-6)
    # the header is a valid .npy header and the data fill the file exactly
    with open(out, "rb") as f:
        assert f.read(6) == b"\x93NUMPY"
    header_len = os.path.getsize(out) - values.size * 4
    assert 0 < header_len <= 4096, "the file is a header followed by exactly rows x cols float32"


def test_csv_output_agrees_with_npy(tmp_path, varied):
    path, names, values = varied
    ok("normalize", path, "-o", tmp_path / "t.npy")
    ok("normalize", path, "-o", tmp_path / "t.csv")
    npy = np.load(tmp_path / "t.npy")
    header, csv = read_csv_table(tmp_path / "t.csv")
    if header is not None:
        assert header == names
    assert csv.shape == npy.shape
    # shortest round-trip text of a float32 reads back as the same float32
    assert np.array_equal(csv.astype(np.float32), npy)


def _sig_digits(s: str) -> int:
    mant = s.strip().lstrip("+-").lower().split("e")[0].replace(".", "")
    return len(mant.lstrip("0").rstrip("0")) or 1


def test_csv_output_floats_are_shortest_round_trip(tmp_path, rng):
    vals = rng.uniform(-1, 1, (50, 3))
    write_csv(tmp_path / "in.csv", vals.tolist(), header=["a", "b", "y"])
    ok("normalize", tmp_path / "in.csv", "-o", tmp_path / "t.csv")
    ok("normalize", tmp_path / "in.csv", "-o", tmp_path / "t.npy")
    npy = np.load(tmp_path / "t.npy")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    if not all(c.replace(".", "").replace("-", "").replace("e", "").isdigit() for c in lines[0].split(",")):
        lines = lines[1:]
    for i, ln in enumerate(lines):
        for j, c in enumerate(ln.split(",")):
            v = npy[i, j]
            assert np.float32(c) == v, (c, v)
            shortest = np.format_float_scientific(v, unique=True)
            assert _sig_digits(c) <= _sig_digits(shortest), f"{c!r} is longer than {shortest!r}"


def test_float16_within_1e3(tmp_path, varied):
    path, names, values = varied
    out = tmp_path / "t16.npy"
    ok("normalize", path, "-o", out, "--dtype", "float16")
    got = np.load(out, mmap_mode="r")
    assert got.dtype == np.float16 and got.shape == values.shape
    np.testing.assert_allclose(np.asarray(got, np.float64), MinMaxScaler().fit_transform(values), atol=1e-3)


def test_constant_column_normalizes_to_zero_and_back(tmp_path):
    rows = [[i, 42.5, -7, i * i] for i in range(10)]
    path = write_csv(tmp_path / "c.csv", rows, header=["a", "k", "m", "y"])
    ok("normalize", path, "-o", tmp_path / "t.npy")
    got = np.load(tmp_path / "t.npy")
    assert np.all(got[:, 1] == 0) and np.all(got[:, 2] == 0)
    assert not np.isnan(got).any()
    st = load_stats_json(tmp_path / "t.stats.json")
    assert st["min"][1] == st["max"][1] == 42.5
    ok("denormalize", tmp_path / "t.npy", "-o", tmp_path / "back.csv", "--stats", tmp_path / "t.stats.json")
    _, back = read_csv_table(tmp_path / "back.csv")
    assert np.all(back[:, 1] == 42.5) and np.all(back[:, 2] == -7)
    np.testing.assert_allclose(back[:, 0], np.arange(10), atol=1e-5)


def test_single_row_is_all_constant(tmp_path):
    path = write_csv(tmp_path / "one.csv", [[3, -1, 2.5]], header=["a", "b", "y"])
    ok("normalize", path, "-o", tmp_path / "t.npy")
    got = np.load(tmp_path / "t.npy")
    assert got.shape == (1, 3) and np.all(got == 0)


# ---- stats file ---------------------------------------------------------------------------------

def test_stats_file_contract(tmp_path, varied):
    path, names, values = varied
    ok("normalize", path, "-o", tmp_path / "t.npy")
    st = load_stats_json(tmp_path / "t.stats.json")
    for key in ("format", "version", "columns", "min", "max", "n_rows", "sources"):
        assert key in st, key
    assert st["format"] == "wideann-stats"
    assert st["columns"] == names
    assert st["n_rows"] == values.shape[0]
    # min and max are exactly the doubles the text denotes (correctly rounded parsing)
    assert [float(v) for v in st["min"]] == list(values.min(axis=0))
    assert [float(v) for v in st["max"]] == list(values.max(axis=0))
    assert any(os.path.basename(path) in s for s in st["sources"])


def test_stats_command_equals_normalize_stats(tmp_path, varied):
    path, names, values = varied
    ok("stats", path, "-o", tmp_path / "s.json")
    ok("normalize", path, "-o", tmp_path / "t.npy", "--stats-out", tmp_path / "fit.json")
    a, b = load_stats_json(tmp_path / "s.json"), load_stats_json(tmp_path / "fit.json")
    for k in ("columns", "min", "max", "n_rows"):
        assert a[k] == b[k]
    assert not (tmp_path / "t.stats.json").exists(), "--stats-out given: nothing beside the output"


def test_default_stats_path_beside_output(tmp_path):
    path, _ = random_numeric_csv(tmp_path / "r.csv", np.random.default_rng(1), 5, 3)
    sub = tmp_path / "out"
    sub.mkdir()
    ok("normalize", path, "-o", sub / "table.v1.csv")
    assert (sub / "table.v1.stats.json").exists()
    assert sorted(os.listdir(sub)) == ["table.v1.csv", "table.v1.stats.json"]


# ---- input variants -----------------------------------------------------------------------------

BASE = [[1, -2.5, 10], [4, 0.5, 20], [2, 7.25, 15], [3, 1e-3, -5]]
BASE_VALS = np.array(BASE, dtype=np.float64)


def _normalized(tmp_path, path, *extra):
    out = tmp_path / (Path(path).stem + ".out.npy")
    ok("normalize", path, "-o", out, "--stats-out", tmp_path / (Path(path).stem + ".st.json"), *extra)
    return np.load(out), load_stats_json(tmp_path / (Path(path).stem + ".st.json"))


@pytest.mark.parametrize("variant", [
    dict(),
    dict(newline="\r\n"),
    dict(bom=True),
    dict(bom=True, newline="\r\n"),
    dict(final_newline=False),
    dict(newline="\r\n", final_newline=False),
    dict(quote=True),
    dict(delimiter=";"),
    dict(delimiter="\t"),
    dict(delimiter="|", quote=True, newline="\r\n", bom=True),
], ids=lambda v: "-".join(f"{k}={v[k]!r}" for k in v) or "plain")
def test_input_variants_give_the_same_table(tmp_path, variant):
    delim = variant.get("delimiter", ",")
    path = write_csv(tmp_path / "v.csv", BASE, header=["alpha", "beta", "y"], **variant)
    got, st = _normalized(tmp_path, path, "--delimiter", delim)
    np.testing.assert_allclose(got, minmax_oracle(BASE_VALS), atol=1e-7)
    assert st["columns"] == ["alpha", "beta", "y"], "BOM / quotes / CR must not leak into names"
    assert st["n_rows"] == 4
    assert [float(v) for v in st["min"]] == list(BASE_VALS.min(axis=0))
    assert [float(v) for v in st["max"]] == list(BASE_VALS.max(axis=0))


def test_number_spellings(tmp_path):
    cells = [["+1", "1e3", "-2.5E-2", "0"],
             ["+0.5", "1.5e+3", "-0.0", ".5"],
             ["3", "2E3", "7.", "-.25"],
             ["-1", "+1.0e3", "1e-2", "5"]]
    path = write_csv(tmp_path / "n.csv", cells, header=["a", "b", "c", "y"])
    got, st = _normalized(tmp_path, path)
    vals = np.array([[float(c) for c in r] for r in cells])
    assert [float(v) for v in st["min"]] == list(vals.min(axis=0))
    assert [float(v) for v in st["max"]] == list(vals.max(axis=0))
    np.testing.assert_allclose(got, minmax_oracle(vals), atol=1e-7)


def test_blank_trailing_line_is_ignored(tmp_path):
    path = write_text(tmp_path / "b.csv", "a,b,y\n1,2,3\n4,5,6\n\n")
    got, st = _normalized(tmp_path, path)
    assert got.shape == (2, 3) and st["n_rows"] == 2
    path = write_text(tmp_path / "b2.csv", "a,b,y\r\n1,2,3\r\n4,5,6\r\n\r\n")
    got, st = _normalized(tmp_path, path)
    assert got.shape == (2, 3)


def test_header_auto_without_header_uses_default_names(tmp_path):
    path = write_csv(tmp_path / "h.csv", BASE)
    got, st = _normalized(tmp_path, path)
    assert got.shape == (4, 3), "a numeric first line is data, not a header"
    assert st["columns"] == default_names(3) == ["x1", "x2", "y"]
    np.testing.assert_allclose(got, minmax_oracle(BASE_VALS), atol=1e-7)


def test_header_no_keeps_first_line_as_data(tmp_path):
    path = write_csv(tmp_path / "h.csv", BASE)
    got, st = _normalized(tmp_path, path, "--header", "no")
    assert got.shape == (4, 3) and st["columns"] == ["x1", "x2", "y"]


def test_header_yes_takes_first_line_as_names_even_if_numeric(tmp_path):
    path = write_csv(tmp_path / "h.csv", BASE)
    got, st = _normalized(tmp_path, path, "--header", "yes")
    assert got.shape == (3, 3)
    assert st["columns"] == ["1", "-2.5", "10"]
    np.testing.assert_allclose(got, minmax_oracle(BASE_VALS[1:]), atol=1e-7)


def test_header_auto_detects_names(tmp_path):
    path = write_csv(tmp_path / "h.csv", BASE, header=["a b", "c_2", "target"])
    got, st = _normalized(tmp_path, path)
    assert got.shape == (4, 3) and st["columns"] == ["a b", "c_2", "target"]


def test_several_inputs_are_concatenated_in_order(tmp_path, rng):
    a, va = random_numeric_csv(tmp_path / "a.csv", rng, 7, 4)
    b, vb = random_numeric_csv(tmp_path / "b.csv", rng, 1, 4, header=False)
    c, vc = random_numeric_csv(tmp_path / "c.csv", rng, 12, 4)
    ok("normalize", a, b, c, "-o", tmp_path / "t.npy")
    whole = np.vstack([va, vb, vc])
    got = np.load(tmp_path / "t.npy")
    assert got.shape == whole.shape
    np.testing.assert_allclose(got, minmax_oracle(whole), atol=1e-6)
    st = load_stats_json(tmp_path / "t.stats.json")
    assert st["n_rows"] == 20 and st["columns"] == default_names(4)
    # order matters: reversed inputs give reversed blocks
    ok("normalize", c, b, a, "-o", tmp_path / "r.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), np.vstack([got[8:], got[7:8], got[:7]]))


# ---- apply mode ---------------------------------------------------------------------------------

def test_apply_mode_uses_train_stats_and_keeps_out_of_range(tmp_path, rng):
    train, vtr = random_numeric_csv(tmp_path / "train.csv", rng, 50, 5, scale=10)
    test_vals = np.vstack([rng.uniform(-20, 20, (30, 5)), vtr[:3]])
    test = write_csv(tmp_path / "test.csv", test_vals.tolist(), header=default_names(5))
    ok("normalize", train, "-o", tmp_path / "train.npy")
    stats = tmp_path / "train.stats.json"
    before = stats.read_bytes()
    ok("normalize", test, "-o", tmp_path / "test.npy", "--stats", stats)
    assert stats.read_bytes() == before, "apply mode must not rewrite the stats it applies"
    assert not (tmp_path / "test.stats.json").exists(), "apply mode writes no fitted stats"
    got = np.load(tmp_path / "test.npy")
    want = minmax_oracle(test_vals, vtr.min(axis=0), vtr.max(axis=0))
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got.min() < -0.2 and got.max() > 1.2, "values outside the fitted range are kept as they are"
    # rows that were in the training set normalize exactly as in training
    np.testing.assert_array_equal(got[-3:], np.load(tmp_path / "train.npy")[:3])


def test_apply_mode_says_it_writes_no_stats_file_and_what_then_needs_them_says_what_to_pass(tmp_path, rng):
    """The contract: applying stats writes none beside the output (--stats-out for a copy). The run said nothing
    of it, and a lesson given that table was told that normalize writes its stats beside it, which it had not:
    now the summary line names the stats applied, and the lesson's refusal asks for the stats by --stats."""
    from wideann import DataError, data

    train, _ = random_numeric_csv(tmp_path / "train.csv", rng, 20, 3)
    test, _ = random_numeric_csv(tmp_path / "test.csv", rng, 9, 3)
    ok("normalize", train, "-o", tmp_path / "train.npy")
    r = ok("normalize", test, "-o", tmp_path / "test.npy", "--stats", tmp_path / "train.stats.json")
    assert not (tmp_path / "test.stats.json").exists()
    assert r.stderr == f"9 rows x 3 columns -> {tmp_path / 'test.npy'} (stats applied: " \
                       f"{tmp_path / 'train.stats.json'}; no stats file beside it)\n", r.stderr
    with pytest.raises(DataError) as e:
        data.table_stats(tmp_path / "test.npy")
    assert "writes it beside the table)" not in str(e.value) and str(e.value).endswith(
        "applying stats, normalize --stats S, it writes none): give the stats the table was normalized with: --stats S")
    assert data.table_stats(tmp_path / "test.npy", tmp_path / "train.stats.json")[0] == tmp_path / "train.stats.json"
    said = " ".join(ok("normalize", "--help").stdout.split())
    assert "no stats file is written beside OUT then (one left there that describes another transform is replaced " \
           "by these)" in said, said


def test_apply_mode_says_what_is_beside_the_output_when_something_is(tmp_path, rng):
    """The summary said nothing of the stats when anything sat at t.stats.json (a folder, the applied file itself):
    it always names the stats applied, and what is beside the table, where none is written."""
    train, _ = random_numeric_csv(tmp_path / "train.csv", rng, 20, 3)
    test, _ = random_numeric_csv(tmp_path / "test.csv", rng, 9, 3)
    ok("normalize", train, "-o", tmp_path / "train.npy")
    applied = tmp_path / "train.stats.json"
    (tmp_path / "t.stats.json").mkdir()
    r = ok("normalize", test, "-o", tmp_path / "t.npy", "--stats", applied)
    assert r.stderr == f"9 rows x 3 columns -> {tmp_path / 't.npy'} (stats applied: {applied}; no stats file beside " \
                       f"it: {tmp_path / 't.stats.json'} is a folder)\n", r.stderr
    assert (tmp_path / "t.stats.json").is_dir()
    r = ok("normalize", test, "-o", tmp_path / "train.npy", "--stats", applied)  # the applied file is the one beside
    assert r.stderr == f"9 rows x 3 columns -> {tmp_path / 'train.npy'} (stats applied: {applied}, the stats file " \
                       f"beside it)\n", r.stderr
    copy = tmp_path / "u.stats.json"
    copy.write_bytes(applied.read_bytes())
    r = ok("normalize", test, "-o", tmp_path / "u.npy", "--stats", applied)  # a copy of the same stats beside it
    assert r.stderr == f"9 rows x 3 columns -> {tmp_path / 'u.npy'} (stats applied: {applied}; the stats file " \
                       f"beside it, {copy}, describes the same transform)\n", r.stderr
    os.mkfifo(tmp_path / "v.stats.json")
    r = ok("normalize", test, "-o", tmp_path / "v.npy", "--stats", applied)
    assert r.stderr.endswith(f"(stats applied: {applied}; no stats file beside it: {tmp_path / 'v.stats.json'} is "
                             f"not a file)\n"), r.stderr


def test_apply_mode_replaces_a_stats_file_beside_the_output_that_describes_another_transform(tmp_path, rng):
    train, vtr = random_numeric_csv(tmp_path / "train.csv", rng, 50, 4, scale=10)
    other, _ = random_numeric_csv(tmp_path / "other.csv", rng, 30, 4, scale=3)
    ok("normalize", other, "-o", tmp_path / "t.npy")  # t.stats.json: other's transform
    ok("normalize", train, "-o", tmp_path / "train.npy")
    r = ok("normalize", train, "-o", tmp_path / "t.npy", "--stats", tmp_path / "train.stats.json")
    beside = load_stats_json(tmp_path / "t.stats.json")
    applied = load_stats_json(tmp_path / "train.stats.json")
    # the file beside t.npy describes t.npy: a lesson given --data t.npy takes it
    assert beside["min"] == applied["min"] and beside["max"] == applied["max"] and beside["n_rows"] == 50
    # one line that names the stats applied too, as apply mode's line always does
    assert r.stderr == f"50 rows x 4 columns -> {tmp_path / 't.npy'} (stats applied: {tmp_path / 'train.stats.json'}" \
                       f"; the stats file beside it, {tmp_path / 't.stats.json'}, described another transform: now " \
                       "this table's)\n", r.stderr
    # a stats file beside the output with the applied transform is left as it is
    before = (tmp_path / "t.stats.json").read_bytes()
    r = ok("normalize", train, "-o", tmp_path / "t.npy", "--stats", tmp_path / "train.stats.json")
    assert (tmp_path / "t.stats.json").read_bytes() == before and "another transform" not in r.stderr
    # one that is not a stats file at all is replaced too, and said to be none (it described no transform)
    (tmp_path / "t.stats.json").write_text("not json")
    r = ok("normalize", train, "-o", tmp_path / "t.npy", "--stats", tmp_path / "train.stats.json")
    assert load_stats_json(tmp_path / "t.stats.json")["max"] == applied["max"]
    assert r.stderr == f"50 rows x 4 columns -> {tmp_path / 't.npy'} (stats applied: {tmp_path / 'train.stats.json'}" \
                       f"; the file beside it, {tmp_path / 't.stats.json'}, was not a stats file: now this table's " \
                       "stats)\n", r.stderr


@pytest.mark.parametrize("mode", ["fit", "apply"])
def test_stats_out_elsewhere_replaces_a_stats_file_beside_the_output_that_describes_another_transform(tmp_path, rng,
                                                                                                       mode):
    # an earlier table's t.stats.json stays beside a new t.npy whose stats go to --stats-out: a lesson given
    # --data t.npy would take the earlier transform and report every number in the wrong units
    train, _ = random_numeric_csv(tmp_path / "train.csv", rng, 50, 4, scale=10)
    other, _ = random_numeric_csv(tmp_path / "other.csv", rng, 30, 4, scale=3)
    ok("normalize", other, "-o", tmp_path / "t.npy")  # t.stats.json: other's transform
    extra = []
    if mode == "apply":
        ok("normalize", train, "-o", tmp_path / "train.npy")
        extra = ["--stats", tmp_path / "train.stats.json"]
    asked_path = tmp_path / "elsewhere.json"
    r = ok("normalize", train, "-o", tmp_path / "t.npy", "--stats-out", asked_path, *extra)
    beside, asked = load_stats_json(tmp_path / "t.stats.json"), load_stats_json(tmp_path / "elsewhere.json")
    assert beside == asked and beside["n_rows"] == 50 and beside["sources"] == [str(train)]
    said = f"a copy of the applied stats: {asked_path}" if mode == "apply" else f"stats: {asked_path}"
    assert r.stderr == f"50 rows x 4 columns -> {tmp_path / 't.npy'} ({said}; the stats file beside it, " \
                       f"{tmp_path / 't.stats.json'}, described another transform: now this table's)\n", r.stderr
    # one that describes the same transform is left as it is; none is not written
    before = (tmp_path / "t.stats.json").read_bytes()
    r = ok("normalize", train, "-o", tmp_path / "t.npy", "--stats-out", tmp_path / "elsewhere.json", *extra)
    assert (tmp_path / "t.stats.json").read_bytes() == before and "another transform" not in r.stderr
    (tmp_path / "t.stats.json").unlink()
    ok("normalize", train, "-o", tmp_path / "t.npy", "--stats-out", tmp_path / "elsewhere.json", *extra)
    assert not (tmp_path / "t.stats.json").exists()


def test_apply_mode_clip(tmp_path, rng):
    train, vtr = random_numeric_csv(tmp_path / "train.csv", rng, 50, 3, scale=10)
    test_vals = rng.uniform(-30, 30, (40, 3))
    test = write_csv(tmp_path / "test.csv", test_vals.tolist(), header=default_names(3))
    ok("stats", train, "-o", tmp_path / "s.json")
    ok("normalize", test, "-o", tmp_path / "c.npy", "--stats", tmp_path / "s.json", "--clip")
    got = np.load(tmp_path / "c.npy")
    want = np.clip(minmax_oracle(test_vals, vtr.min(axis=0), vtr.max(axis=0)), 0, 1)
    assert got.min() == 0 and got.max() == 1
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_apply_mode_stats_out_is_a_copy_of_the_applied_stats(tmp_path, rng):
    """Applying stats fits nothing (pass 2 only), as scikit-learn's ``transform`` leaves a fitted scaler as it was:
    ``--stats-out`` writes the stats the table was normalized with, unchanged. It wrote the applied min and max
    with this input's rows and sources: a file that said this input ranges from the train data's min to its max,
    which a later merge-stats took at its word (merged with other stats, it gave them train's range without
    train's rows)."""
    train, _ = random_numeric_csv(tmp_path / "train.csv", rng, 20, 3)
    test, _ = random_numeric_csv(tmp_path / "test.csv", rng, 9, 3, scale=10)  # a narrower range than train's
    ok("stats", train, "-o", tmp_path / "s.json")
    r = ok("normalize", test, "-o", tmp_path / "t.npy", "--stats", tmp_path / "s.json",
           "--stats-out", tmp_path / "applied.json")
    a, s = load_stats_json(tmp_path / "applied.json"), load_stats_json(tmp_path / "s.json")
    assert a == s and a["n_rows"] == 20 and a["sources"] == [str(train)]
    assert f"(a copy of the applied stats: {tmp_path / 'applied.json'})" in r.stderr
    # so a copy merged with its original is refused, rather than counting the train rows twice
    p = run_cli("merge-stats", tmp_path / "s.json", tmp_path / "applied.json", "-o", tmp_path / "m.json")
    assert p.returncode == 1 and "a copy; its rows would count twice" in p.stderr
    # the same from Python, with a Stats object, and for the stats file replaced beside the output
    import wideann

    ok("normalize", test, "-o", tmp_path / "u.npy")  # u.stats.json: test's own stats, another transform
    wideann.normalize(test, tmp_path / "u.npy", stats=wideann.Stats.load(tmp_path / "s.json"),
                      stats_out=tmp_path / "api.json")
    assert load_stats_json(tmp_path / "api.json") == s == load_stats_json(tmp_path / "u.stats.json")
    # (its --help says so)
    assert "a copy of those stats, unchanged" in " ".join(ok("normalize", "--help").stdout.split())


def test_apply_mode_refuses_column_count_mismatch(tmp_path, rng):
    train, _ = random_numeric_csv(tmp_path / "train.csv", rng, 10, 4)
    test, _ = random_numeric_csv(tmp_path / "test.csv", rng, 10, 5)
    ok("stats", train, "-o", tmp_path / "s.json")
    p = run_cli("normalize", test, "-o", tmp_path / "t.npy", "--stats", tmp_path / "s.json")
    msg = assert_failed_cleanly(p, leftovers=[tmp_path / "t.npy", tmp_path / "t.stats.json"],
                                folder=tmp_path, names=["test.csv"])
    assert "4" in msg and "5" in msg, f"should say how many columns each has: {msg}"


# ---- denormalize --------------------------------------------------------------------------------

@pytest.fixture
def fitted(tmp_path, rng):
    rows_txt, values = varied_table(rng, 120)
    names = [f"c{j}" for j in range(values.shape[1] - 1)] + ["y"]
    path = write_csv(tmp_path / "raw.csv", rows_txt, header=names)
    ok("normalize", path, "-o", tmp_path / "t.npy")
    return values, names, tmp_path / "t.npy", tmp_path / "t.stats.json"


def _roundtrip_tol(values):
    lo, hi = values.min(axis=0), values.max(axis=0)
    return 2.5e-7 * (hi - lo) + 4 * np.finfo(np.float64).eps * np.maximum(abs(lo), abs(hi))


def test_denormalize_all_columns_from_npy_round_trips(tmp_path, fitted):
    values, names, npy, stats = fitted
    ok("denormalize", npy, "-o", tmp_path / "back.csv", "--stats", stats)
    header, back = read_csv_table(tmp_path / "back.csv")
    if header is not None:
        assert header == names
    assert back.shape == values.shape
    assert np.all(np.abs(back - values) <= _roundtrip_tol(values))


def test_denormalize_all_columns_from_csv(tmp_path, fitted):
    values, names, npy, stats = fitted
    norm = np.load(npy)
    write_csv(tmp_path / "n.csv", norm.astype(np.float64).tolist(), header=names)
    ok("denormalize", tmp_path / "n.csv", "-o", tmp_path / "back.csv", "--stats", stats)
    _, back = read_csv_table(tmp_path / "back.csv")
    assert np.all(np.abs(back - values) <= _roundtrip_tol(values))


def test_denormalize_one_column_is_the_target(tmp_path, fitted):
    values, names, npy, stats = fitted
    y = values[:, -1]
    preds = np.load(npy)[:, -1].astype(np.float64)
    # from CSV with a header
    write_csv(tmp_path / "pred.csv", [[p] for p in preds], header=["y_pred"])
    ok("denormalize", tmp_path / "pred.csv", "-o", tmp_path / "p.csv", "--stats", stats)
    _, back = read_csv_table(tmp_path / "p.csv")
    assert back.shape == (len(y), 1)
    assert np.all(np.abs(back[:, 0] - y) <= _roundtrip_tol(values)[-1])
    # from CSV without a header, values outside [0, 1] extrapolate linearly
    write_csv(tmp_path / "pred2.csv", [[-0.5], [1.5], [0.25]])
    ok("denormalize", tmp_path / "pred2.csv", "-o", tmp_path / "p2.csv", "--stats", stats)
    _, back2 = read_csv_table(tmp_path / "p2.csv")
    lo, hi = y.min(), y.max()
    np.testing.assert_allclose(back2[:, 0], [lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo), lo + 0.25 * (hi - lo)],
                               rtol=1e-12)
    # from a one-column .npy
    np.save(tmp_path / "pred.npy", np.load(npy)[:, -1:].copy())
    ok("denormalize", tmp_path / "pred.npy", "-o", tmp_path / "p3.csv", "--stats", stats)
    _, back3 = read_csv_table(tmp_path / "p3.csv")
    np.testing.assert_array_equal(back3, back)


def test_denormalize_named_columns(tmp_path, fitted):
    values, names, npy, stats = fitted
    norm = np.load(npy).astype(np.float64)
    yt, yp = norm[:, -1], norm[::-1, -1]
    write_csv(tmp_path / "yy.csv", list(zip(yt, yp)), header=["y_true", "y_pred"])
    ok("denormalize", tmp_path / "yy.csv", "-o", tmp_path / "o.csv", "--stats", stats, "--columns", "y", "y")
    _, back = read_csv_table(tmp_path / "o.csv")
    tol = _roundtrip_tol(values)[-1]
    assert np.all(np.abs(back[:, 0] - values[:, -1]) <= tol)
    assert np.all(np.abs(back[:, 1] - values[::-1, -1]) <= tol)
    # by position (0-based) and by name, mixed
    write_csv(tmp_path / "two.csv", list(zip(norm[:, 2], norm[:, 0])), header=["p", "q"])
    ok("denormalize", tmp_path / "two.csv", "-o", tmp_path / "o2.csv", "--stats", stats, "--columns", "2", names[0])
    _, back2 = read_csv_table(tmp_path / "o2.csv")
    t = _roundtrip_tol(values)
    assert np.all(np.abs(back2[:, 0] - values[:, 2]) <= t[2])
    assert np.all(np.abs(back2[:, 1] - values[:, 0]) <= t[0])


def test_denormalize_column_count_mismatch_is_refused(tmp_path, fitted):
    values, names, npy, stats = fitted
    write_csv(tmp_path / "three.csv", [[0.1, 0.2, 0.3]] * 4)
    p = run_cli("denormalize", tmp_path / "three.csv", "-o", tmp_path / "o.csv", "--stats", stats)
    assert_failed_cleanly(p, leftovers=[tmp_path / "o.csv"], folder=tmp_path, names=["three.csv"])


# ---- merge-stats --------------------------------------------------------------------------------

def test_merge_stats_of_shards_equals_stats_of_whole(tmp_path, rng):
    rows_txt, values = varied_table(rng, 90)
    names = [f"c{j}" for j in range(values.shape[1] - 1)] + ["y"]
    whole = write_csv(tmp_path / "whole.csv", rows_txt, header=names)
    cuts = [0, 1, 40, 90]
    shards = []
    for i in range(3):
        s = write_csv(tmp_path / f"s{i}.csv", rows_txt[cuts[i]:cuts[i + 1]], header=names)
        ok("stats", s, "-o", tmp_path / f"s{i}.json")
        shards.append(tmp_path / f"s{i}.json")
    ok("stats", whole, "-o", tmp_path / "whole.json")
    ok("merge-stats", *shards, "-o", tmp_path / "merged.json")
    m, w = load_stats_json(tmp_path / "merged.json"), load_stats_json(tmp_path / "whole.json")
    for k in ("format", "columns", "min", "max", "n_rows"):
        assert m[k] == w[k], k
    if "count" in w:
        assert m["count"] == w["count"]
    # and normalizing with the merged stats gives the same bytes as fitting on the whole
    ok("normalize", whole, "-o", tmp_path / "fit.npy")
    ok("normalize", whole, "-o", tmp_path / "app.npy", "--stats", tmp_path / "merged.json")
    assert (tmp_path / "fit.npy").read_bytes() == (tmp_path / "app.npy").read_bytes()


def test_merge_stats_refuses_different_columns(tmp_path, rng):
    a, _ = random_numeric_csv(tmp_path / "a.csv", rng, 5, 3)
    b = write_csv(tmp_path / "b.csv", [[1, 2, 3]], header=["x1", "other", "y"])
    c, _ = random_numeric_csv(tmp_path / "c.csv", rng, 5, 4)
    for f in (a, b, c):
        ok("stats", f, "-o", f.with_suffix(".json"))
    for other in ("b.json", "c.json"):
        p = run_cli("merge-stats", tmp_path / "a.json", tmp_path / other, "-o", tmp_path / "m.json")
        assert_failed_cleanly(p, leftovers=[tmp_path / "m.json"], folder=tmp_path, names=[other])


# ---- make-data ----------------------------------------------------------------------------------

def _friedman(u):
    return (10 * np.sin(np.pi * u[:, 0] * u[:, 1]) + 20 * (u[:, 2] - 0.5) ** 2 + 10 * u[:, 3] + 5 * u[:, 4])


def _best_friedman_residual(x5, y):
    """Undo each input's (unknown) scale and offset by min-max, trying both orientations of each
    column; return the residual y - friedman(u) of the best fit."""
    lo, hi = x5.min(axis=0), x5.max(axis=0)
    u = (x5 - lo) / (hi - lo)
    best = None
    for mask in range(32):
        uu = u.copy()
        for j in range(5):
            if mask >> j & 1:
                uu[:, j] = 1 - uu[:, j]
        r = y - _friedman(uu)
        if best is None or np.sqrt(np.mean(r ** 2)) < np.sqrt(np.mean(best ** 2)):
            best = r
    return best


def test_make_data_is_deterministic_and_shaped(tmp_path):
    # several thousand rows: the generator works in chunks, so threads really share the work
    ok("make-data", "-o", tmp_path / "a.csv", "--rows", "3500", "--cols", "9", "--seed", "3", "--threads", "3")
    ok("make-data", "-o", tmp_path / "b.csv", "--rows", "3500", "--cols", "9", "--seed", "3", "--threads", "1")
    ok("make-data", "-o", tmp_path / "c.csv", "--rows", "3500", "--cols", "9", "--seed", "4")
    a = (tmp_path / "a.csv").read_bytes()
    assert a == (tmp_path / "b.csv").read_bytes(), "same seed, same bytes (whatever the thread count)"
    assert a != (tmp_path / "c.csv").read_bytes()
    header, vals = read_csv_table(tmp_path / "a.csv")
    assert header is not None and len(header) == 9 and header[-1] == "y"
    assert len(set(header)) == 9
    assert vals.shape == (3500, 9) and np.all(np.isfinite(vals))
    assert len(np.unique(vals[:, 0])) > 3000, "rows are not repeated"
    # every column on its own scale and offset
    lo, hi = vals[:, :-1].min(axis=0), vals[:, :-1].max(axis=0)
    assert len(set(np.round(np.log10(hi - lo), 1))) > 4 or len(set(np.round(lo, 3))) > 4
    assert not (np.all(lo >= 0) and np.all(hi <= 1)), "inputs are not left in [0, 1]"
    # the engine reads what make-data wrote
    ok("normalize", tmp_path / "a.csv", "-o", tmp_path / "a.npy")
    assert np.load(tmp_path / "a.npy").shape == (3500, 9)


def test_make_data_noise_zero_is_exact_friedman(tmp_path):
    ok("make-data", "-o", tmp_path / "f.csv", "--rows", "4000", "--cols", "8", "--seed", "1", "--noise", "0")
    _, vals = read_csv_table(tmp_path / "f.csv")
    r = _best_friedman_residual(vals[:, :5], vals[:, -1])
    # the only error left comes from estimating each column's scale from its sample min and max
    assert np.sqrt(np.mean(r ** 2)) < 0.05, np.sqrt(np.mean(r ** 2))


def test_make_data_noise_level_and_noise_inputs(tmp_path):
    ok("make-data", "-o", tmp_path / "f.csv", "--rows", "4000", "--cols", "10", "--seed", "2", "--noise", "1.5")
    _, vals = read_csv_table(tmp_path / "f.csv")
    y = vals[:, -1]
    r = _best_friedman_residual(vals[:, :5], y)
    assert 1.35 < np.std(r) < 1.65, np.std(r)
    assert abs(np.mean(r)) < 0.15
    # the first five inputs carry signal, the rest are noise
    corr = [abs(np.corrcoef(vals[:, j], y)[0, 1]) for j in range(9)]
    assert corr[3] > 0.3  # 10 * x4 is the strongest linear term
    assert max(corr[5:]) < 0.1, corr


# ---- info ---------------------------------------------------------------------------------------

def test_info_describes_npy_csv_and_stats(tmp_path, rng):
    path, _ = random_numeric_csv(tmp_path / "r.csv", rng, 37, 6)
    ok("normalize", path, "-o", tmp_path / "t.npy")
    def has(n, text):
        return re.search(rf"(?<![\d.]){n}(?![\d.])", text) is not None

    out = ok("info", tmp_path / "t.npy").stdout
    assert has(37, out) and has(6, out) and "float32" in out, out
    ok("normalize", path, "-o", tmp_path / "h.npy", "--dtype", "float16", "--stats-out", tmp_path / "h.json")
    assert "float16" in ok("info", tmp_path / "h.npy").stdout
    out = ok("info", tmp_path / "t.stats.json").stdout
    assert has(6, out) and has(37, out), out
    assert "x1" in out and "y" in out
    out = ok("info", path).stdout
    assert has(6, out) and has(37, out), out
    p = run_cli("info", tmp_path / "nope.npy")
    assert_failed_cleanly(p, names=["nope.npy"])


# ---- the tokenizer's two digit readers ------------------------------------------------------------

@pytest.mark.parametrize("cols", [7, 3500])  # below and above the width where the engine switches
def test_digit_readers_parse_every_number_exactly(tmp_path, cols):
    """Both digit readers (forced with WIDEANN_DIGIT_READER) give exactly the doubles Python parses,
    on numbers of every shape: long digit runs (8 and more), signs, leading zeros, exponents."""
    from conftest import cli_env
    rng = np.random.default_rng(cols)
    shapes = [lambda: f"{rng.uniform(-1e6, 1e6)!r}",
              lambda: f"{rng.uniform(-1, 1):.{rng.integers(0, 19)}f}",
              lambda: f"{rng.uniform(-1e5, 1e5):.{rng.integers(1, 17)}e}",
              lambda: "-" * int(rng.integers(0, 2)) + "".join(map(str, rng.integers(0, 10, rng.integers(1, 18))))
              + "." + "".join(map(str, rng.integers(0, 10, rng.integers(0, 18)))),
              lambda: str(rng.choice(["0", "-0", "12345678", "-12345678.87654321", "0.00000001",
                                      "9007199254740993", "99999999", "100000000", "1e22", "-.5", "5."]))]
    rows = [[shapes[int(rng.integers(0, len(shapes)))]() for _ in range(cols)] for _ in range(3)]
    # One row per file line; each value's min and max over a single-row file is the value itself.
    inp = tmp_path / "numbers.csv"
    inp.write_text("\n".join(",".join(r) for r in rows[:1]))  # no final newline: the buffer's last bytes
    want = np.array([float(v) for v in rows[0]])
    for reader in ("loop", "branch-free"):
        ok("stats", inp, "-o", tmp_path / f"{reader}.json", "--header", "no",
           env=cli_env(WIDEANN_DIGIT_READER=reader))
        st = load_stats_json(tmp_path / f"{reader}.json")
        assert np.array_equal(np.array(st["min"], dtype=float), want), reader
    # And the same normalized bytes from both, on all three rows.
    inp.write_text("\n".join(",".join(r) for r in rows) + "\n")
    outs = []
    for reader in ("loop", "branch-free"):
        out = tmp_path / f"{reader}.npy"
        ok("normalize", inp, "-o", out, "--header", "no", env=cli_env(WIDEANN_DIGIT_READER=reader))
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def _midpoint(x: float) -> str:
    """The exact decimal midpoint between x and the next double up: round-to-even decides it."""
    from decimal import Decimal, localcontext

    with localcontext() as exact:
        exact.prec = 2000  # (every double is a decimal of at most 767 significant digits)
        return format((Decimal(x) + Decimal(float(np.nextafter(x, np.inf)))) / 2, "e")


@pytest.mark.parametrize("reader", ["loop", "branch-free"])
def test_numbers_beyond_the_fast_path_are_correctly_rounded(tmp_path, reader):
    """What the exact fast path hands on (more than 19 digits, exponents beyond 22, subnormals, the ends of
    double's range, exact midpoints and a digit past them) parses to the double Python's float() gives."""
    from conftest import cli_env
    texts = ["1.7976931348623157e308", "1.7976931348623158e308", "2.2250738585072011e-308", "4.9e-324",
             "2.4703282292062327e-324", "2.4703282292062328e-324", "1e-320", "1e-400",
             "123456789012345678901234567890e-30", "0.1e-22", "9007199254740992.5",
             "9007199254740993.0000000000000000001", "1e23", "8.589973e9"]
    for x in (1.0, 0.1, 9007199254740992.0, 1e300, 5e-324, 2.2250738585072014e-308, 123.456e-310, 0.3e21):
        mid = _midpoint(x)
        texts += [mid, mid.replace("e", "1e", 1) if "." in mid else mid]  # (a digit past the midpoint: rounds up)
    inp = write_text(tmp_path / "numbers.csv", ",".join(texts) + "\n")
    ok("stats", inp, "-o", tmp_path / "s.json", "--header", "no", env=cli_env(WIDEANN_DIGIT_READER=reader))
    got = load_stats_json(tmp_path / "s.json")["min"]
    assert [float(g) for g in got] == [float(t) + 0.0 for t in texts]


# ---- the size normalize checks for before pass 2 --------------------------------------------------

@pytest.mark.parametrize("cols", [1, 9, 10, 99, 100, 12849, 100_000])
def test_output_bytes_is_the_npy_size(tmp_path, cols):
    from wideann.engine import output_bytes

    rows = 3
    # (from 1: a first line 0, 1, 2, ... would be the columns' positions, which --header auto refuses)
    write_csv(tmp_path / "in.csv", [[1 + i + j for j in range(cols)] for i in range(rows)])
    for dtype in ("float32", "float16"):
        ok("normalize", tmp_path / "in.csv", "-o", tmp_path / "t.npy", "--dtype", dtype)
        assert output_bytes(rows, default_names(cols), dtype, "npy") == (tmp_path / "t.npy").stat().st_size
        ok("normalize", tmp_path / "in.csv", "-o", tmp_path / "t.csv", "--dtype", dtype)
        assert output_bytes(rows, default_names(cols), dtype, "csv") <= (tmp_path / "t.csv").stat().st_size


def test_estimated_rows(tmp_path, rng):
    from wideann.engine import estimated_rows

    small, _ = random_numeric_csv(tmp_path / "small.csv", rng, 500, 4)  # read whole: exact (+ the header)
    assert estimated_rows([small]) == 501
    big, _ = random_numeric_csv(tmp_path / "big.csv", rng, 60_000, 6)  # ~3 MB: from the first MiB
    assert abs(estimated_rows([big]) - 60_001) < 60_001 * 0.05
    assert abs(estimated_rows([small, big]) - 60_502) < 60_502 * 0.05
