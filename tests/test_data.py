"""wideann.data: the .npy reader, the splits and the sharded out-of-core batch source."""
import itertools
import os

import numpy as np
import pytest

import wideann
from wideann import data
from wideann.data.native_reader import ReadAhead
from conftest import threads


@pytest.fixture
def table(tmp_path):
    a = np.random.default_rng(0).random((1003, 9), dtype=np.float32)
    path = tmp_path / "t.npy"
    np.save(path, a)
    return path, a


def test_reads_row_ranges_like_numpy(table):
    path, a = table
    with data.NpyTable(path) as t:
        assert (t.n_rows, t.n_columns, t.n_inputs) == (1003, 9, 8)
        assert t.dtype == np.float32
        for lo, hi in [(0, 0), (0, 1), (5, 77), (1000, 1003), (0, 1003)]:
            np.testing.assert_array_equal(t.read_rows(lo, hi), a[lo:hi])
        rows = np.array([1, 2, 3, 10, 500, 501, 1002])
        np.testing.assert_array_equal(t.read_index(rows), a[rows])
        with pytest.raises(IndexError):
            t.read_rows(1000, 1004)
    np.testing.assert_array_equal(data.load_table(path), a)


def test_float16_and_format_versions(tmp_path):
    a = np.random.default_rng(1).random((50, 4)).astype(np.float16)
    p = tmp_path / "h.npy"
    np.save(p, a)
    got = data.NpyTable(p).read_rows(10, 20)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, a[10:20].astype(np.float32))
    # a version 2.0 header
    p2 = tmp_path / "v2.npy"
    with open(p2, "wb") as f:
        np.lib.format.write_array(f, a.astype(np.float32), version=(2, 0))
    np.testing.assert_array_equal(data.load_table(p2), a.astype(np.float32))


@pytest.mark.parametrize("arr, what", [
    (np.zeros((3, 4), dtype=np.int32), "float"),
    (np.zeros((3,), dtype=np.float32), "2-D"),
    (np.asfortranarray(np.zeros((3, 4), dtype=np.float32)), "Fortran"),
])
def test_refuses_tables_it_cannot_read(tmp_path, arr, what):
    p = tmp_path / "bad.npy"
    np.save(p, arr)
    with pytest.raises(ValueError, match=what):
        data.NpyTable(p)


def test_refuses_truncated_and_non_npy(tmp_path, table):
    path, _ = table
    cut = tmp_path / "cut.npy"
    cut.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        data.NpyTable(cut)
    txt = tmp_path / "x.npy"
    txt.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a .npy"):
        data.NpyTable(txt)


def test_no_memory_map_is_kept(table):
    """Reading must not leave the file mapped (mapped pages count as resident memory)."""
    path, _ = table
    t = data.NpyTable(path)
    src = data.ShardedBatches(t, np.arange(t.n_rows), 100)
    for _ in src.epoch(0):
        pass
    with open(f"/proc/{os.getpid()}/maps") as f:
        assert str(path) not in f.read()


def test_split_is_seeded_disjoint_complete_and_keeps_the_test_set():
    s = data.split_rows(10_000, test_fraction=0.2, val_fraction=0.1, seed=3)
    allrows = np.concatenate(s)
    assert np.array_equal(np.sort(allrows), np.arange(10_000))
    assert abs(len(s.test) - 2000) <= data.SPLIT_BLOCK_ROWS and abs(len(s.val) - 1000) <= data.SPLIT_BLOCK_ROWS
    for part in s:
        assert np.all(np.diff(part) > 0)
    again = data.split_rows(10_000, test_fraction=0.2, val_fraction=0.1, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(s, again))
    other = data.split_rows(10_000, test_fraction=0.2, val_fraction=0.1, seed=4)
    assert not np.array_equal(s.test, other.test)
    # lesson 1 (no validation set) and lesson 2 (with one) test on the same rows
    no_val = data.split_rows(10_000, test_fraction=0.2, seed=3)
    assert np.array_equal(no_val.test, s.test) and len(no_val.val) == 0
    per_row = data.split_rows(100, 0.2, 0.2, seed=0, block_rows=1)
    assert (len(per_row.train), len(per_row.val), len(per_row.test)) == (60, 20, 20)
    with pytest.raises(ValueError):
        data.split_rows(100, 0.6, 0.5)


def test_runs_of():
    assert data.runs_of(np.array([], dtype=np.int64)) == []
    assert data.runs_of(np.array([3, 4, 5, 9, 11, 12])) == [(3, 6), (9, 10), (11, 13)]
    with pytest.raises(ValueError):
        data.runs_of(np.array([2, 1]))


@pytest.mark.parametrize("n_rows, batch, world", [(1003, 32, 1), (1003, 32, 2), (1003, 7, 3), (5, 4, 4), (64, 8, 4)])
def test_shards_cover_every_row_once_per_epoch(n_rows, batch, world):
    rows = np.arange(n_rows) * 2  # any subset of a table's rows
    t = _FakeTable(2 * n_rows)
    srcs = [data.ShardedBatches(t, rows, batch, rank=r, world_size=world, seed=7) for r in range(world)]
    assert len({len(s) for s in srcs}) == 1, "every process runs the same number of steps"
    assert len(srcs[0]) == -(-n_rows // (batch * world))
    for epoch in (0, 1):
        shards = [s.shard(epoch) for s in srcs]
        allrows = np.concatenate(shards)
        assert len(allrows) == n_rows and np.array_equal(np.sort(allrows), rows)
        sizes = [len(x) for x in shards]
        assert max(sizes) - min(sizes) <= 1
        for s in srcs:  # the plan of an epoch made in one go (as the batch sources make it) is step_rows', step by step
            order = s.epoch_order(epoch)
            for start in (0, len(s) // 2, len(s)):
                flat, sizes = s._steps(order, start)
                steps = [s.step_rows(order, k) for k in range(start, len(s))]
                assert sizes == [len(x) for x in steps]
                assert np.array_equal(flat, np.concatenate(steps) if steps else np.empty(0, np.int64))
    if n_rows > 4 * srcs[0].shuffle_rows:
        assert not np.array_equal(srcs[0].epoch_order(0), srcs[0].epoch_order(1)), "reshuffled each epoch"


def test_global_batches_do_not_depend_on_the_number_of_processes():
    rows = np.arange(999)
    t = _FakeTable(999)
    one = data.ShardedBatches(t, rows, 64, seed=1)
    for world in (2, 4):
        many = [data.ShardedBatches(t, rows, 64 // world, rank=r, world_size=world, seed=1) for r in range(world)]
        assert len(many[0]) == len(one)
        o1, om = one.epoch_order(3), many[0].epoch_order(3)
        for step in range(len(one)):
            union = np.sort(np.concatenate([m.step_rows(om, step) for m in many]))
            assert np.array_equal(union, one.step_rows(o1, step))


def test_shuffling_keeps_runs_of_consecutive_rows_together():
    t = _FakeTable(10_000)
    src = data.ShardedBatches(t, np.arange(10_000), 256, seed=0, shuffle_rows=16)
    order = src.epoch_order(0)
    assert np.all(order.reshape(-1, 16)[:, 1:] - order.reshape(-1, 16)[:, :-1] == 1)
    assert not np.array_equal(order, np.arange(10_000))
    same = data.ShardedBatches(t, np.arange(10_000), 256, seed=0, shuffle_rows=16)
    assert np.array_equal(same.epoch_order(0), order)
    assert np.array_equal(data.ShardedBatches(t, np.arange(50), 8, shuffle=False).epoch_order(5), np.arange(50))


@pytest.mark.parametrize("prefetch", [0, 3])
def test_batches_hold_the_right_rows_and_resume_exactly(table, prefetch):
    path, a = table
    split = data.split_rows(len(a), 0.2, seed=0)
    src = data.ShardedBatches(path, split.train, 50, rank=1, world_size=2, seed=9, prefetch=prefetch)
    order = src.epoch_order(2)
    got = [(x.clone(), y.clone()) for x, y in src.epoch(2)]
    assert len(got) == len(src)
    for step, (x, y) in enumerate(got):
        rows = src.step_rows(order, step)
        np.testing.assert_array_equal(x.numpy(), a[rows, :-1])
        np.testing.assert_array_equal(y.numpy(), a[rows, -1:])
    assert src.rows_read == sum(len(x) for x, _ in got)
    # keeping targets (for metrics) must not keep whole batch buffers alive
    _, y0 = next(iter(src.epoch(0)))
    assert y0.untyped_storage().nbytes() == y0.numel() * 4
    resumed = list(src.epoch(2, start_step=4))
    assert len(resumed) == len(got) - 4
    for (x1, y1), (x2, y2) in zip(got[4:], resumed):
        assert (x1 == x2).all() and (y1 == y2).all()


@pytest.mark.parametrize("prefetch", [1, 3])
def test_a_shuffled_source_reads_on_into_the_next_epoch_and_drops_what_it_is_not_asked_for(
        table, prefetch, monkeypatch):
    path, a = table
    split = data.split_rows(len(a), 0.2, seed=0)
    src = data.ShardedBatches(path, split.train, 50, rank=1, world_size=2, seed=9, prefetch=prefetch,
                              pin_memory=False)  # (no CUDA threads where a GPU is present)

    def check(epoch, start, batches):
        order = src.epoch_order(epoch)
        assert len(batches) == len(src) - start
        for step, (x, y) in enumerate(batches, start=start):
            rows = src.step_rows(order, step)
            np.testing.assert_array_equal(x.numpy(), a[rows, :-1])
            np.testing.assert_array_equal(y.numpy(), a[rows, -1:])

    src.table.read_index(np.arange(3), (np.empty((3, a.shape[1] - 1), np.float32), np.empty((3, 1), np.float32)))
    before = threads()  # with the reader's pool
    check(1, 0, list(src.epoch(1)))
    carry = src._host_kit["carry"]  # epoch 2's first batches, read while epoch 1 ended
    assert carry.epoch == 2 and len(carry.pending) == min(prefetch, len(src))
    del carry
    check(2, 0, list(src.epoch(2)))  # handed out
    check(3, 0, list(src.epoch(3)))
    check(4, 5, list(src.epoch(4, start_step=5)))  # not the step read on: dropped, read afresh
    check(7, 0, list(src.epoch(7)))  # not the epoch read on
    it = src.epoch(8)  # stopped early: nothing read on
    next(it)
    it.close()
    assert "carry" not in src._host_kit
    check(9, 0, list(src.epoch(9)))
    # as lessons 3-4 ask for an epoch's steps (itertools.islice, which never asks past the last one): the last
    # step handed out ends the epoch, and the next one's first batches are read on; one step short, they are not
    check(10, 0, list(itertools.islice(src.epoch(10), len(src))))
    assert src._host_kit["carry"].epoch == 11
    check(11, 0, list(src.epoch(11)))
    list(itertools.islice(src.epoch(12), len(src) - 1))
    assert "carry" not in src._host_kit
    check(9, 0, list(src.epoch(9)))
    # an epoch asked for with read_on=False (the last one of a run) does not read on, and still begins with
    # the batches read on by the epoch before
    check(10, 0, list(src.epoch(10)))
    submitted = []
    submit = ReadAhead.submit
    monkeypatch.setattr(ReadAhead, "submit",
                        lambda self, rows, *a: submitted.append(rows.size) or submit(self, rows, *a))
    check(11, 0, list(src.epoch(11, read_on=False)))
    monkeypatch.undo()
    assert "carry" not in src._host_kit
    # only epoch 11's batches not read on by epoch 10 were read, none of epoch 12's
    read_on = sum(len(src.step_rows(src.epoch_order(11), s)) for s in range(min(prefetch, len(src))))
    assert sum(submitted) == len(src.shard(11)) - read_on
    # counted as handed out: epochs 1, 2, 3, 7, 9 (twice), 10 (twice) and 11 (twice), epoch 4 but its first 5
    # steps, one batch of epoch 8, all but one step of epoch 12
    assert src.rows_read == (sum(len(src.shard(e)) for e in (1, 2, 3, 7, 9, 9, 10, 10, 11, 11, 12))
                             + len(src.shard(4)) - 5 * 50 + 50 - len(src.step_rows(src.epoch_order(12), len(src) - 1)))
    check(10, 0, list(src.epoch(10)))  # (reads on again)
    assert threads() == before + 1  # the thread reading epoch 10's first batches
    # read ahead turned off after an epoch read on: those batches, and their thread, are let go (not kept for
    # as long as the source lives)
    src.prefetch = 0
    check(10, 0, list(src.epoch(10)))
    assert "carry" not in src._host_kit and threads(before) == before
    src.prefetch = prefetch
    table = src.table  # (keeps the reader's pool)
    src = it = None  # a source let go stops its reading thread at once (no reference cycle waits for the collector)
    assert threads(before) == before
    unshuffled = data.ShardedBatches(table, split.train, 50, shuffle=False, prefetch=prefetch, pin_memory=False)
    list(unshuffled.epoch(0))
    assert "carry" not in unshuffled._host_kit and threads(before) == before  # evaluation sources do not read on


def test_a_source_that_reads_on_plans_each_epoch_once(table, monkeypatch):
    # an epoch's plan (its order, each step's rows sorted) is made on the training thread: the epoch before
    # makes it as it reads on, and the epoch then goes on with it rather than making it again
    path, a = table
    src = data.ShardedBatches(path, np.arange(len(a)), 16, seed=2, prefetch=3, pin_memory=False)
    fresh = data.ShardedBatches(path, np.arange(len(a)), 16, seed=2, prefetch=0)
    made, plan = [], src._steps
    # (monkeypatch: undone after the test, which frees the source at once: its bound method in its own
    # attribute is a reference cycle, which would keep it and its shared pool of blocks until a collection)
    monkeypatch.setattr(src, "_steps", lambda order, start=0: made.append(start) or plan(order, start))
    for e in range(4):
        got, want = list(src.epoch(e)), list(fresh.epoch(e))
        assert len(got) == len(want) == len(src)
        for (x1, y1), (x2, y2) in zip(got, want):
            assert (x1 == x2).all() and (y1 == y2).all()
    assert made == [0] * 5  # epoch 0's, then epochs 1-4's, each once, from its first step, as it was read on
    list(src.epoch(4, start_step=2))  # not the step read on: planned anew from there (and epoch 5 read on)
    assert made == [0] * 5 + [2, 0]


@pytest.mark.parametrize("change", [{"seed": 5}, {"batch_size": 30}, {"batch_size": 7}, {"shuffle_rows": 3},
                                    {"rank": 0}, {"world_size": 3, "rank": 2}])
def test_batches_read_on_under_other_settings_are_not_handed_out(table, change):
    # a source's settings changed between epochs (its seed, batch size, process): the next epoch's batches
    # read on under the old ones are dropped, not handed out in the old order (or mixed with the new one)
    path, a = table
    kw = dict(seed=2, batch_size=16, world_size=2, rank=1)
    src = data.ShardedBatches(path, np.arange(len(a)), kw.pop("batch_size"), prefetch=3, pin_memory=False, **kw)
    list(src.epoch(0))
    assert src._host_kit["carry"].epoch == 1  # read on, under the old settings
    for name, value in change.items():
        setattr(src, name, value)
    got = list(src.epoch(1))
    fresh = data.ShardedBatches(path, np.arange(len(a)), src.batch_size, seed=src.seed, rank=src.rank,
                                world_size=src.world_size, shuffle_rows=src.shuffle_rows, prefetch=0)
    want = list(fresh.epoch(1))
    assert len(got) == len(want) == len(fresh)
    for (x1, y1), (x2, y2) in zip(got, want):
        assert x1.shape == x2.shape and (x1 == x2).all() and (y1 == y2).all()


def test_a_sources_rows_are_its_own_and_cannot_change_in_place(table):
    # plans and batches read on are checked against the rows by identity: rows changed in place would be
    # read under the old plan, so the source keeps a read-only copy (the caller's array stays writable)
    path, a = table
    rows = np.arange(len(a))
    src = data.ShardedBatches(path, rows, 16, seed=2, prefetch=3, pin_memory=False)
    list(src.epoch(0))
    rows[:5] = 0  # the caller's array: not the source's
    assert (src.rows == np.arange(len(a))).all()
    with pytest.raises(ValueError, match="read-only"):
        src.rows[:5] = 0
    got, want = list(src.epoch(1)), list(data.ShardedBatches(path, np.arange(len(a)), 16, seed=2, prefetch=0).epoch(1))
    for (x1, y1), (x2, y2) in zip(got, want, strict=True):
        assert (x1 == x2).all() and (y1 == y2).all()


def test_empty_batch_on_a_process_when_rows_run_out(table):
    path, a = table
    srcs = [data.ShardedBatches(path, np.arange(3), 1, rank=r, world_size=4, prefetch=0) for r in range(4)]
    sizes = [[len(x) for x, _ in s.epoch(0)] for s in srcs]
    assert sizes == [[0], [1], [1], [1]]
    x, y = next(iter(srcs[0].epoch(0)))
    assert x.shape == (0, a.shape[1] - 1) and y.shape == (0, 1)


def test_read_ahead_errors_reach_the_consumer_and_early_exit_stops_the_thread(tmp_path):
    path = tmp_path / "t.npy"
    a = np.random.default_rng(0).random((1000, 7), dtype=np.float32)
    np.save(path, a)
    src = data.ShardedBatches(path, np.arange(1000), 10, prefetch=2, shuffle=False, reader_threads=2,
                              pin_memory=False)  # (no CUDA threads where a GPU is present)
    src.table.read_index(np.arange(3), (np.empty((3, 6), np.float32), np.empty((3, 1), np.float32)))  # the pool
    before = threads()
    it = src.epoch(0)
    next(it)
    assert threads() == before + 1  # the read-ahead's own thread, and no Python thread
    it.close()  # a consumer that stops early must not leave the reading thread running
    assert threads(before) == before

    # the file shrinks under the reader: the batches read before are right, then a DataError, not a batch
    it = src.epoch(0)
    x, y = next(it)
    np.testing.assert_array_equal(x.numpy(), a[:10, :-1])
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    got = 1
    with pytest.raises(wideann.DataError, match="t.npy"):
        for x, y in it:
            np.testing.assert_array_equal(x.numpy(), a[got * 10:(got + 1) * 10, :-1])
            got += 1
    assert got < 100


class _FakeTable:
    """Enough of an NpyTable for plans that do no I/O."""

    def __init__(self, n_rows, n_columns=3):
        self.n_rows, self.n_columns, self.row_bytes, self.path = n_rows, n_columns, 4 * n_columns, "fake"



def test_load_table_refuses_a_table_that_does_not_fit_in_memory_and_points_to_lesson_3(tmp_path):
    """Lessons 1 and 2 hold the whole table (and copy its rows into the split): a table too large for the
    memory ended in a MemoryError, or in the kernel's OOM killer, with no word of lesson 3."""
    table = np.random.default_rng(0).random((100, 8), dtype=np.float32)
    np.save(tmp_path / "t.npy", table)
    with pytest.raises(wideann.DataError, match=r"t\.npy: 100 rows x 8 columns take 3\.1 KiB as float32, twice "
                                                r"that with the split, and this machine has 6\.2 KiB .*lesson 3 reads"):
        data.load_table(tmp_path / "t.npy", available=6399)
    np.testing.assert_array_equal(data.load_table(tmp_path / "t.npy", available=6400), table)
    assert data.load_table(tmp_path / "t.npy").shape == (100, 8)  # this machine's memory
    from wideann.data.shards import available_memory

    assert available_memory() is None or available_memory() > 0


def test_a_batch_source_refuses_rows_given_twice(table):
    # a row given twice would be read twice an epoch (by the streamed tier only when both land in one step,
    # refused there; the resident tier would serve it twice): refused when the source is made, in any order
    path, _ = table
    t = data.NpyTable(path)
    for rows in ([3, 5, 5, 9], [9, 3, 5, 3]):
        with pytest.raises(ValueError, match="distinct"):
            data.ShardedBatches(t, rows, 2)
    assert len(data.ShardedBatches(t, [9, 3, 5, 1], 2)) == 2  # distinct, in no order: taken


def test_a_closed_table_says_so(table):
    path, _ = table
    t = data.NpyTable(path)
    t.close()
    with pytest.raises(ValueError, match="the table is closed"):
        t.read_rows(0, 1)
    with pytest.raises(ValueError, match="the table is closed"):
        t.read_index(np.array([0, 5]))


def _header(tmp_path, shape):
    p = tmp_path / "crafted.npy"
    with open(p, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
        f.write(b"\0" * 64)
    return p


def test_a_negative_or_columnless_shape_is_refused_at_open(tmp_path):
    with pytest.raises(wideann.DataError, match=r"crafted.npy: .*negative shape \(-1, 8\)"):
        data.NpyTable(_header(tmp_path, (-1, 8)))
    np.save(tmp_path / "empty.npy", np.zeros((5, 0), np.float32))
    with pytest.raises(wideann.DataError, match="empty.npy: a table with no columns"):
        data.open_table(tmp_path / "empty.npy")


def _t_and_other(tmp_path):
    """t.npy made by the engine, and other.npy of the same shape holding 42 everywhere."""
    os.chdir(tmp_path)
    wideann.make_data("raw.csv", 203, 8, seed=1)
    wideann.normalize("raw.csv", "t.npy")
    np.save("other.npy", np.full((203, 8), 42.0, np.float32))
    return tmp_path / "t.npy", tmp_path / "other.npy"


@pytest.mark.parametrize("how", ["pickle", "copy", "deepcopy"])
def test_a_copied_table_opens_its_file_anew_and_never_shares_a_descriptor(tmp_path, monkeypatch, how):
    import copy
    import gc
    import pickle

    monkeypatch.chdir(tmp_path)
    t_path, _ = _t_and_other(tmp_path)
    t = data.open_table("t.npy")
    first = t.read_rows(0, 5)
    t.read_index(np.arange(3), out=(np.empty((3, 7), np.float32), np.empty((3, 1), np.float32)))  # a native reader
    dup = {"pickle": lambda o: pickle.loads(pickle.dumps(o)), "copy": copy.copy, "deepcopy": copy.deepcopy}[how]
    t2 = dup(t)
    assert t2._fd != t._fd
    np.testing.assert_array_equal(t2.read_rows(0, 5), first)
    del t2
    gc.collect()  # the copy's descriptor closed: the next file opened may take its number
    u = data.open_table("other.npy")
    np.testing.assert_array_equal(t.read_rows(0, 5), first)  # (was other.npy's 42s: the copy had closed t's fd)
    x, y = np.empty((5, 7), np.float32), np.empty((5, 1), np.float32)
    t.read_index(np.arange(5), out=(x, y))
    np.testing.assert_array_equal(np.hstack([x, y]), first)
    u.close()
    # a shard set, and a batch source that has read an epoch (ring, pool, reader thread): its copy reads the same
    s = data.open_table([t_path, t_path.parent / "other.npy"])
    s.read_index(np.arange(3), out=(np.empty((3, 7), np.float32), np.empty((3, 1), np.float32)))
    s2 = dup(s)
    np.testing.assert_array_equal(s2.read_rows(200, 206), s.read_rows(200, 206))
    src = data.ShardedBatches(t, np.arange(203), 16, seed=1)
    list(src.epoch(0))
    src2 = dup(src)
    assert not set(data.ShardedBatches._KITS) & set(src2.__dict__)
    assert (src2.table is src.table) == (how == "copy") and not src2.rows.flags.writeable  # (shallow: one table)
    for (xa, ya), (xb, yb) in zip(src.epoch(1), src2.epoch(1), strict=True):
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def test_a_copied_table_refuses_a_file_changed_since_and_a_closed_one_stays_closed(tmp_path, monkeypatch):
    import pickle

    monkeypatch.chdir(tmp_path)
    _t_and_other(tmp_path)
    t = data.open_table("t.npy")
    blob = pickle.dumps(t)
    os.utime("t.npy", ns=(1, 1))
    with pytest.raises(wideann.DataError, match="t.npy: the file changed since the table was opened"):
        pickle.loads(blob)
    t.close()
    closed = pickle.loads(pickle.dumps(t))
    assert (closed.n_rows, closed._fd) == (203, -1)
    with pytest.raises(ValueError, match="t.npy: the table is closed"):
        closed.read_rows(0, 1)


@pytest.mark.parametrize("shuffle_rows", [-1, 0])
def test_a_source_refuses_shuffle_rows_below_one(table, shuffle_rows):
    # (0 was taken for the default, None, while the message said 1 or more)
    path, _ = table
    with pytest.raises(ValueError, match=r"shuffle_rows must be 1 or more \(None: the default\)"):
        data.ShardedBatches(path, np.arange(1003), 10, shuffle_rows=shuffle_rows)


@pytest.mark.parametrize("rows, err, what", [
    ([1.9, 2.9], TypeError, "integer row indices, got float64"),
    (np.array([False, True]), TypeError, r"not a boolean mask: give np.flatnonzero\(mask\)"),
    (np.ones(1003, bool), TypeError, "boolean mask"),
])
def test_a_source_refuses_rows_that_are_not_indices(table, rows, err, what):
    path, _ = table
    with pytest.raises(err, match=what):
        data.ShardedBatches(path, rows, 10)


@pytest.mark.parametrize("kw, err, what", [
    (dict(batch_size=4.9), TypeError, "batch_size must be a whole number, got 4.9"),
    (dict(world_size=2.5, rank=2), TypeError, "world_size must be a whole number"),
    (dict(rank=0.0), TypeError, "rank must be a whole number"),
    (dict(seed=-1), ValueError, "seed must be 0 or more"),
    (dict(dtype="bogus"), ValueError, "dtype must be a floating dtype"),
    (dict(dtype="int32"), ValueError, "dtype must be a floating dtype"),
    (dict(dtype=np.int16), ValueError, "dtype must be a floating dtype"),
    (dict(reader_threads=-2), ValueError, "reader_threads must be 1 or more"),
    (dict(prefetch=-1), ValueError, "prefetch must be 0 or more"),
    (dict(prefetch=2.5), TypeError, "prefetch must be a whole number"),
])
def test_a_source_refuses_settings_that_are_not_what_they_seem(table, kw, err, what):
    path, _ = table
    args = dict(batch_size=10) | kw
    with pytest.raises(err, match=what):
        data.ShardedBatches(path, np.arange(1003), args.pop("batch_size"), **args)


@pytest.mark.parametrize("name, value, err, what", [
    ("seed", -3, ValueError, "seed must be 0 or more, got -3"),  # (numpy's bare "expected non-negative integer")
    ("seed", 1.5, TypeError, "seed must be a whole number, got 1.5"),
    ("prefetch", -1, ValueError, "prefetch must be 0 or more"),  # (read as 0 before)
    ("prefetch", 2.5, TypeError, "prefetch must be a whole number"),
    ("batch_size", 4.9, TypeError, "batch_size must be a whole number"),  # (4.9 made 5.3 steps of an epoch)
    ("batch_size", 0, ValueError, "batch_size must be 1 or more"),
    ("shuffle_rows", 0, ValueError, "shuffle_rows must be 1 or more"),
    ("rank", 2, ValueError, "rank 2 out of range for world_size 2"),
])
def test_a_source_checks_settings_set_after_it_was_made(table, name, value, err, what):
    # settings may change between epochs (read on batches are planned anew): they are checked where they are
    # used, as __init__ checks them, with the same messages
    path, _ = table
    src = data.ShardedBatches(path, np.arange(1003), 10, world_size=2, prefetch=2, pin_memory=False)
    setattr(src, name, value)
    for use in (lambda: src.epoch_order(0), lambda: src.shard(0), lambda: src.epoch(0), lambda: len(src)):
        with pytest.raises(err, match=what):
            use()


def test_a_source_takes_numpy_dtypes_and_checks_the_epoch_when_asked(table):
    import torch

    path, a = table
    src = data.ShardedBatches(path, np.arange(1003), 100, dtype=np.float64, prefetch=0, shuffle=False)
    x, y = next(iter(src.epoch(0)))
    assert x.dtype == y.dtype == torch.float64
    np.testing.assert_array_equal(x.numpy(), a[:100, :8])
    with pytest.raises(ValueError, match="epoch must be 0 or more"):
        src.epoch(-1)  # (at the call, not at the first batch)
    for call in (src.epoch_order, src.shard):  # (numpy's bare "expected non-negative integer" before)
        with pytest.raises(ValueError, match="epoch must be 0 or more"):
            call(-1)
    assert data.ShardedBatches(path, [], 10).rows.size == 0  # (no rows: still fine)


def test_split_rows_refuses_what_it_cannot_split_clearly():
    with pytest.raises(data.TooFewRows, match="give smaller fractions"):
        data.split_rows(100, 0.9999999)
    with pytest.raises(TypeError, match="block_rows must be a whole number"):
        data.split_rows(100, 0.2, 0, 0, 2.5)
    with pytest.raises(TypeError, match="n_rows must be a whole number"):
        data.split_rows(100.7)
    s = data.split_rows(np.int64(100), 0.2, 0, 0, np.int64(2))
    assert np.array_equal(np.sort(np.concatenate(s)), np.arange(100)) and s.train.dtype.kind == "i"


class _RowsOf:
    """A map-style dataset over a table (what a PyTorch user writes): its DataLoader workers get it pickled."""

    def __init__(self, table):
        self.table = table

    def __len__(self):
        return self.table.n_rows

    def __getitem__(self, i):
        return self.table.read_rows(i, i + 1)[0]


def test_dataloader_workers_under_spawn_read_the_tables_rows(tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    _t_and_other(tmp_path)
    t = data.open_table("t.npy")
    want = t.read_rows(0, 203)
    loader = torch.utils.data.DataLoader(_RowsOf(t), batch_size=50, num_workers=1, multiprocessing_context="spawn")
    got = np.concatenate([b.numpy() for b in loader])  # (was "Illegal seek" or "file changed after its header ...")
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(t.read_rows(0, 203), want)


def test_a_source_with_resident_rows_is_not_pickled(table):
    import pickle

    path, _ = table
    t = data.open_table(path)
    src = data.ShardedBatches(t, np.arange(100), 10, device="cpu", resident=data.ResidentRows(t, np.arange(100), "cpu"))
    with pytest.raises(TypeError, match="resident rows cannot be pickled"):
        pickle.dumps(src)
