"""The two tiers of the data path give the same batches and the same training (issue 6, point 4).

On the CPU, with the CPU as the "device" of the resident tier: the rows held in memory and gathered by
index give, step for step, the bytes the streamed path reads from disk, for every process, epoch and
resumed step, float32 and float16, one file or shards; lesson 4 trains the same model with either tier.
The GPU versions of the same checks run where CUDA is present (skipped here otherwise).
"""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from wideann import data  # noqa: E402
from wideann.data.resident import ResidentRows, device_tier  # noqa: E402
from conftest import threads  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _table(tmp_path, dtype, rows=777, cols=13, shards=None):
    a = np.random.default_rng(0).random((rows, cols)).astype(dtype)
    if not shards:
        np.save(tmp_path / "t.npy", a)
        return tmp_path / "t.npy", a
    bounds = [0, *shards, rows]
    paths = []
    for k in range(len(bounds) - 1):
        paths.append(tmp_path / f"part-{k}.npy")
        np.save(paths[-1], a[bounds[k]:bounds[k + 1]])
    return paths, a


def _in_groups_of(source, steps, batch):
    """Set ``source`` to move ``steps`` steps of ``batch`` rows per copy or gather: a group is sized by the
    larger of a row's bytes in the table and as delivered (inputs in the delivered dtype, a float32 target)."""
    t = source.table
    delivered = t.n_inputs * (t.dtype.itemsize if source.dtype is None else source.dtype.itemsize) + 4
    source.group_bytes = steps * batch * max(t.row_bytes, delivered)


def _gpu_path(table, rows, batch, group=None, **options):
    """A batch source on the GPU path (its CUDA calls stood in, as by :class:`_LateCuda`), delivering on the CPU,
    moving ``group`` steps per copy (None: the default group size)."""
    gpu = data.ShardedBatches(table, rows, batch, pin_memory=False, **options)
    gpu.cuda, gpu.device = True, torch.device("cpu")
    if group:
        _in_groups_of(gpu, group, batch)
    return gpu


def _same(b1, b2):
    assert len(b1) == len(b2)
    for (x1, y1), (x2, y2) in zip(b1, b2):
        assert x1.dtype == x2.dtype and y1.dtype == y2.dtype and x1.shape == x2.shape
        assert torch.equal(x1.cpu(), x2.cpu()) and torch.equal(y1.cpu(), y2.cpu())


@pytest.mark.parametrize("dtype, shards", [(np.float32, None), (np.float16, None), (np.float32, [100, 101, 500])])
def test_resident_rows_give_the_streamed_batches(tmp_path, dtype, shards):
    source, a = _table(tmp_path, dtype, shards=shards)
    table = data.open_table(source)
    split = data.split_rows(table.n_rows, 0.2, 0.1, seed=1)
    store = ResidentRows(table, np.concatenate([split.train, split.val]), "cpu", chunk_bytes=1000)  # many chunks
    assert store.x.dtype == (torch.float16 if dtype == np.float16 else torch.float32)  # held in the table's dtype
    world = 3
    for rank in range(world):
        kw = dict(rank=rank, world_size=world, device="cpu")
        streamed = data.ShardedBatches(table, split.train, 20, seed=7, **kw)
        resident = data.ShardedBatches(table, split.train, 20, seed=7, resident=store, **kw)
        assert (streamed.tier, resident.tier) == ("stream", "resident")
        grouped = data.ShardedBatches(table, split.train, 20, seed=7, resident=store, **kw)
        _in_groups_of(grouped, 3, 20)  # gathered 3 steps at a time (default: the whole epoch)
        assert (resident.group_steps, grouped.group_steps) == (len(resident), 3)
        for epoch, start in [(1, 0), (2, 0), (2, 4)]:
            _same(list(streamed.epoch(epoch, start)), list(resident.epoch(epoch, start)))
            _same(list(streamed.epoch(epoch, start)), list(grouped.epoch(epoch, start)))
        assert streamed.rows_read == 2 * resident.rows_read == 2 * grouped.rows_read  # (streamed read twice)
        val_s = data.ShardedBatches(table, split.val, 64, shuffle=False, **kw)
        val_r = data.ShardedBatches(table, split.val, 64, shuffle=False, resident=store, **kw)
        _same(list(val_s.epoch(0)), list(val_r.epoch(0)))
    # and the streamed batches are the table's rows
    s = data.ShardedBatches(table, split.train, 20, seed=7, device="cpu")
    x, y = next(iter(s.epoch(1)))
    rows = s.step_rows(s.epoch_order(1), 0)
    np.testing.assert_array_equal(x.numpy(), a[rows, :-1].astype(np.float32))
    # a resident tier refuses rows it does not hold
    with pytest.raises(KeyError):
        list(data.ShardedBatches(table, split.test, 20, device="cpu", resident=store).epoch(0))
    # and rows held on another device than the source's: refused when the source is made, and at an epoch
    # when its device was set since (the gathers would run where the rows are, not where the batches go)
    with pytest.raises(ValueError, match="this source's device"):
        data.ShardedBatches(table, split.train, 20, device=torch.device("cpu", 0), resident=store)
    moved = data.ShardedBatches(table, split.train, 20, device="cpu", resident=store)
    list(moved.epoch(0))
    moved.device = torch.device("cpu", 0)  # (another device, as torch compares them)
    with pytest.raises(ValueError, match="this source's device"):
        next(moved.epoch(1))


@pytest.mark.parametrize("dtype, cols, word", [(np.float16, 13, torch.int64), (np.float16, 7, torch.int32),
                                               (np.float16, 4, torch.float16), (np.float32, 5, torch.int64),
                                               (np.float32, 4, torch.float32), (np.float16, 1, torch.float16)])
def test_resident_gathers_whole_rows_as_wider_words_and_gives_the_same_bytes(tmp_path, dtype, cols, word):
    # (12 float16 inputs are 3 words of 8 bytes; 6 are 3 of 4; 3 float16 or 3 float32 divide into no wider
    # word; a table of targets alone has no inputs to gather)
    source, a = _table(tmp_path, dtype, rows=50, cols=cols)
    store = ResidentRows(data.open_table(source), np.arange(50), "cpu")
    assert store._x_words.dtype == word and store._x_words.data_ptr() == store.x.data_ptr()
    for pos in ([7, 3, 3, 49, 0], [], list(range(50))):
        x, y = store.gather(torch.tensor(pos, dtype=torch.int64))
        assert x.dtype == y.dtype == store.x.dtype and x.shape == (len(pos), cols - 1)
        np.testing.assert_array_equal(x.numpy(), a[pos, :-1])
        np.testing.assert_array_equal(y.numpy(), a[pos, -1:])


def test_resident_steps_are_sorted_as_the_streamed_ones_whatever_the_order_of_rows(tmp_path):
    # the resident tier sorts each full step's positions on the device, the short last one on the host:
    # rows given in no order, unshuffled (each step is then a slice of them), and shuffled, in 1 and 2 processes
    source, _ = _table(tmp_path, np.float16, rows=300)
    table = data.open_table(source)
    rows = np.random.default_rng(3).permutation(300)[:257]
    store = ResidentRows(table, rows, "cpu")
    for shuffle in (False, True):
        for rank, world in ((0, 1), (1, 2)):
            kw = dict(shuffle=shuffle, rank=rank, world_size=world, seed=5, device="cpu")
            streamed = data.ShardedBatches(table, rows, 16, **kw)
            resident = data.ShardedBatches(table, rows, 16, resident=store, **kw)
            _same(list(streamed.epoch(2)), list(resident.epoch(2)))
            _same(list(streamed.epoch(2, 3)), list(resident.epoch(2, 3)))


def test_resident_plans_of_several_epochs_give_each_epoch_the_streamed_batches(tmp_path, monkeypatch):
    # the resident tier plans several epochs at a time on the device (PLAN_POSITIONS, made small here so
    # that a plan ends every few epochs): every epoch, in any order of asking (on, back, again, resumed), in
    # 1-3 processes, with pieces that divide the rows or not and short last steps of 0 rows or more, gives the
    # streamed tier's batches; an unshuffled source plans once
    from wideann.data import batches
    monkeypatch.setattr(batches, "PLAN_POSITIONS", 200)
    source, _ = _table(tmp_path, np.float16, rows=150, cols=5)
    table = data.open_table(source)
    rng = np.random.default_rng(11)
    for rows, batch, piece in ((np.arange(150), 16, 7), (np.sort(rng.permutation(150)[:101]), 33, 4),
                               (np.arange(3, 5), 8, 16), (np.arange(0, 150, 2), 25, 5)):
        store = ResidentRows(table, rows, "cpu")
        for world in (1, 2, 3):
            for rank in range(world):
                kw = dict(rank=rank, world_size=world, seed=2, shuffle_rows=piece, device="cpu", dtype=None)
                streamed = data.ShardedBatches(table, rows, batch, **kw)
                resident = data.ShardedBatches(table, rows, batch, resident=store, **kw)
                for epoch, start in ((0, 0), (1, 0), (5, 0), (2, 1), (9, 0), (5, len(resident) - 1),
                                     (5, len(resident))):
                    _same(list(streamed.epoch(epoch, start)), list(resident.epoch(epoch, start)))
                plan = resident._plan_kit  # (epochs sized by the larger of all processes' rows and this one's steps)
                assert len(plan["steps"]) == min(64, max(1, 200 // max(rows.size, len(resident) * resident._most_rows)))
                once = data.ShardedBatches(table, rows, batch, resident=store, shuffle=False, **kw)
                still = data.ShardedBatches(table, rows, batch, shuffle=False, **kw)
                for epoch in (0, 3, 70):
                    _same(list(still.epoch(epoch)), list(once.epoch(epoch)))
                assert len(once._plan_kit["steps"]) == 1
    # a batch's targets are its own: changed in place, the epoch's are not when it is read again (the plan
    # holds them)
    for x, y in resident.epoch(6):
        x += 1
        y += 1
    _same(list(streamed.epoch(6)), list(resident.epoch(6)))
    # a source whose settings change plans anew (the plan of the old ones is not served)
    for name, value in (("seed", 3), ("shuffle_rows", 2), ("batch_size", 7), ("shuffle", False), ("rank", 0)):
        setattr(streamed, name, value)
        setattr(resident, name, value)
        _same(list(streamed.epoch(6)), list(resident.epoch(6)))
    # a batch far larger than the rows: the plan is as wide as the largest step, not the batch
    huge = data.ShardedBatches(table, rows, 10**7, resident=store, device="cpu", dtype=None)
    _same(list(data.ShardedBatches(table, rows, 10**7, device="cpu", dtype=None).epoch(1)), list(huge.epoch(1)))
    assert huge._plan_kit["steps"].shape[1:] == (1, rows.size)
    # a negative start step is refused by both tiers
    for source in (streamed, resident):
        with pytest.raises(ValueError, match="start_step must be 0 or more, got -1"):
            next(source.epoch(0, -1))


@pytest.mark.parametrize("tier", ["stream", "resident"])
def test_with_the_tables_dtype_the_inputs_keep_it_and_the_targets_are_float32(tmp_path, tier):
    # (lesson 4 under mixed precision: a float16 y beside a float32 prediction failed in the backward pass,
    # with torch 2.11 and autocast on a CPU)
    path, a = _table(tmp_path, np.float16)
    table = data.NpyTable(path)
    store = ResidentRows(table, np.arange(777), "cpu") if tier == "resident" else None
    src = data.ShardedBatches(table, np.arange(777), 64, seed=1, device="cpu", resident=store, dtype=None)
    got = list(src.epoch(0))
    assert all(x.dtype == torch.float16 and y.dtype == torch.float32 for x, y in got)
    rows = src.step_rows(src.epoch_order(0), 0)
    assert torch.equal(got[0][1], torch.from_numpy(a[rows, -1:].astype(np.float32)))


def test_the_tier_decision(tmp_path):
    path, _ = _table(tmp_path, np.float32)
    table = data.NpyTable(path)
    rows = [np.arange(700), np.arange(700, 777)]
    tier = device_tier(table, rows, "cpu")
    assert tier.name == "stream" and tier.store is None and "on the CPU" in tier.reason
    assert device_tier(table, rows, "cpu", "stream").name == "stream"
    tier = device_tier(table, rows, "cpu", "resident")
    assert tier.name == "resident" and tier.store.rows.size == 777 and tier.store.nbytes == 777 * 13 * 4
    assert "fit the budget" in tier.reason
    # sizes too small for GiB in MiB or bytes (it said "take 0.00 GiB, more than the budget of 0.00 GiB")
    with pytest.raises(data.TierDoesNotFit, match=r"777 rows the batches read take 0.04 MiB, more than "
                                                  r"the budget of 1,073 bytes"):
        device_tier(table, rows, "cpu", "resident", budget_gib=1e-6)
    # just over the budget, at any scale: the two sizes rounded alike are said in bytes ("take 0.04 MiB, more than
    # the budget of 0.04 MiB" read as a contradiction)
    with pytest.raises(data.TierDoesNotFit, match=r"take 40,404 bytes, more than the budget of 40,000 bytes"):
        device_tier(table, rows, "cpu", "resident", budget_gib=40_000.5 / 2**30)
    with pytest.raises(ValueError):
        device_tier(table, rows, "cpu", "gpu-please")


@pytest.mark.parametrize("precision", ["no", "bf16"])  # bf16: batches stay float16 (the table's), autocast converts
def test_lesson4_trains_the_same_model_with_either_tier(tmp_path, precision):
    pytest.importorskip("accelerate")
    import wideann
    from test_lessons import _metrics, launch

    wideann.make_data(tmp_path / "t.csv", rows=700, cols=9, seed=2, noise=0.5)
    wideann.normalize([tmp_path / "t.csv"], tmp_path / "t.npy", dtype="float16")
    common = ["--data", tmp_path / "t.npy", "--epochs", "2", "--hidden", "32", "16", "--batch-size", "32",
              "--patience", "100", "--checkpoint-every", "7", "--mixed-precision", precision]
    runs = {}
    for tier in ("stream", "resident"):
        out = launch(tmp_path, "4_multi_gpu_ann.py", *common, "--data-tier", tier, "--output-dir", tmp_path / tier)
        assert f"data tier: {tier}:" in out
        runs[tier] = _metrics(tmp_path / tier)
        m = runs[tier]
        assert m["data_tier"] == tier and m["table_dtype"] == "float16" and m["mixed_precision"] == precision
        assert np.isfinite(m["test_r2"]) and m["test_r2"] > 0.1
        assert m["train_samples_per_second"] >= m["samples_per_second"] > 0  # the steps alone are faster
    for key in ("test_rmse", "test_r2", "best_epoch", "best_val_loss", "epochs"):
        assert runs["stream"][key] == runs["resident"][key], key
    w1, w2 = (torch.load(tmp_path / t / "best_model.pt") for t in ("stream", "resident"))
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert json.loads((tmp_path / "stream" / "metrics.json").read_text())["data_tier"] == "stream"


# ---- on a GPU ----------------------------------------------------------------------------------------
@cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("prefetch, group", [(0, None), (3, None), (3, 4)])
def test_gpu_streamed_and_resident_batches_equal_the_cpu_ones(tmp_path, dtype, prefetch, group):
    # group: steps per copy or gather (None: the default, the whole epoch of 34 steps of this small table)
    path, _ = _table(tmp_path, dtype, rows=3001, cols=257)
    table = data.NpyTable(path)
    split = data.split_rows(table.n_rows, 0.2, 0.1, seed=1)
    cpu = data.ShardedBatches(table, split.train, 64, seed=3, device="cpu")
    gpu = data.ShardedBatches(table, split.train, 64, seed=3, device="cuda", prefetch=prefetch)
    store = device_tier(table, [split.train, split.val], "cuda", "resident").store
    assert store.x.is_cuda and store.x.element_size() == np.dtype(dtype).itemsize
    res = data.ShardedBatches(table, split.train, 64, seed=3, device="cuda", resident=store)
    # in the table's dtype (dtype=None: lesson 4 under mixed precision), streamed and resident
    raw = data.ShardedBatches(table, split.train, 64, seed=3, device="cuda", prefetch=prefetch, dtype=None)
    res_raw = data.ShardedBatches(table, split.train, 64, seed=3, device="cuda", resident=store, dtype=None)
    for source in (gpu, res, raw, res_raw):
        if group:
            _in_groups_of(source, group, 64)
        assert source.group_steps == (group or len(source))
    for epoch in (1, 2, 3):  # the ring's buffers are reused many times over
        ref = list(cpu.epoch(epoch))
        got = [(x.clone(), y.clone()) for x, y in gpu.epoch(epoch)]  # clones: later batches must not change them
        assert all(x.is_cuda and x.dtype == torch.float32 for x, _ in got)
        _same(ref, got)
        _same(ref, list(res.epoch(epoch)))
        for source in (raw, res_raw):
            kept = [(x.clone(), y.clone()) for x, y in source.epoch(epoch)]
            assert all(x.is_cuda and x.element_size() == np.dtype(dtype).itemsize for x, _ in kept)
            _same(ref, [(x.float(), y.float()) for x, y in kept])
    # a consumer that stops early leaves no reader thread behind
    it = gpu.epoch(4)
    next(it)
    it.close()


@cuda
def test_a_resident_plan_made_on_one_cuda_stream_serves_another(tmp_path):
    # the plan of several epochs is made on the stream of its first epoch and kept: an epoch read on another
    # stream must wait for it. Here the first stream is held up (a GPU sleep queued before the plan) and the
    # host does not wait for it, so that a second stream that did not wait would gather by positions not
    # yet written
    path, _ = _table(tmp_path, np.float16, rows=3001, cols=257)
    table = data.NpyTable(path)
    rows = np.arange(table.n_rows)
    cpu = data.ShardedBatches(table, rows, 64, seed=3, device="cpu", dtype=None)
    store = device_tier(table, [rows], "cuda", "resident").store
    res = data.ShardedBatches(table, rows, 64, seed=3, device="cuda", resident=store, dtype=None)
    list(res.epoch(0))  # the first plan (epochs 0 ..), and where the rows are held: made, and waited for
    planned = len(res._plan_kit["steps"])
    torch.cuda.synchronize()
    first, second = torch.cuda.Stream(), torch.cuda.Stream()
    with torch.cuda.stream(first):
        torch.cuda._sleep(1_000_000_000)  # about half a second of the GPU's clock
        it = res.epoch(planned)  # past the first plan: the next one is made, on this stream, behind the sleep
        next(it)
        it.close()
    assert torch.cuda.current_stream() != first and not first.query()  # (the host did not wait for it)
    with torch.cuda.stream(second):
        got = [(x.cpu(), y.cpu()) for x, y in res.epoch(planned + 1)]  # (.cpu() waits for this stream only)
    torch.cuda.synchronize()
    _same(list(cpu.epoch(planned + 1)), got)


@cuda
def test_the_gpu_paths_copies_wait_for_the_training_streams_work_on_their_memory(tmp_path):
    # a group's copy lands in memory of the training stream, which the caching allocator hands out again as soon
    # as the host lets it go, while work queued on that stream may still use it: the side stream must wait for
    # that work before it copies. Here the training stream falls further behind the host at every step (a GPU
    # sleep), behind the clones of the batches and writes into memory of a group's size, let go at once: a copy
    # that did not wait would be read by clones of earlier batches, or overwritten by the writes
    path, _ = _table(tmp_path, np.float16, rows=1024, cols=2050)
    table = data.NpyTable(path)
    rows = np.arange(table.n_rows)
    ref = list(data.ShardedBatches(table, rows, 64, seed=3, device="cpu", dtype=None).epoch(1))
    gpu = data.ShardedBatches(table, rows, 64, seed=3, device="cuda", prefetch=3, dtype=None)
    _in_groups_of(gpu, 4, 64)  # (a group of 1 MB: memory of the caching allocator's large blocks)
    values = gpu.group_steps * 64 * (table.n_inputs + 1)
    got = []
    for x, y in gpu.epoch(1):
        torch.cuda._sleep(50_000_000)  # about 25 ms of the GPU's clock
        got.append((x.clone(), y.clone()))
        torch.full((values,), 7.0, dtype=torch.float16, device="cuda")  # written late, let go at once
    assert not torch.cuda.current_stream().query()  # (the training stream is behind the host)
    _same(ref, [(x.cpu(), y.cpu()) for x, y in got])


@cuda
def test_gpu_auto_tier_holds_rows_that_fit_and_streams_those_that_do_not(tmp_path):
    path, _ = _table(tmp_path, np.float16)
    table = data.NpyTable(path)
    assert device_tier(table, [np.arange(777)], "cuda").name == "resident"
    assert device_tier(table, [np.arange(777)], "cuda", budget_gib=1e-6).name == "stream"


def test_a_ring_slot_holds_inputs_then_targets_in_one_block():
    from wideann.data.pinned_ring import PinnedRing

    ring = PinnedRing(3, 8, 5, torch.float16, pin=False)  # not page-locked: no GPU here
    assert [ring.acquire() for _ in range(4)] == [0, 1, 2, 0]  # in turn
    for n in (0, 1, 8):
        x, y = ring.views(1, n)
        assert x.shape == (n, 5) and y.shape == (n, 1) and x.is_contiguous() and y.is_contiguous()
        x.fill_(1)
        y.fill_(2)
        block = ring.block(1, n)
        assert block.numel() == n * 6 and (n == 0 or block.data_ptr() == ring.blocks[1].data_ptr())
        assert torch.equal(block, torch.cat([torch.ones(n * 5), torch.full((n,), 2.0)]).half())
    with pytest.raises(ValueError, match="at most 8 rows"):
        ring.views(0, 9)


class _LateCuda:
    """Stand-ins for the CUDA calls of the streamed GPU path, run on the CPU, whose copies happen as late
    as CUDA allows: a copy on the side stream is only queued, and runs when an event recorded after it is
    synchronized on the host, or waited for by the training stream (an event, or the side stream as a
    whole), whose work runs at once (or when the test reads the batches). So a pinned slot refilled before
    its copy has run gives wrong bytes here, as it could on a GPU, and so does work of the training stream
    on a copy it has not waited for."""

    def __init__(self, monkeypatch):
        import contextlib

        self.queued, self.ran, self.on_side = [], 0, False
        self.real_copy = torch.Tensor.copy_
        late = self

        def copy_(tensor, source, non_blocking=False):
            if not late.on_side:
                return late.real_copy(tensor, source, non_blocking)
            tensor.fill_(float("nan"))  # (what is there until the copy has run)
            late.queued.append((tensor, source))
            return tensor

        class Event:
            def record(self, stream):
                self.mark = len(late.queued)

            def synchronize(self):
                late.run(self.mark)

        class Stream:
            def __init__(self, side=False):
                self.side = side

            def wait_event(self, event):  # the host does not wait; the training stream's work after it does
                late.run(event.mark)

            def wait_stream(self, other):  # (the side stream waiting for the training stream: nothing to wait for)
                if other.side and not self.side:
                    late.run()

        @contextlib.contextmanager
        def on_side(stream):
            late.on_side = True
            try:
                yield
            finally:
                late.on_side = False

        monkeypatch.setattr(torch.Tensor, "copy_", copy_)
        self.training = Stream()
        monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: Stream(side=True))
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: late.training)
        monkeypatch.setattr(torch.cuda, "stream", on_side)
        monkeypatch.setattr(torch.cuda, "Event", Event)

    def run(self, upto=None):
        upto = len(self.queued) if upto is None else upto
        for out, source in self.queued[self.ran:upto]:
            self.real_copy(out, source)
        self.ran = max(self.ran, upto)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("prefetch, group", [(0, 1), (1, 1), (3, 1), (1, 3), (3, 4), (4, None)])
def test_the_gpu_path_never_refills_a_pinned_slot_before_its_copy_has_run(tmp_path, monkeypatch, dtype, prefetch,
                                                                          group):
    # group: steps per copy (None: the default, here the whole epoch of 33 steps in one group); 3 and 4 leave
    # a short last group, and a group of 4 with prefetch 3 holds more than prefetch steps (two groups are read ahead)
    path, _ = _table(tmp_path, dtype, rows=1501, cols=57)
    table = data.NpyTable(path)
    split = data.split_rows(table.n_rows, 0.2, 0.1, seed=1)
    cpu = data.ShardedBatches(table, split.train, 32, seed=3)
    # epochs 2 and 3 begin with the batches read on by the epoch before; (3, 7) and (5, 0) drop them
    refs = {(e, s): list(cpu.epoch(e, start_step=s)) for e, s in ((1, 0), (2, 0), (3, 0), (3, 7), (5, 0))}
    late = _LateCuda(monkeypatch)
    for out in ("float32", None):
        gpu = _gpu_path(table, split.train, 32, group, seed=3, prefetch=prefetch, dtype=out)
        assert gpu.group_steps == (group or len(gpu))
        for (e, s), ref in refs.items():
            got = list(gpu.epoch(e, start_step=s))  # all kept: later batches must not change earlier ones
            late.run()
            _same(ref, [(x.float(), y.float()) for x, y in got])
        it = gpu.epoch(3)  # stopped early, then the kept ring serves the next epoch
        next(it)
        it.close()
        got = list(gpu.epoch(1))
        late.run()
        _same(refs[1, 0], [(x.float(), y.float()) for x, y in got])
    assert late.ran > 0


def test_the_gpu_paths_ring_and_side_stream_follow_a_device_set_between_epochs(tmp_path, monkeypatch):
    # the side stream kept from one epoch to the next is a device's: a source moved to another device (after
    # an epoch that read on) makes a new one, and the batches read on for the old device are dropped
    path, _ = _table(tmp_path, np.float32, rows=300, cols=9)
    table = data.NpyTable(path)
    ref = list(data.ShardedBatches(table, np.arange(300), 16, seed=4, prefetch=0).epoch(1))
    late = _LateCuda(monkeypatch)
    gpu = _gpu_path(table, np.arange(300), 16, seed=4, prefetch=3)
    list(gpu.epoch(0))
    side = gpu._gpu_kit["side"]
    assert gpu._gpu_kit["carry"].epoch == 1  # read on, for the old device
    gpu.device = torch.device("cpu", 0)  # (another device, as torch compares them)
    got = list(gpu.epoch(1))
    late.run()
    assert gpu._gpu_kit["side"] is not side and all(x.device == torch.device("cpu") for x, _ in got)
    _same(ref, got)


def test_the_gpu_path_reads_each_group_of_steps_with_one_call(tmp_path, monkeypatch):
    # on a GPU a step is bound by the host: a group's steps are submitted to the reader together (one call and
    # one wait a group, not a step), and still give each step's rows
    from wideann.data.native_reader import ReadAhead

    path, _ = _table(tmp_path, np.float32, rows=300, cols=9)
    table = data.NpyTable(path)
    ref = list(data.ShardedBatches(table, np.arange(300), 16, shuffle=False, prefetch=0).epoch(0))
    calls = []
    submit = ReadAhead.submit

    def counted(self, rows, x, y, batches=()):
        calls.append(list(batches))
        return submit(self, rows, x, y, batches)

    monkeypatch.setattr(ReadAhead, "submit", counted)
    late = _LateCuda(monkeypatch)
    gpu = _gpu_path(table, np.arange(300), 16, 4, shuffle=False, prefetch=3)
    got = list(gpu.epoch(0))
    late.run()
    _same(ref, got)
    assert calls == [[16] * 4] * 4 + [[16, 16, 12]]  # 19 steps: 300 rows, the last step short


def test_a_conversion_that_fails_on_the_gpu_path_leaves_no_transfer_unwaited_for(tmp_path, monkeypatch):
    # a group's conversion on the device fails (out of memory, say) while the next group's transfer is queued:
    # the iterator's end must wait for that transfer, or the next epoch could refill its slot under it, and
    # the memory it lands in would be free for other work while it still runs
    path, _ = _table(tmp_path, np.float16, rows=300, cols=9)
    table = data.NpyTable(path)
    late = _LateCuda(monkeypatch)
    real_to = torch.Tensor.to
    conversions = 0

    def to(tensor, *args, **kwargs):
        nonlocal conversions
        if torch.float32 in args and tensor.dtype == torch.float16 and tensor.dim() == 2:  # (a group's inputs)
            conversions += 1
            if conversions == 3:
                raise RuntimeError("CUDA out of memory (stood in)")
        return real_to(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)
    gpu = _gpu_path(table, np.arange(300), 16, 2, seed=4, prefetch=3)  # float32 out
    with pytest.raises(RuntimeError, match="out of memory"):
        list(gpu.epoch(0))
    assert conversions == 3 and late.queued
    # the iterator's end waited for every slot's last transfer, that of the group after the failed one included
    assert late.ran == len(late.queued)
    assert all(event is None for event in gpu._gpu_kit["ring"]._events)


def test_a_gpu_epoch_stopped_leaves_no_copy_unwaited_for_whatever_fails_after(tmp_path, monkeypatch):
    # a group copied but not handed out is let go when the iterator stops, and its memory, the training
    # stream's, is free for that stream's next work at once: the training stream must wait for the copy
    # first, even when the cleanup fails (a second Ctrl-C as the reader is closed)
    from wideann.data.native_reader import ReadAhead

    path, _ = _table(tmp_path, np.float16, rows=300, cols=9)
    table = data.NpyTable(path)
    late = _LateCuda(monkeypatch)
    close, interrupts = ReadAhead.close, [KeyboardInterrupt("a second Ctrl-C (stood in)")]

    def interrupted(self):
        close(self)
        if interrupts:
            raise interrupts.pop()

    gpu = _gpu_path(table, np.arange(300), 16, 2, seed=4, prefetch=3)
    it = gpu.epoch(0)
    next(it)  # the first group handed out; the second copied (queued), not handed out
    assert late.ran < len(late.queued)
    monkeypatch.setattr(ReadAhead, "close", interrupted)
    with pytest.raises(KeyboardInterrupt):
        it.close()
    assert late.ran == len(late.queued)


def test_a_slot_is_released_also_when_the_record_of_its_copys_event_raises(tmp_path, monkeypatch):
    # a Ctrl-C landing as done.record returns (the event recorded) skipped ring.release: the slot kept no
    # event, so neither the epoch's cleanup (ring.drain) nor the slot's next acquire waited on the host for the
    # copy that reads it, which may still run while the slot is refilled or the ring freed
    path, _ = _table(tmp_path, np.float16, rows=300, cols=9)
    table = data.NpyTable(path)
    _LateCuda(monkeypatch)
    recorded, waited = [], []

    class Event(torch.cuda.Event):  # (the stand-in's, with the second record interrupted as it returns)
        def record(self, stream):
            super().record(stream)
            recorded.append(self)
            if len(recorded) == 2:
                raise KeyboardInterrupt("a Ctrl-C as the event is recorded (stood in)")

        def synchronize(self):
            waited.append(self)
            super().synchronize()

    monkeypatch.setattr(torch.cuda, "Event", Event)
    gpu = _gpu_path(table, np.arange(300), 16, 2, seed=4, prefetch=3)
    with pytest.raises(KeyboardInterrupt):
        list(gpu.epoch(0))
    assert len(recorded) == 2 and recorded[1] in waited, "the interrupted copy's slot was never waited for"
    assert all(event is None for event in gpu._gpu_kit["ring"]._events)


def test_a_gpu_epoch_refuses_a_cuda_stream_changed_in_its_middle(tmp_path, monkeypatch):
    # an epoch's groups are copied into memory of the stream it began on, which the copies wait for: asked for
    # on another stream, a later group would take memory the first stream's work did not release to it
    path, _ = _table(tmp_path, np.float16, rows=300, cols=9)
    table = data.NpyTable(path)
    ref = list(data.ShardedBatches(table, np.arange(300), 16, seed=4, prefetch=0).epoch(1))
    late = _LateCuda(monkeypatch)
    gpu = _gpu_path(table, np.arange(300), 16, 2, seed=4, prefetch=3)
    it = gpu.epoch(0)
    next(it), next(it)  # the first group's steps
    other = type(late.training)()
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: other)
    with pytest.raises(RuntimeError, match="stream changed in the middle of an epoch"):
        next(it)
    assert late.ran == len(late.queued)  # (the first stream waited for every copy)
    got = list(gpu.epoch(1))  # the next epoch, on the other stream from its start
    late.run()
    _same(ref, [(x.float(), y.float()) for x, y in got])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("group", [1, 2, None])
def test_kept_targets_of_the_gpu_path_do_not_keep_their_inputs(tmp_path, monkeypatch, dtype, group):
    # an evaluation keeps every batch's y (lesson 4's predict): a y that were a view of its group's copied
    # block (inputs and targets) would keep the whole block on the GPU, 12,849 times its own size
    path, _ = _table(tmp_path, dtype, rows=300, cols=57)
    table = data.NpyTable(path)
    late = _LateCuda(monkeypatch)
    for out in ("float32", None):
        gpu = _gpu_path(table, np.arange(300), 64, group, shuffle=False, dtype=out)
        got = list(gpu.epoch(0))
        late.run()
        ys = [y for _, y in got]
        assert all(y.dtype == torch.float32 for y in ys)  # targets in float32, also beside float16 inputs
        for y in ys:  # the targets of its group only (a group is at most the epoch's 300 rows)
            assert y.untyped_storage().nbytes() <= min(300, 64 * (group or 5)) * y.element_size()
        expected = torch.from_numpy(np.load(path)[:, -1:]).to(ys[0].dtype)
        assert torch.equal(torch.cat(ys), expected)


@pytest.mark.parametrize("group", [3, None])
def test_the_gpu_path_reads_on_only_once_an_epochs_last_step_is_handed_out(tmp_path, monkeypatch, group):
    # lessons 3-4 ask for an epoch's steps with itertools.islice, which never asks past the last one; a consumer
    # that stops inside the last group must not leave a thread reading the next epoch into the pinned ring
    import itertools

    path, _ = _table(tmp_path, np.float32, rows=1501, cols=57)
    table = data.NpyTable(path)
    split = data.split_rows(table.n_rows, 0.2, 0.1, seed=1)
    cpu = data.ShardedBatches(table, split.train, 32, seed=3, prefetch=0)
    refs = {e: list(cpu.epoch(e)) for e in (1, 2, 4)}
    torch.ones(1 << 20).add_(1)  # (torch's worker threads, started by its first parallel operation: before the count)
    before = threads()  # (with the reader's pool, made by the reads above)
    late = _LateCuda(monkeypatch)
    gpu = _gpu_path(table, split.train, 32, group, seed=3, prefetch=3)
    n = len(gpu)
    got = list(itertools.islice(gpu.epoch(1), n))
    late.run()
    _same(refs[1], got)
    assert gpu._gpu_kit["carry"].epoch == 2  # read on
    # its first two groups (the GPU path copies a group ahead of its steps, so it asks for two before the first
    # step: with one read on (prefetch 3 is one group of 3 steps), the second was read while the GPU waited)
    assert len(gpu._gpu_kit["carry"].pending) == min(2, -(-n // (group or n)))
    got = list(gpu.epoch(2, read_on=False))  # (the last epoch of a run: begins with the groups read on, reads none on)
    late.run()
    _same(refs[2], got)
    assert "carry" not in gpu._gpu_kit and threads(before) == before
    got = list(gpu.epoch(2))
    late.run()
    _same(refs[2], got)
    it = gpu.epoch(3)
    assert len(list(itertools.islice(it, n - 1))) == n - 1
    it.close()
    assert "carry" not in gpu._gpu_kit and threads(before) == before
    # groups shrunk after an epoch read on: the ring is kept with the groups read on, the rest of the epoch
    # planned anew in the smaller groups
    if group:
        list(itertools.islice(gpu.epoch(1), n))
        assert gpu._gpu_kit["carry"].rest.size == group
        _in_groups_of(gpu, 1, 32)
        got = list(gpu.epoch(2))
        late.run()
        _same(refs[2], got)
        _in_groups_of(gpu, group, 32)
    # groups grown after an epoch (the whole epoch): a ring of larger slots; then groups of one step and more
    # read ahead: a ring of more slots (the kept one would refill slots whose groups are not yet copied)
    for steps, prefetch in ((n, 3), (1, 3), (1, 8)):
        _in_groups_of(gpu, steps, 32)
        gpu.prefetch = prefetch
        got = list(gpu.epoch(4))
        late.run()
        _same(refs[4], got)
