"""The native batch reader (csrc/batch_reader.cpp) against plain NumPy, and its refusals.

For random row sets, both dtypes, several thread counts, short last batches, tables of one row and
shard sets, the inputs and targets it writes into the caller's buffers are the bytes NumPy reads. A file
truncated or written in place under it is a wideann.DataError, never a wrong batch.
"""
import os

import numpy as np
import pytest

import wideann
from wideann import data
from wideann.data.native_reader import ReadAhead, read_into, reader_of
from conftest import not_under_asan  # noqa: E402


def _table(tmp_path, rows, cols, dtype, seed=0, name="t.npy"):
    a = np.random.default_rng(seed).random((rows, cols)).astype(dtype)
    p = tmp_path / name
    np.save(p, a)
    return p, a


def _shard_set(tmp_path, a, cuts):
    """``a`` saved as shards ``a[cuts[k]:cuts[k + 1]]``, opened as one table."""
    paths = [tmp_path / f"s{k}.npy" for k in range(len(cuts) - 1)]
    for k, path in enumerate(paths):
        np.save(path, a[cuts[k]:cuts[k + 1]])
    return data.open_table(paths)


def _read(table, rows):
    x = np.empty((len(rows), table.n_inputs), table.dtype)
    y = np.empty((len(rows), 1), table.dtype)
    table.read_index(np.asarray(rows, dtype=np.int64), (x, y))
    return x, y


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("threads", [1, 3])
def test_random_row_sets_give_the_bytes_numpy_reads(tmp_path, dtype, threads):
    p, a = _table(tmp_path, 2000, 37, dtype)
    rng = np.random.default_rng(1)
    with data.NpyTable(p) as t:
        t.reader_threads = threads
        for size in [0, 1, 2, 17, 256, 999, 2000]:
            rows = np.sort(rng.choice(2000, size, replace=False))
            x, y = _read(t, rows)
            assert x.tobytes() == a[rows, :-1].tobytes() and y.tobytes() == a[rows, -1:].tobytes()
        # long runs (split into several tasks and preadv calls) and the last row
        for rows in [np.arange(2000), np.arange(1500, 2000), np.r_[0:700, 701:1400, 1999]]:
            x, y = _read(t, rows)
            assert x.tobytes() == a[rows, :-1].tobytes() and y.tobytes() == a[rows, -1:].tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_a_table_of_one_row_and_a_table_of_only_a_target(tmp_path, dtype):
    p, a = _table(tmp_path, 1, 5, dtype)
    x, y = _read(data.NpyTable(p), [0])
    assert x.tobytes() == a[:, :-1].tobytes() and y.tobytes() == a[:, -1:].tobytes()
    p, a = _table(tmp_path, 10, 1, dtype, name="y.npy")
    x, y = _read(data.NpyTable(p), [2, 3, 9])
    assert x.shape == (3, 0) and y.tobytes() == a[[2, 3, 9]].tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_shard_sets_are_read_across_their_boundaries(tmp_path, dtype):
    _, a = _table(tmp_path, 1000, 11, dtype)
    rng = np.random.default_rng(2)
    with _shard_set(tmp_path, a, [0, 1, 1, 400, 401, 999, 1000]) as t:  # shards of 1 row, 0 rows, 399, 1, 598, 1
        t.reader_threads = 4
        for size in [1, 5, 300, 1000]:
            rows = np.sort(rng.choice(1000, size, replace=False))
            x, y = _read(t, rows)
            assert x.tobytes() == a[rows, :-1].tobytes() and y.tobytes() == a[rows, -1:].tobytes()
        x, y = _read(t, np.arange(1000))
        assert x.tobytes() == a[:, :-1].tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_batch_sources_deliver_float32_short_last_batches_and_the_raw_dtype_on_request(tmp_path, dtype):
    p, a = _table(tmp_path, 203, 6, dtype)
    src = data.ShardedBatches(p, np.arange(203), 25, seed=4, rank=1, world_size=2, reader_threads=2)
    order = src.epoch_order(3)
    got = list(src.epoch(3))
    assert [len(x) for x, _ in got] == [25, 25, 25, 25, 2]  # 203 = 4 x 50 + 3: a short last global batch
    for step, (x, y) in enumerate(got):
        rows = src.step_rows(order, step)
        assert str(x.dtype) == "torch.float32" and str(y.dtype) == "torch.float32"
        np.testing.assert_array_equal(x.numpy(), a[rows, :-1].astype(np.float32))
        np.testing.assert_array_equal(y.numpy(), a[rows, -1:].astype(np.float32))
    raw = data.ShardedBatches(p, np.arange(203), 25, seed=4, dtype=None, prefetch=0)
    x, y = next(iter(raw.epoch(0)))
    assert x.numpy().dtype == dtype and x.numpy().tobytes() == a[raw.step_rows(raw.epoch_order(0), 0), :-1].tobytes()


@pytest.mark.parametrize("threads", [1, 3])
def test_float16_read_into_float32_is_converted_exactly(tmp_path, threads):
    """Every finite float16 (subnormals, negatives, 65504 included), 37 inputs: the vector loop and its tail."""
    bits = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    bits = bits[np.isfinite(bits)]
    a = np.resize(bits, (bits.size // 38 + 1) * 38).reshape(-1, 38)
    np.save(tmp_path / "h.npy", a)
    rows = np.sort(np.random.default_rng(3).choice(len(a), 900, replace=False))
    with data.NpyTable(tmp_path / "h.npy") as t:
        t.reader_threads = threads
        x, y = np.empty((900, 37), np.float32), np.empty((900, 1), np.float32)
        t.read_index(rows, (x, y))
        assert x.tobytes() == a[rows, :-1].astype(np.float32).tobytes()
        assert y.tobytes() == a[rows, -1:].astype(np.float32).tobytes()
        x, y = np.empty((len(a), 37), np.float32), np.empty((len(a), 1), np.float32)
        t.read_index(np.arange(len(a)), (x, y))
        assert x.tobytes() == a[:, :-1].astype(np.float32).tobytes()



def test_float16_read_into_float32_in_software_gives_the_same_bytes(tmp_path):
    """WIDEANN_HALF_CONVERSION=software (read once per process) takes the reader's conversion off F16C too."""
    import subprocess
    import sys

    bits = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    a = np.resize(bits[np.isfinite(bits)], (63_488 // 20 + 1) * 20).reshape(-1, 20)
    np.save(tmp_path / "h.npy", a)
    code = ("import sys, numpy as np, wideann._native as n; from wideann import data\n"
            "t = data.NpyTable(sys.argv[1]); x = np.empty((t.n_rows, 19), np.float32); "
            "y = np.empty((t.n_rows, 1), np.float32)\n"
            "t.read_index(np.arange(t.n_rows), (x, y)); np.save(sys.argv[2], np.hstack([x, y])); "
            "print(n.half_conversion())")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "h.npy"), str(tmp_path / "f.npy")],
                       env={**os.environ, "WIDEANN_HALF_CONVERSION": "software"}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "software"
    assert np.load(tmp_path / "f.npy").tobytes() == a.astype(np.float32).tobytes()

@pytest.mark.parametrize("dtype,into", [(np.float32, np.float32), (np.float16, np.float16),
                                        (np.float16, np.float32)])
def test_several_sorted_batches_read_in_one_call_give_the_bytes_numpy_reads(tmp_path, dtype, into):
    # a group of steps is read in one call (the GPU path): rows sorted within each batch, in any order
    # between them, across the shards of a shard set and back; by read_into and by a read-ahead
    _, a = _table(tmp_path, 1000, 23, dtype)
    rng = np.random.default_rng(4)
    with _shard_set(tmp_path, a, [0, 300, 301, 1000]) as t:
        t.reader_threads = 3
        ahead = ReadAhead(t)
        for sizes in [[5], [64, 64, 64, 17], [1, 0, 999], [0], [300, 0], [16] * 40]:
            rows = np.concatenate([np.sort(rng.choice(1000, k, replace=False)) for k in sizes] or [[]])
            rows = rows.astype(np.int64)
            n = rows.size
            x, y = np.empty((n, 22), into), np.empty((n, 1), into)
            read_into(t, rows, x, y, sizes)
            assert x.tobytes() == a[rows, :-1].astype(into).tobytes()
            assert y.tobytes() == a[rows, -1:].astype(into).tobytes()
            x2, y2 = np.empty_like(x), np.empty_like(y)
            ahead.wait(ahead.submit(rows, x2, y2, sizes))
            assert x2.tobytes() == x.tobytes() and y2.tobytes() == y.tobytes()
        ahead.close()


def test_a_group_of_batches_is_refused_where_a_batch_is_not_sorted_or_the_sizes_do_not_add_up(tmp_path):
    p, _ = _table(tmp_path, 50, 4, np.float32)
    t = data.NpyTable(p)
    ahead = ReadAhead(t)

    def buffers(n):
        return np.empty((n, 3), np.float32), np.empty((n, 1), np.float32)

    read_into(t, [7, 9, 1, 2], *buffers(4), [2, 2])  # down between batches: read
    with pytest.raises(ValueError, match="strictly increasing within each batch"):
        read_into(t, [7, 9, 2, 1], *buffers(4), [2, 2])
    with pytest.raises(ValueError, match="strictly increasing within each batch"):
        ahead.submit([7, 9, 1, 2], *buffers(4), [3, 1])  # refused at once, not at its wait
    with pytest.raises(ValueError, match=r"add up to the 4 rows given, got \[2, 1\]"):
        ahead.submit([7, 9, 1, 2], *buffers(4), [2, 1])
    with pytest.raises(ValueError, match=r"add up to the 4 rows given, got \[2, 3\]"):
        read_into(t, [7, 9, 1, 2], *buffers(4), [2, 3])
    with pytest.raises(ValueError, match=r"0 or more and add up to the 4 rows given, got \[-1, 5\]"):
        read_into(t, [7, 9, 1, 2], *buffers(4), [-1, 5])
    with pytest.raises(ValueError, match=r"add up to the 0 rows given, got \[3\]"):
        read_into(t, [], *buffers(0), [3])  # (no rows: nothing to read, still refused)
    with pytest.raises(TypeError):
        read_into(t, [7, 9, 1, 2], *buffers(4), [2.0, 2])
    # and the engine's own check, which the glue's comes before: sizes that only wrap around to the rows
    reader = reader_of(t)
    for sizes in ([2, 1], [2, 3], [2**64 - 1, 5], [2, 2**64 - 1, 3], [2**63, 2**63, 4]):
        with pytest.raises(ValueError, match="add up to"):
            reader.read(np.array([0, 1, 2, 3]), *buffers(4), sizes)
    with pytest.raises(IndexError, match="out of range"):
        read_into(t, [7, 9, 1, 50], *buffers(4), [2, 2])
    assert ahead.queued == 0
    ahead.close()


def test_wrong_buffers_and_row_lists_are_refused(tmp_path):
    p, a = _table(tmp_path, 50, 4, np.float16)
    t = data.NpyTable(p)
    rows = np.array([1, 2, 3])
    with pytest.raises(ValueError, match="dtype"):
        t.read_index(rows, (np.empty((3, 3), np.float64), np.empty((3, 1), np.float64)))
    with pytest.raises(ValueError, match="dtype"):
        t.read_index(rows, (np.empty((3, 3), np.float32), np.empty((3, 1), np.float16)))
    with pytest.raises(ValueError, match="shape"):
        t.read_index(rows, (np.empty((2, 3), np.float16), np.empty((3, 1), np.float16)))
    with pytest.raises(ValueError, match="C-contiguous"):
        read_into(t, rows, np.empty((3, 6), np.float16)[:, ::2], np.empty((3, 1), np.float16))
    with pytest.raises(ValueError, match="strictly increasing"):
        _read(t, [3, 2])
    with pytest.raises(ValueError, match="strictly increasing"):
        _read(t, [2, 2])
    with pytest.raises(IndexError, match="out of range"):
        _read(t, [10, 50])
    t.close()
    with pytest.raises(ValueError, match="closed"):
        _read(t, [1])


def _old_mtime(path):
    """Files made a moment ago may share their time with a change made now (coarse clocks)."""
    os.utime(path, (1_000_000_000, 1_000_000_000))


def test_a_table_whose_name_is_not_utf8_is_read_and_its_errors_name_it(tmp_path):
    # the path went to the reader as text, which a name with byte 0xff has not: a TypeError before any batch (a
    # lesson given --data t\xff.csv ended in a traceback); bytes now, shown as \xff in its messages
    p, a = _table(tmp_path, 40, 5, np.float32, name=os.fsdecode(b"t\xff.npy"))
    t = data.NpyTable(p)
    x, y = _read(t, [0, 7, 39])
    assert x.tobytes() == a[[0, 7, 39], :4].tobytes() and y.tobytes() == a[[0, 7, 39], 4:].tobytes()
    os.truncate(p, os.path.getsize(p) - 5 * 4)
    with pytest.raises(wideann.DataError, match=r"t\\xff.npy: unexpected end of file"):
        _read(t, [39])


def test_a_file_truncated_under_the_reader_is_an_error_not_a_batch(tmp_path):
    p, a = _table(tmp_path, 400, 20, np.float32)
    t = data.NpyTable(p)
    _read(t, [0, 1, 2])  # the reader is made and works
    os.truncate(p, os.path.getsize(p) - 3 * 20 * 4)
    with pytest.raises(wideann.DataError, match="t.npy: unexpected end of file") as e:
        _read(t, [390, 399])
    assert "\n" not in str(e.value)
    # rows still inside the file: read, but the changed size is noticed
    with pytest.raises(wideann.DataError, match="t.npy: the file changed while it was being read"):
        _read(t, [0, 1])


def test_a_file_written_in_place_under_the_reader_is_an_error_not_a_batch(tmp_path):
    p, a = _table(tmp_path, 300, 8, np.float32)
    _old_mtime(p)
    t = data.NpyTable(p)
    src = data.ShardedBatches(t, np.arange(300), 32, seed=0, prefetch=2)
    it = src.epoch(0)
    next(it)
    with open(p, "r+b") as f:  # same size, other values
        f.seek(200)
        f.write(np.ones(50, np.float32).tobytes())
    with pytest.raises(wideann.DataError, match="changed while it was being read"):
        for _ in it:
            pass
    # a table opened after the change reads the new bytes
    assert data.NpyTable(p).read_rows(0, 300).tobytes() == np.load(p).tobytes()


def test_a_file_changed_between_its_header_and_the_first_read_is_refused(tmp_path):
    p, a = _table(tmp_path, 30, 8, np.float32)
    _old_mtime(p)
    t = data.NpyTable(p)
    with open(p, "r+b") as f:
        f.seek(200)
        f.write(b"\0" * 8)
    with pytest.raises(wideann.DataError, match="changed after its header was read"):
        _read(t, [0])


def test_batch_memory_is_recycled_only_when_nothing_uses_it(tmp_path):
    import torch

    p, a = _table(tmp_path, 640, 9, np.float32)
    src = data.ShardedBatches(p, np.arange(640), 16, seed=1, pin_memory=False, prefetch=2)
    order = src.epoch_order(0)
    w = torch.ones(8, requires_grad=True)
    it = src.epoch(0)
    x0, _ = next(it)
    # (the pool is shared by the sources of its block size, and counts the blocks made for all of them: what
    # counts here is what this epoch's 39 later batches needed)
    made = src._pool.allocated
    expected = x0.clone().sum(0)
    loss = (x0 * w).sum()  # autograd keeps x0 for the backward pass
    kept = x0[3:5]         # and a view of it
    del x0
    for step, (x, y) in enumerate(it, start=1):  # the rest of the epoch, dropped as it goes
        rows = src.step_rows(order, step)
        np.testing.assert_array_equal(x.numpy(), a[rows, :-1])
    loss.backward()
    assert torch.equal(w.grad, expected), "memory still used by an autograd graph was reused"
    np.testing.assert_array_equal(kept.numpy(), a[src.step_rows(order, 0)[3:5], :-1])
    assert src._pool.allocated - made <= src.prefetch + 6, "memory of dropped batches was not reused"
    assert src._pool.spare <= src.prefetch + 2, "at most prefetch + 2 spare blocks are kept"


def test_a_float16_table_truncated_under_the_converting_reader_is_an_error(tmp_path):
    p, a = _table(tmp_path, 100, 10, np.float16)
    t = data.NpyTable(p)
    x, y = np.empty((2, 9), np.float32), np.empty((2, 1), np.float32)
    t.read_index(np.array([0, 1]), (x, y))  # the reader is made and works
    os.truncate(p, os.path.getsize(p) - 20)
    with pytest.raises(wideann.DataError, match="unexpected end of file"):
        t.read_index(np.array([98, 99]), (x, y))


# ---- read ahead (csrc/read_ahead.cpp): batches read by a native thread while the caller goes on ------
@pytest.mark.parametrize("dtype,into", [(np.float32, np.float32), (np.float16, np.float16),
                                        (np.float16, np.float32)])
def test_batches_read_ahead_give_the_bytes_numpy_reads(tmp_path, dtype, into):
    p1, a1 = _table(tmp_path, 700, 23, dtype, seed=1, name="a.npy")
    p2, a2 = _table(tmp_path, 300, 23, dtype, seed=2, name="b.npy")
    a = np.concatenate([a1, a2])
    rng = np.random.default_rng(3)
    table = data.open_table([p1, p2])
    table.reader_threads = 2
    ahead = ReadAhead(table)
    queued = []
    for size in [1, 64, 0, 999, 1000, 5, 300, 17] * 3:  # short, empty and whole-table batches, across the shards
        rows = np.sort(rng.choice(1000, size, replace=False))
        x, y = np.empty((size, 22), into), np.empty((size, 1), into)
        queued.append((ahead.submit(rows, x, y), rows, x, y))
        if len(queued) > 5:  # up to 6 batches in flight
            ticket, rows, x, y = queued.pop(0)
            ahead.wait(ticket)
            assert x.tobytes() == a[rows, :-1].astype(into).tobytes()
            assert y.tobytes() == a[rows, -1:].astype(into).tobytes()
    for ticket, rows, x, y in queued:
        ahead.wait(ticket)
        assert x.tobytes() == a[rows, :-1].astype(into).tobytes()
    assert ahead.queued == 0
    ahead.close()


def test_read_ahead_holds_the_buffers_until_the_wait_and_refuses_wrong_plans_at_once(tmp_path):
    import gc
    import weakref

    p, _ = _table(tmp_path, 50, 9, np.float32)
    t = data.NpyTable(p)
    ahead = ReadAhead(t)

    class Array(np.ndarray):  # numpy arrays take no weak references; a subclass does
        pass

    x, y = np.empty((3, 8), np.float32).view(Array), np.empty((3, 1), np.float32).view(Array)
    alive = weakref.ref(x)
    ticket = ahead.submit([1, 2, 40], x, y)
    del x
    gc.collect()
    assert alive() is not None  # the reading thread may still write into it
    ahead.wait(ticket)
    gc.collect()
    assert alive() is None  # and it is let go once read
    with pytest.raises(IndexError, match="out of range"):
        ahead.submit([3, 50], np.empty((2, 8), np.float32), np.empty((2, 1), np.float32))
    with pytest.raises(ValueError, match="increasing"):
        ahead.submit([4, 3], np.empty((2, 8), np.float32), np.empty((2, 1), np.float32))
    with pytest.raises(ValueError, match="shape"):
        ahead.submit([4, 5], np.empty((3, 8), np.float32), np.empty((2, 1), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        ahead.submit([4, 5], np.empty((2, 8), np.float64), np.empty((2, 1), np.float64))
    with pytest.raises(ValueError, match="no batch"):
        ahead.wait(ticket)  # already waited for
    assert ahead.queued == 0


def test_cancelled_batches_are_dropped_and_a_read_ahead_with_batches_in_flight_can_be_let_go(tmp_path):
    p, a = _table(tmp_path, 4000, 301, np.float32)
    t = data.NpyTable(p)
    ahead = ReadAhead(t)
    tickets = [ahead.submit(np.arange(4000), np.empty((4000, 300), np.float32), np.empty((4000, 1), np.float32))
               for _ in range(20)]
    ahead.close()  # the one being read is finished, the others are dropped
    assert ahead.queued == 0
    with pytest.raises(ValueError, match="no batch"):
        ahead.wait(tickets[-1])
    x, y = np.empty((2, 300), np.float32), np.empty((2, 1), np.float32)
    ahead.wait(ahead.submit([0, 3999], x, y))  # still usable after a cancel
    np.testing.assert_array_equal(x, a[[0, 3999], :-1])
    for _ in range(10):  # let go (garbage) with batches in flight: it finishes or drops them, then stops
        more = ReadAhead(t)
        for _ in range(5):
            more.submit(np.arange(4000), np.empty((4000, 300), np.float32), np.empty((4000, 1), np.float32))
        del more


def test_a_read_ahead_batch_that_fails_raises_at_its_own_wait(tmp_path):
    p, a = _table(tmp_path, 1000, 65, np.float32)
    t = data.NpyTable(p)
    ahead = ReadAhead(t)
    x0, y0 = np.empty((10, 64), np.float32), np.empty((10, 1), np.float32)
    first = ahead.submit(np.arange(10), x0, y0)
    ahead.wait(first)
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) // 2)
    bad = ahead.submit(np.arange(900, 1000), np.empty((100, 64), np.float32), np.empty((100, 1), np.float32))
    with pytest.raises(wideann.DataError, match="t.npy"):
        ahead.wait(bad)
    np.testing.assert_array_equal(x0, a[:10, :-1])


@not_under_asan
def test_a_reader_whose_threads_cannot_be_started_is_a_data_error(tmp_path):
    """A native reader that cannot start its threads (a limit on address space: 1000 stacks of 8 MiB) raises
    wideann.DataError (the threads it started stopped, its descriptors closed), where it ended the process in
    std::terminate, or hung there (the pool's condition variables destroyed under its waiting threads)."""
    import subprocess
    import sys

    p, _ = _table(tmp_path, 10, 4, np.float32)
    script = ("import os, sys, wideann\n"
              "from wideann import data\n"
              "from wideann.data.native_reader import reader_of\n"
              "t = data.NpyTable(sys.argv[1]); t.reader_threads = int(sys.argv[2])\n"
              "fds = len(os.listdir('/proc/self/fd'))\n"
              "try:\n"
              "    reader_of(t); print('made')\n"
              "except wideann.DataError as e:\n"
              "    print(e)\n"
              "print(len(os.listdir('/proc/self/fd')) - fds)\n")
    limited = ["sh", "-c", 'ulimit -s 8192 2>/dev/null; ulimit -v 1000000 && exec "$@"', "sh"]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    r = subprocess.run(limited + [sys.executable, "-c", script, os.fspath(p), "1000"], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    said, fds = r.stdout.splitlines()
    assert said.startswith("cannot start 1000 threads: ") and said.endswith("; use fewer reader threads"), said
    assert fds == "0", "the reader's copies of the descriptors are closed"
    r = subprocess.run(limited + [sys.executable, "-c", script, os.fspath(p), "4"], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.stdout.splitlines() == ["made", "1"], r.stdout + r.stderr  # the limit itself is not what fails


@not_under_asan
def test_a_read_ahead_whose_thread_cannot_be_started_is_a_data_error(tmp_path):
    """ReadAhead's own thread, where no thread can start (stacks of 2 GB in 1 GB of address space): a
    wideann.DataError that says so, where it was a RuntimeError saying only 'Resource temporarily unavailable'."""
    import subprocess
    import sys

    p, _ = _table(tmp_path, 10, 4, np.float32)
    script = ("import sys, wideann\n"
              "from wideann import data\n"
              "from wideann.data.native_reader import ReadAhead, reader_of\n"
              "t = data.NpyTable(sys.argv[1]); t.reader_threads = 1\n"
              "reader_of(t)\n"  # a reader of one thread starts none
              "try:\n"
              "    ReadAhead(t); print('made')\n"
              "except wideann.DataError as e:\n"
              "    print(e)\n")
    r = subprocess.run(["sh", "-c", 'ulimit -s 2000000 && ulimit -v 1000000 && exec "$@"', "sh", sys.executable,
                        "-c", script, os.fspath(p)], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("cannot start 1 thread: "), r.stdout
