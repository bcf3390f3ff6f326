"""Tables of several .npy shards read as one table (issue 7, point 1).

The shards of a table give exactly what the concatenated file gives: the same rows, the same split, the
same shuffled batches on every process, the same resumed epochs; shards that disagree are refused with
one line naming the odd shard (in the library, in the lessons' data preparation and in `wideann info`).
"""
import os
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

import wideann
from wideann import course, data
from conftest import run_cli, stats_file


def _save_shards(folder: Path, a: np.ndarray, cuts, names=None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    bounds = [0, *cuts, len(a)]
    paths = []
    for k in range(len(bounds) - 1):
        p = folder / (names[k] if names else f"part-{k:02d}.npy")
        np.save(p, a[bounds[k]:bounds[k + 1]])
        paths.append(p)
    return paths


@pytest.fixture
def sharded(tmp_path):
    """A 1003 x 9 table, as one file and as 4 shards of uneven sizes (one of them a single row)."""
    a = np.random.default_rng(0).random((1003, 9), dtype=np.float32)
    whole = tmp_path / "whole.npy"
    np.save(whole, a)
    paths = _save_shards(tmp_path / "shards", a, [300, 301, 700])
    return a, whole, paths


def test_a_shard_set_reads_like_the_concatenated_table(sharded):
    a, _, paths = sharded
    with data.open_table(paths) as t:
        assert isinstance(t, data.ShardSet)
        assert (t.n_rows, t.n_columns, t.n_inputs, t.dtype) == (1003, 9, 8, np.float32)
        assert list(t.starts) == [0, 300, 301, 700, 1003]
        for lo, hi in [(0, 0), (0, 1003), (299, 302), (300, 301), (650, 1003), (1002, 1003)]:
            np.testing.assert_array_equal(t.read_rows(lo, hi), a[lo:hi])
        rows = np.array([0, 299, 300, 301, 302, 699, 700, 701, 1002])
        np.testing.assert_array_equal(t.read_index(rows), a[rows])
        with pytest.raises(IndexError):
            t.read_rows(1000, 1004)
    np.testing.assert_array_equal(data.load_table(paths), a)
    # a folder is its .npy files in name order; one file stays an NpyTable
    np.testing.assert_array_equal(data.load_table(paths[0].parent), a)
    assert isinstance(data.open_table([paths[0]]), data.NpyTable)


def test_folder_order_is_by_name_and_mistakes_are_refused(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(6, 2)
    # written in another order than their names
    _save_shards(tmp_path / "f", a, [2, 4], names=["b.npy", "c.npy", "a.npy"])
    (tmp_path / "f" / "notes.txt").write_text("not a shard")
    assert [p.name for p in data.table_paths(tmp_path / "f")] == ["a.npy", "b.npy", "c.npy"]
    np.testing.assert_array_equal(data.load_table(tmp_path / "f"), np.concatenate([a[4:], a[:2], a[2:4]]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(wideann.DataError, match="empty: no .npy files"):
        data.table_paths(tmp_path / "empty")
    with pytest.raises(wideann.DataError, match="nope.npy: no such file"):
        data.table_paths([tmp_path / "f" / "a.npy", tmp_path / "nope.npy"])
    with pytest.raises(wideann.DataError, match="listed twice"):
        data.table_paths([tmp_path / "f", tmp_path / "f" / "b.npy"])


@pytest.mark.parametrize("odd, what", [
    (np.zeros((5, 10), np.float32), "10 columns, but the first shard"),
    (np.zeros((5, 9), np.float16), "dtype float16, but the first shard"),
])
def test_shards_that_disagree_are_refused_naming_the_odd_one(sharded, tmp_path, odd, what):
    _, _, paths = sharded
    np.save(tmp_path / "odd.npy", odd)
    with pytest.raises(wideann.DataError, match=what) as e:
        data.open_table([paths[0], paths[1], tmp_path / "odd.npy", paths[2]])
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / "odd.npy")) and "\n" not in msg


def test_stats_files_beside_the_shards_must_agree(sharded, tmp_path):
    _, _, paths = sharded
    with pytest.raises(wideann.DataError, match="part-00.stats.json: the stats file of .*part-00.npy is missing") as e:
        data.table_stats(paths)
    # the shards of the README's workflow (normalize --stats merged.json) have none: say what to give, not that
    # normalize writes one beside the table (it does not, applying stats)
    assert "give the stats the shards were normalized with: --stats merged.json" in str(e.value)
    assert "writes it beside" not in str(e.value)
    merged = stats_file(tmp_path / "merged.json", 9, n_rows=1003)
    assert data.table_stats(paths, merged)[0] == merged
    # stats beside some shards, all with the same transform (counts may differ): fine with --stats; without
    # it, the shards without one may have been normalized with any stats: refused, naming the first
    stats_file(paths[0].with_suffix(".stats.json"), 9, n_rows=300)
    stats_file(paths[2].with_suffix(".stats.json"), 9, n_rows=399)
    with pytest.raises(wideann.DataError, match="no stats file beside it, unlike .*part-00.npy") as e:
        data.table_stats(paths)
    assert str(e.value).startswith(str(paths[1]) + ":")
    assert data.table_stats(paths, merged)[1].n_rows == 1003
    for p in (paths[1], paths[3]):
        stats_file(p.with_suffix(".stats.json"), 9, n_rows=5)
    assert data.table_stats(paths)[0] == paths[0].with_suffix(".stats.json")  # one beside every shard: fine
    # one shard normalized with its own stats: named
    stats_file(paths[3].with_suffix(".stats.json"), 9, hi=2.0)
    for given in (None, merged):
        with pytest.raises(wideann.DataError, match="normalized with other stats") as e:
            data.table_stats(paths, given)
        assert str(e.value).startswith(str(paths[3]) + ":")
    # stats of another width than the table
    with pytest.raises(wideann.DataError,
                       match=r"describes 5 columns but .*part-0.\.npy has 9: it is the stats file of another table"):
        data.table_stats(paths[1:2], stats_file(tmp_path / "narrow.json", 5))


def test_stats_fitted_on_fewer_rows_than_the_table_are_refused_unless_every_shard_says_it_was_made_with_them(
        sharded, tmp_path):
    """Shards normalized with merged stats have no stats file beside them: given one shard's stats instead of the
    merged ones (the same columns, n_rows 300 for a table of 1,003), a lesson trained and reported every number in
    original units with that shard's min and max, right only where they happen to be the merged ones."""
    _, whole, paths = sharded
    one_shard = stats_file(tmp_path / "part-00.json", 9, n_rows=300)
    with pytest.raises(wideann.DataError) as e:
        data.table_stats(paths, one_shard)
    line = str(e.value)
    assert line.startswith(f"{paths[0]} (+3 shards): 1,003 rows, but {one_shard} was fitted on 300: the stats of part "
                           "of the table (one shard's?)") and "\n" not in line
    assert "wideann merge-stats" in line and "--stats part-00.json --stats-out SHARD.stats.json" in line
    for table in ([paths[0].parent], paths):  # the lessons: a folder or a list of shards, exit code 1
        with pytest.raises(course.LessonError) as e:
            course.prepare_data(_args(tmp_path, table, stats=one_shard))
        assert e.value.exit_code == 1 and str(e.value).startswith(f"--data {paths[0]} (+3 shards): 1,003 rows, but ")
    # stats of all the rows, or of more (merged with held-out shards or the test data), or a part of the shards
    for n_rows in (1003, 5000):
        assert data.table_stats(paths, stats_file(tmp_path / "merged.json", 9, n_rows=n_rows))[1].n_rows == n_rows
    assert data.table_stats(paths[2:], tmp_path / "merged.json")[0] == tmp_path / "merged.json"
    # one file given stats of fewer rows than it holds: the same
    with pytest.raises(wideann.DataError, match=r"^\S*whole.npy: 1,003 rows, but \S*part-00.json was fitted on 300: "
                       r"the stats of part of the table, not .* put a copy of them beside it, as whole.stats.json "
                       r"\(wideann normalize ... --stats part-00.json --stats-out whole.stats.json writes one\)$"):
        data.table_stats([whole], one_shard)
    # stats applied to more rows than they were fitted on (a sample's): said by a copy beside every shard
    for p in paths[:3]:
        stats_file(p.with_suffix(".stats.json"), 9, n_rows=300)
    with pytest.raises(wideann.DataError, match="was fitted on 300"):  # not beside every shard: still refused
        data.table_stats(paths, one_shard)
    stats_file(paths[3].with_suffix(".stats.json"), 9, n_rows=300)
    assert data.table_stats(paths, one_shard)[1].n_rows == 300
    assert course.prepare_data(_args(tmp_path, paths, stats=one_shard)).stats_path == one_shard
    assert data.table_stats(paths)[1].n_rows == 300  # (and without --stats, the files beside the shards)
    stats_file(whole.with_suffix(".stats.json"), 9, n_rows=300)
    assert data.table_stats([whole], one_shard)[1].n_rows == 300


@pytest.mark.parametrize("world", [1, 3])
def test_batches_over_shards_equal_batches_over_one_file(sharded, world):
    """The split, the shuffled order, the sharding between processes and resuming: as over one file."""
    a, whole, paths = sharded
    split = data.split_rows(len(a), 0.2, 0.1, seed=5)
    for rank in range(world):
        kw = dict(rank=rank, world_size=world, seed=3, shuffle_rows=4)
        one = data.ShardedBatches(whole, split.train, 16, **kw)
        many = data.ShardedBatches(paths, split.train, 16, **kw)
        assert len(one) == len(many)
        for epoch, start in [(1, 0), (2, 5)]:
            b1, b2 = list(one.epoch(epoch, start_step=start)), list(many.epoch(epoch, start_step=start))
            assert len(b1) == len(b2) == len(one) - start
            for (x1, y1), (x2, y2) in zip(b1, b2):
                assert x1.dtype == x2.dtype and y1.dtype == y2.dtype
                assert np.array_equal(x1.numpy(), x2.numpy()) and np.array_equal(y1.numpy(), y2.numpy())
            assert np.array_equal(one.shard(epoch), many.shard(epoch))


def _args(tmp_path, data_=None, test=None, stats=None):
    return Namespace(data=[str(p) for p in data_] if data_ else None,
                     test_data=[str(p) for p in test] if test else None,
                     stats=str(stats) if stats else None, output_dir=str(tmp_path / "run"))


def test_lessons_take_several_npy_files_or_a_folder(sharded, tmp_path):
    a, _, paths = sharded
    merged = stats_file(tmp_path / "merged.json", 9, n_rows=1003)
    f = course.prepare_data(_args(tmp_path, paths, stats=merged))
    assert f.train == paths and f.test is None and f.stats_path == merged
    f = course.prepare_data(_args(tmp_path, paths[:2], test=paths[2:], stats=merged))
    assert f.train == paths[:2] and f.test == paths[2:]
    with pytest.raises(course.UsageError, match="also part of --data"):  # a folder holding the test shards
        course.prepare_data(_args(tmp_path, [paths[0].parent], test=paths[2:], stats=merged))
    one = Namespace(data=str(paths[1]), test_data=None, stats=str(merged), output_dir=str(tmp_path / "run"))
    assert course.prepare_data(one).train == [paths[1]]  # a plain string from a caller other than the parser
    with pytest.raises(course.UsageError, match="not both"):
        course.prepare_data(_args(tmp_path, [paths[0], tmp_path / "merged.json"], stats=merged))


@pytest.mark.parametrize("odd, what", [
    (np.zeros((5, 10), np.float32), "10 columns, but the first shard"),
    (np.zeros((5, 9), np.float16), "dtype float16, but the first shard"),
    ("stats", "normalized with other stats"),
])
def test_lessons_refuse_shards_that_disagree_with_one_line(sharded, tmp_path, odd, what):
    _, _, paths = sharded
    merged = stats_file(tmp_path / "merged.json", 9, n_rows=1003)
    odd_path = tmp_path / "shards" / "part-99.npy"
    if isinstance(odd, str):
        np.save(odd_path, np.zeros((5, 9), np.float32))
        stats_file(odd_path.with_suffix(".stats.json"), 9, lo=-1.0)
    else:
        np.save(odd_path, odd)
    with pytest.raises(course.LessonError, match=what) as e:
        course.prepare_data(_args(tmp_path, [paths[0].parent], stats=merged))
    assert e.value.exit_code == 1 and str(e.value).startswith(f"--data {odd_path}") and "\n" not in str(e.value)
    # the same shard as a separate test table
    if not isinstance(odd, str) and odd.shape[1] != 9:
        with pytest.raises(course.LessonError, match="training table"):
            course.prepare_data(_args(tmp_path, paths, test=[odd_path], stats=merged))


def test_several_csv_files_are_one_table_and_the_normalized_copy_knows_its_sources(tmp_path, capsys):
    wideann.make_data(tmp_path / "all.csv", rows=90, cols=7, seed=1, noise=0.1)
    header, *lines = (tmp_path / "all.csv").read_text().splitlines(keepends=True)
    for name, part in [("a.csv", lines[:40]), ("b.csv", lines[40:]), ("c.csv", lines[40:70])]:
        (tmp_path / name).write_text(header + "".join(part))
    f = course.prepare_data(_args(tmp_path, [tmp_path / "a.csv", tmp_path / "b.csv"]))
    np.testing.assert_array_equal(data.load_table(f.train), wideann.data.load_table(
        _normalized(tmp_path, tmp_path / "all.csv")))
    assert "wideann normalize" in capsys.readouterr().out
    course.prepare_data(_args(tmp_path, [tmp_path / "a.csv", tmp_path / "b.csv"]))
    assert "normalized from" in capsys.readouterr().out  # the same files again: the copy is reused
    # another pair of files with the same first name: normalized again, not taken from the run folder
    g = course.prepare_data(_args(tmp_path, [tmp_path / "a.csv", tmp_path / "c.csv"]))
    assert "wideann normalize" in capsys.readouterr().out
    assert g.train == f.train and len(data.load_table(g.train)) == 70


def test_a_csv_replaced_by_another_is_normalized_again_whatever_its_time(tmp_path, capsys):
    # mv, cp -p, rsync -a or a download can put an older file under the name of the one normalized
    wideann.make_data(tmp_path / "d.csv", rows=90, cols=7, seed=1, noise=0.1)
    wideann.make_data(tmp_path / "new.csv", rows=60, cols=7, seed=2, noise=0.1)
    old = os.stat(tmp_path / "d.csv").st_mtime_ns
    os.utime(tmp_path / "new.csv", ns=(old - 10**9, old - 10**9))  # a second older than d.csv
    f = course.prepare_data(_args(tmp_path, [tmp_path / "d.csv"]))
    assert len(data.load_table(f.train)) == 90
    os.replace(tmp_path / "new.csv", tmp_path / "d.csv")
    capsys.readouterr()
    g = course.prepare_data(_args(tmp_path, [tmp_path / "d.csv"]))
    assert "wideann normalize" in capsys.readouterr().out
    assert g.train == f.train and len(data.load_table(g.train)) == 60
    # a link pointed at another (older) file
    wideann.make_data(tmp_path / "v1.csv", rows=50, cols=7, seed=3, noise=0.1)
    wideann.make_data(tmp_path / "v2.csv", rows=40, cols=7, seed=4, noise=0.1)
    os.utime(tmp_path / "v2.csv", ns=(old - 10**9, old - 10**9))
    (tmp_path / "current.csv").symlink_to(tmp_path / "v1.csv")
    assert len(data.load_table(course.prepare_data(_args(tmp_path, [tmp_path / "current.csv"])).train)) == 50
    (tmp_path / "current.csv").unlink()
    (tmp_path / "current.csv").symlink_to(tmp_path / "v2.csv")
    assert len(data.load_table(course.prepare_data(_args(tmp_path, [tmp_path / "current.csv"])).train)) == 40


def _normalized(tmp_path, csv):
    out = tmp_path / (csv.stem + "_ref.npy")
    wideann.normalize([csv], out)
    return out


def test_wideann_info_describes_a_shard_set(sharded, tmp_path):
    _, _, paths = sharded
    r = run_cli("info", paths[0].parent)
    assert r.returncode == 0, r.stderr
    assert "4 .npy shards read as one table, 1003 x 9 float32" in r.stdout
    assert "part-01.npy: rows 300..300 (1 row)" in r.stdout and "stats: none beside the shards" in r.stdout
    np.save(paths[0].parent / "part-04.npy", np.zeros((3, 8), np.float32))
    r = run_cli("info", paths[0].parent)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().startswith("wideann: error: ") and "part-04.npy: 8 columns" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_stats_of_another_table_get_the_advice_of_their_case(sharded, tmp_path):
    """A stats file given with --stats that is not the one the table was normalized with: for one file, or shards
    whose own stats files agree, it is another table's (give the right one); only shards whose own stats differ
    need merge-stats. (The advice for shards was given for one file too.)"""
    _, whole, paths = sharded
    other = stats_file(tmp_path / "other.stats.json", 9, hi=3.0)
    stats_file(whole.with_suffix(".stats.json"), 9)
    with pytest.raises(course.LessonError) as e:
        course.prepare_data(_args(tmp_path, [whole], stats=other))
    line = str(e.value)
    assert line.startswith(f"--data {whole}: normalized with other stats") and "\n" not in line
    assert line.endswith("other.stats.json is the stats file of another table; give the one written with whole.npy "
                         "(--stats), or leave --stats out for whole.stats.json beside it"), line
    assert "merge-stats" not in line
    # shards normalized with one set of stats (each one's own file says so), given another table's
    for p in paths:
        stats_file(p.with_suffix(".stats.json"), 9)
    with pytest.raises(course.LessonError, match="other.stats.json is the stats file of another table; give the one "
                       "the shards were normalized with") as e:
        course.prepare_data(_args(tmp_path, paths, stats=other))
    assert "merge-stats" not in str(e.value)
    # shards normalized with stats of their own: merge them
    stats_file(paths[2].with_suffix(".stats.json"), 9, hi=2.0)
    for given in (None, other):
        with pytest.raises(course.LessonError, match="the shards of one table need the same stats: wideann "
                           "merge-stats"):
            course.prepare_data(_args(tmp_path, paths, stats=given))


def test_a_value_that_is_not_a_number_is_named_by_its_shard_row_and_column(sharded):
    """(A nan in a lesson's test table was reported, after all the training, in the lesson's own deleted
    temporary file of predictions.) The rows are 1-based in their own file, as the engine counts a CSV's."""
    a, whole, paths = sharded
    data.check_finite(paths)
    b = np.load(paths[3])
    b[10, 6] = np.inf
    np.save(paths[3], b)  # rows 700.. of the set
    with pytest.raises(wideann.DataError) as e:
        data.check_finite(paths)
    assert str(e.value) == f"{paths[3]}, row 11, column 7: expected a finite number, found inf"
    with data.open_table(paths) as t:
        data.check_finite(t, np.arange(0, 700))  # rows before it
        with pytest.raises(wideann.DataError, match="row 11, column 7"):
            data.check_finite(t, np.array([5, 710, 711]))
    with pytest.raises(wideann.DataError, match=r"part-03.npy, row 11, column 7: expected a finite number"):
        data.load_table(paths)
    w = a.copy()
    w[0, 0] = np.nan
    np.save(whole, w)
    with pytest.raises(wideann.DataError, match=r"whole.npy, row 1, column 1: expected a finite number, found nan"):
        data.load_table(whole)


def test_a_shard_listed_twice_is_named_both_ways_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _save_shards(tmp_path / "sh", np.zeros((4, 3), np.float32), [], names=["p.npy"])
    with pytest.raises(wideann.DataError, match=r"^\./sh/p\.npy: listed twice \(also as sh/p\.npy\)"):
        data.open_table(["sh/p.npy", "./sh/p.npy"])
    with pytest.raises(wideann.DataError, match=r"^sh/p\.npy: listed twice \(also as \./sh/p\.npy\)"):
        data.open_table(["./sh", "sh/p.npy"])


def test_a_float64_value_that_does_not_fit_float32_is_refused_as_such(tmp_path):
    p = tmp_path / "big64.npy"
    np.save(p, np.array([[1e300, 2.0], [3.0, 4.0]]))
    for read in (data.check_finite, data.load_table):
        with pytest.raises(wideann.DataError, match=r"big64.npy, row 1, column 1: 1e\+300 does not fit float32"):
            read(p)
    np.save(p, np.array([[1.0, 2.0], [-3e39, 4.0]]))
    with pytest.raises(wideann.DataError, match=r"row 2, column 1: -3e\+39 does not fit float32"):
        data.check_finite(p)
    np.save(p, np.array([[1.0, 2.0], [3.0, np.inf]]))  # (a true inf is still named so)
    for read in (data.check_finite, data.load_table):
        with pytest.raises(wideann.DataError, match="row 2, column 2: expected a finite number, found inf"):
            read(p)
    np.save(p, np.array([[1.0, 2.0], [3.0e38, 4.0]]))  # (large, but it fits)
    data.check_finite(p)
    assert data.load_table(p)[1, 0] == np.float32(3e38)
