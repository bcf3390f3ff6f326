"""Lesson 4's data path against the GPU's own speed, on a table of the reference width (issue 6).

The model is lesson 4's `MLP` 12,848 -> 1024 -> 256 -> 1 (imported from the script), trained with lesson 4's
step: bf16 autocast, summed squared error over the nominal batch, Adam, the loss added up on the device and
read on the host every 10 steps (lesson 4 with a tracker at its default `--log-every`; without one it is read
at the end of the epoch and when the progress bar is redrawn). The script writes its own random tables
of 12,849 columns (`--rows`, float32 and float16; reused when present) into `benchmarks/work/` and reads
each once so that the page cache is warm.

With a CUDA GPU, for batch 256, 1024 and 4096 and both dtypes, samples/s of:

  (a) ceiling   -- a batch already on the GPU, the same tensor every step, the inputs in the table's dtype
                   (as lesson 4 delivers batches under mixed precision: autocast converts them for the first
                   layer), the targets in float32, cut to the sizes of an epoch's steps in turn, the short last
                   one included, as the paths give them (`epoch_batches`; since 2026-11-28); and (a') four such
                   batches in turn (for its ratio to (a): one batch of float16 at 1024 rows fits in an H100's
                   L2 cache);
  (b) reader    -- the native reader alone: the rows of lesson 4's batch plan read into one reused pinned
                   buffer (no copy, no model), also in GB/s of table bytes;
  (c) streamed  -- `ShardedBatches(device="cuda", dtype=None)`: the native read-ahead thread -> pinned
                   ring -> one side-stream copy per group of steps (about 64 MiB) -> the steps;
  (d) resident  -- the rows held on the GPU in the table's dtype (`device_tier(..., "resident")`), one
                   gather by index per group of steps (about 256 MiB) -> the steps;
  (e) resident as lesson 4 had it before: each batch also converted to float32 on the device;

and, for float16 at batch 1024 and 4096, (c) with every epoch begun cold (as before the sources read on
into the next epoch: the table has only 20 and 5 steps an epoch there) and (d) with the rows gathered as
float16 values rather than as 8-byte words (as before commit 347f836) and (c) with 4 reading threads rather
than the default (8 on 16 cores); each with its ratio to (a), and
with the training thread's time per step split in two: waiting for the next batch (the data path's own
host cost) and in the step (dispatch, and the wait for the GPU when the loss is read), and the peak GPU
memory each path takes above the model and the resident rows (and the host's peak RSS, once).
Targets (issue 6): float16 streamed >= 90% of (a) at 256 and >= 75% at 1024; resident >= 95% at 256 and
1024, >= 90% at 4096. Sized for under 4 minutes on one GPU (54 figures of --seconds each, 12 of them (c)
and (d) alternated with (a), and 6 more of the ceiling of --seconds / --gpu-rounds, plus 5 warm-up batches per
round, the tables made once). The paths are measured in turn,
--gpu-rounds times (8), --seconds split between the rounds, then the ceiling once more: medians, and each
ratio the median of a path's rates over the ceiling measured around them (interpolated in time), so that a
change of the host's or the GPU's speed during the run does not favour one path. `--profile FOLDER` adds
torch.profiler tables and traces of (a), (c) and (d) at float16, batch 1024 (`--profile-batches` for others).
(c)/(a) and (d)/(a) also measured in alternation, blocks of 20 steps of each in turn (`alternated`,
`--alternated-seconds`): the host's speed drifts by tens of percent within a second on a shared GPU
machine, so that a ratio of the rounds above can be off by 10-20% on its own; blocks side by side see the
same host; each whole ratio comes with its 95% interval (a bootstrap over runs of 4 pairs), which says
whether a target is met. `--streamed-variants` measures only (c), as it is and with other settings (reading
threads, group size, the training thread on a core apart), each alternated with (a).
Beside each figure, the resident tier's gather of one group alone, in GB/s by the GPU's clock: as elements of
the table's dtype and as rows of wider words (how `ResidentRows.gather` does it).

Without a GPU, the reader alone on the same tables, batch 256, 1024 and 4096: today's reader (the batch
source at commit fc86d48: Python `preadv` per run into a fresh float32 buffer, a second copy to split x
and y, on the read-ahead thread) against the new one (`ShardedBatches` with the native reader, 1 thread
and all threads; and with all threads but every epoch begun cold, as before the sources read on into the
next epoch), and the native reader alone into one reused buffer. Best of `--rounds`; before every
round the script waits for the machine to be idle and it reports the others' load during the round;
then, at the largest batch, the peak RSS each reader adds to a fresh process. Target: >= 1.5x today's
reader on a 2-core machine (>= 3x and >= 15 GB/s with 16 cores). Then what reading ahead costs the
training thread: a host-bound stand-in step (`--step-ms`, 2.7 ms as lesson 4's
step on the H100) alone, beside the Python read-ahead thread of commit 75a64c2, and beside the native
ReadAhead, in steps/s.

    python benchmarks/gpu_data_path.py                      # GPU half on a GPU machine, else CPU half
    python benchmarks/gpu_data_path.py --rows 20000 --seconds 2 --json benchmarks/work/gpu_data_path.json
"""
import argparse
import copy
import itertools
import json
import os
import queue
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lessons_common import REFERENCE_COLUMNS, WORK, load_lesson, machine, write_random_table  # noqa: E402

BATCHES = (256, 1024, 4096)
DTYPES = ("float32", "float16")


def warm(path):
    """Read the file once: the page cache holds it for the timed runs."""
    with open(path, "rb", buffering=0) as f:
        while f.read(64 << 20):
            pass


def make_tables(rows, dtypes=DTYPES):
    """The random tables of ``rows`` x 12,849 (one per dtype), made once and read once (page cache warm)."""
    tables = {}
    for dt in dtypes:
        p = WORK / f"gpu_data_path_{rows}x{REFERENCE_COLUMNS}_{dt}.npy"
        t0 = time.perf_counter()
        write_random_table(p, rows, dtype=dt)
        warm(p)
        print(f"table {p.name}: {p.stat().st_size / 1e9:.2f} GB, ready in {time.perf_counter() - t0:.0f} s", flush=True)
        tables[dt] = p
    return tables


def endless(source, cold=False):
    """Batches of epoch after epoch (a small table has few steps per epoch at batch 4096). ``cold``: every
    epoch begins cold, none reading on into the next (``read_on=False``; the batch sources did not read on
    before 2026-11-27), to show what reading on is worth. (Until 2026-11-28 a cold epoch read on, and the
    batches read on were dropped: one read more an epoch, on the reader's thread.)"""
    epoch = 0
    while True:
        yield from source.epoch(epoch, read_on=not cold)
        epoch += 1


def epoch_batches(batches, rows, batch):
    """The ceiling's batches: ``batches`` (full batches on the GPU) in turn, cut to the sizes of an epoch's
    steps of ``rows`` rows in turn (``batch`` rows each, the last step short where ``batch`` does not divide
    ``rows``), as the paths give them. A step on the GPU takes about as long whatever its rows (it is bound
    by the host), so a ceiling of full batches only counted the epoch's short step against the paths, whose
    samples a second it lowers: by 1.1% at batch 256 and 2.3% at 1024 and 4096 of this benchmark's 20,000
    rows (every figure until 2026-11-28 was measured so)."""
    sizes = [min(batch, rows - a) for a in range(0, rows, batch)]
    return itertools.cycle([(x[:n], y[:n]) for (x, y), n in zip(itertools.cycle(batches), sizes)])


def trainer(lesson4, device, batch):
    """Lesson 4's training step (``step(x, y)``) on a fresh model of the reference width on ``device``: bf16
    autocast, the summed squared error over the nominal ``batch``, Adam, the loss added up on the device and
    read on the host every 10 steps (lesson 4 with a tracker at its default ``--log-every``)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = lesson4.MLP(REFERENCE_COLUMNS - 1, [1024, 256]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = nn.MSELoss(reduction="sum")
    total, steps = [0.0], [0]

    def step(x, y):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_fn(model(x), y) / batch
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        # as lesson 4: the loss added up on the device, read on the host every --log-every (10) steps only
        total[0] = total[0] + loss.detach()
        steps[0] += 1
        if steps[0] % 10 == 0:
            loss.item()
    return step


# ---- the GPU half ------------------------------------------------------------------------------------
def gpu_half(args, tables, partial=lambda got: None):
    """The GPU half; ``partial(report)`` is given the report so far after every batch size (the device
    lease is short: a run cut off by its time limit keeps the figures it has)."""
    import torch

    from wideann import data
    from wideann.data.resident import torch_dtype

    lesson4 = load_lesson("4_multi_gpu_ann.py")
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True

    def timed(batches, step=None, seconds=1.0, warmup=5):
        """``(samples/s, fetch ms, step ms, GiB)`` over ``seconds`` after `warmup` batches (step None: the batches
        alone), with where the training thread's time went, in ms per step: waiting for the next batch (the
        data path's own host cost) and in the step (its dispatch, and any wait for the GPU at the
        every-10-steps loss read). On a host-bound step, a path that only adds to the first is slowed by its
        host cost; one that adds to the second keeps the GPU busier than the ceiling does. GiB: the peak of
        the GPU memory allocated during the timed steps, above what was held before them (the model, its
        optimizer state, and the resident rows, which are reported once)."""
        it = iter(batches)
        for _ in range(warmup):
            x, y = next(it)
            if step:
                step(x, y)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        held = torch.cuda.memory_allocated()
        clock = time.perf_counter
        t0, n, steps, fetch, stepping = clock(), 0, 0, 0.0, 0.0
        while clock() - t0 < seconds:
            a = clock()
            x, y = next(it)
            b = clock()
            if step:
                step(x, y)
            fetch, stepping, n, steps = fetch + b - a, stepping + clock() - b, n + len(x), steps + 1
        torch.cuda.synchronize()
        t1 = clock()
        rate = n / (t1 - t0)
        more = (torch.cuda.max_memory_allocated() - held) / 2**30
        if hasattr(it, "close"):
            it.close()  # stops a read-ahead thread now, not when the generator is collected
        return rate, 1e3 * fetch / steps, 1e3 * stepping / steps, more, (t0 + t1) / 2

    def measured(paths):
        """Every path of ``paths`` (name -> (a function making its batches, with the step or not)), the
        first being the ceiling, measured in turn, --gpu-rounds times, --seconds split between the rounds,
        and the ceiling once more at the end. The host sets the pace of these steps (see `timed`), and the
        host's speed drifts by tens of percent within seconds on a shared machine: so each figure is set
        against the ceiling measured around it (interpolated in time between the ceiling before and after
        its round). Per path: the median rate (and the rate and time of every round, and the ceiling's last
        figure, from which the ratios can be computed again), the median of its ratios to the ceiling (paths
        with a step only: the reader alone has none), the median ms, and the largest GPU peak."""
        runs = {name: [] for name in paths}
        per = args.seconds / args.gpu_rounds
        for _ in range(args.gpu_rounds):
            for name, (batches, with_step) in paths.items():
                runs[name].append(timed(batches(), step if with_step else None, per))
        ceiling_path = paths["ceiling"]
        after = timed(ceiling_path[0](), step, per)
        marks = [g[4] for g in runs["ceiling"]] + [after[4]]
        rates = [g[0] for g in runs["ceiling"]] + [after[0]]
        r = {"ceiling_after": after[0], "ceiling_after_time": after[4]}
        for name, got in runs.items():
            rs = [g[0] for g in got]
            r[name], r[f"{name}_rounds"] = float(np.median(rs)), rs
            r[f"{name}_times"] = [g[4] for g in got]  # (seconds of the run's clock, the middle of each figure)
            r[f"{name}_fetch_ms"] = float(np.median([g[1] for g in got]))
            r[f"{name}_step_ms"] = float(np.median([g[2] for g in got]))
            r[f"{name}_gpu_peak_gib"] = max(g[3] for g in got)
            if name != "ceiling" and paths[name][1]:
                r[f"{name}_ratio"] = float(np.median([g[0] / float(np.interp(g[4], marks, rates)) for g in got]))
        return r

    def warm_steps(source):
        """Untimed steps before each block of a streamed source in `alternated`: the groups it reads ahead and
        the one copied ahead of its steps, in steps, and one."""
        return (source._ahead_groups + 1) * source.group_steps + 1

    def alternated(ceiling, path, seconds, block=20, warm=0):
        """``path``'s rate over ``ceiling``'s (functions making their batches), measured in alternation:
        ``block`` steps of one, then of the other, the order swapped every pair (ABBA), the GPU drained at
        the end of each block (both pay it alike). The host's speed drifts by tens of percent within a
        second on a shared machine (one path's figures in `measured` differ so from round to round, 0.25 s
        each); blocks of about 40 ms side by side see the same host. ``warm``: steps of ``path`` run untimed
        before each of its blocks, for a path with a reading thread: while the ceiling's block ran, it
        filled its ring, a head start that its first steps use up (its read-ahead in steps, and one).
        A dict: ``ratio`` (all of the path's rows over its time, against the ceiling's), ``quartiles`` of the
        pairs' ratios (a pair is two blocks of about 40-60 ms: they spread with the host's jitter),
        ``interval`` (the 95% interval of the whole ratio: a bootstrap over runs of 4 pairs, which keeps
        a drift across neighbouring pairs in), ``pairs``, and ``ms``: ``[fetch ms, step ms]`` of the
        ceiling's timed steps and of the path's."""
        its, warm = [iter(ceiling()), iter(path())], (0, warm)
        for it in its:
            for _ in range(5):
                step(*next(it))
        torch.cuda.synchronize()
        rows, spent, pairs, clock = [0, 0], [0.0, 0.0], [], time.perf_counter
        fetch, stepping, steps = [0.0, 0.0], [0.0, 0.0], [0, 0]
        end = clock() + seconds
        while clock() < end:
            rate, done = [0.0, 0.0], [0, 0.0, 0, 0.0]  # this pair's (rows, seconds) of the ceiling, of the path
            for i in ((0, 1) if len(pairs) % 2 == 0 else (1, 0)):
                for _ in range(warm[i]):
                    step(*next(its[i]))
                torch.cuda.synchronize()
                t0, n = clock(), 0
                for _ in range(block):
                    a = clock()
                    x, y = next(its[i])
                    b = clock()
                    step(x, y)
                    n += len(x)
                    fetch[i], stepping[i], steps[i] = fetch[i] + b - a, stepping[i] + clock() - b, steps[i] + 1
                torch.cuda.synchronize()
                dt = clock() - t0
                rows[i], spent[i], rate[i] = rows[i] + n, spent[i] + dt, n / dt
                done[2 * i:2 * i + 2] = n, dt
            pairs.append((rate[1] / rate[0], *done))
        for it in its:
            if hasattr(it, "close"):
                it.close()
        got = np.array(pairs)
        runs = max(1, len(got) // 4)
        rng = np.random.default_rng(0)
        picks = rng.integers(0, runs, size=(1000, runs))[:, :, None] * 4 + np.arange(4)
        sums = got[picks.reshape(1000, -1) % len(got)][:, :, 1:].sum(axis=1)  # (rows, s) of each resample
        whole = (sums[:, 2] / sums[:, 3]) / (sums[:, 0] / sums[:, 1])
        return {"ratio": (rows[1] / spent[1]) / (rows[0] / spent[0]),
                "quartiles": [float(q) for q in np.percentile(got[:, 0], [25, 75])],
                "interval": [float(q) for q in np.percentile(whole, [2.5, 97.5])], "pairs": len(got),
                "ms": [[1e3 * fetch[i] / steps[i], 1e3 * stepping[i] / steps[i]] for i in (0, 1)]}

    def variants(dt, batch):
        """--streamed-variants: (c) as it is and with other settings, each alternated with the ceiling for
        --alternated-seconds, with the training thread's ms a step (waiting for the batch / in the step) of
        both: what the reading threads, the group size and the training thread's core are worth."""
        nonlocal step  # (the one `alternated` trains with)
        step = trainer(lesson4, device, batch)
        x = torch.rand((batch, REFERENCE_COLUMNS - 1), device=device).to(
            torch.float16 if dt == "float16" else torch.float32)
        y = torch.rand((batch, 1), device=device)
        rows = np.arange(args.rows)

        def source(**kw):  # a table object of its own: the reader (and its thread count) is the table's
            group = kw.pop("group_bytes", None)
            s = data.ShardedBatches(data.NpyTable(tables[dt]), rows, batch, seed=0, device=device, dtype=None, **kw)
            if group:
                s.group_bytes = group
            return s

        def apart(s):
            """The training thread alone on one core (and that core's other hardware thread left idle); the
            reading threads, made while the training thread may use the other cores only, on those."""
            def batches():
                cores = sorted(os.sched_getaffinity(0))
                mine = cores[-1]
                sib = Path(f"/sys/devices/system/cpu/cpu{mine}/topology/thread_siblings_list")
                kin = {mine}
                if sib.exists():
                    for part in sib.read_text().strip().split(","):
                        lo, _, hi = part.partition("-")
                        kin |= set(range(int(lo), int(hi or lo) + 1))
                os.sched_setaffinity(0, set(cores) - kin)
                it = endless(s)
                try:
                    first = next(it)  # the reader's pool and the read-ahead thread are made here
                    os.sched_setaffinity(0, {mine})
                    yield first
                    yield from it
                finally:
                    it.close()
                    os.sched_setaffinity(0, cores)
            return batches

        cores = len(os.sched_getaffinity(0))
        made = {"default": source(), "4 threads": source(reader_threads=4), "2 threads": source(reader_threads=2),
                "groups of 256 MiB": source(group_bytes=256 << 20),
                "training thread on a core apart": source(reader_threads=data.native_reader.default_threads())}
        out = {}
        for name, s in made.items():
            make = apart(s) if name == "training thread on a core apart" else (lambda s=s: endless(s))
            a = alternated(lambda: epoch_batches([(x, y)], args.rows, batch), make,
                           args.alternated_seconds or args.seconds, warm=warm_steps(s))
            ratio, q, ms = a["ratio"], a["quartiles"], a["ms"]
            out[name] = {"ratio": ratio, "quartiles": q, "interval": a["interval"], "pairs": a["pairs"],
                         "ceiling_ms": ms[0], "ms": ms[1], "group_steps": s.group_steps,
                         "threads": s.table.reader_threads or data.native_reader.default_threads()}
            print(f"{dt} batch {batch}, (c) {name} ({out[name]['threads']} threads, {s.group_steps} steps a group): "
                  f"{ratio:.0%} ({q[0]:.0%}-{q[1]:.0%}) [{a['interval'][0]:.1%}-{a['interval'][1]:.1%}]; ms a step, "
                  f"waiting / in the step: {ms[1][0]:.2f} / {ms[1][1]:.2f}, "
                  f"the ceiling's {ms[0][0]:.2f} / {ms[0][1]:.2f}", flush=True)
            del s
        made.clear()
        return {"dtype": dt, "batch": batch, "cores": cores, "variants": out}

    if args.streamed_variants:
        sib = Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list")
        print(f"cpu0's hardware threads: {sib.read_text().strip() if sib.exists() else '?'}", flush=True)
        found = []
        for dt in args.dtypes:
            for batch in args.batches:
                found.append(variants(dt, batch))
                partial({"gpu": torch.cuda.get_device_name(0), "variants": found, "complete": False})
        return {"gpu": torch.cuda.get_device_name(0), "variants": found, "complete": True}

    results = []
    for dt in args.dtypes:
        table = data.NpyTable(tables[dt])
        rows = np.arange(table.n_rows)
        t0 = time.perf_counter()
        tier = data.device_tier(table, [rows], device, "resident")
        load_s = time.perf_counter() - t0
        print(f"{dt}: {tier.reason} ({load_s:.1f} s)", flush=True)
        for batch in args.batches:
            step = trainer(lesson4, device, batch)
            # as lesson 4 delivers batches under mixed precision: inputs in the table's dtype
            x = torch.rand((batch, table.n_inputs), device=device).to(torch_dtype(table.dtype))
            y = torch.rand((batch, 1), device=device)  # targets in float32, as the batch sources give them

            # (b) the reader alone: the plan's rows into one reused pinned buffer
            plan = data.ShardedBatches(table, rows, batch, seed=0)
            hx = torch.empty((batch, table.n_inputs), dtype=torch_dtype(table.dtype), pin_memory=True)
            hy = torch.empty((batch, 1), dtype=torch_dtype(table.dtype), pin_memory=True)

            def read_only(plan=plan, hx=hx, hy=hy):
                epoch = 0
                while True:
                    order = plan.epoch_order(epoch)
                    for s in range(len(plan)):
                        idx = plan.step_rows(order, s)
                        table.read_index(idx, (hx[:idx.size].numpy(), hy[:idx.size].numpy()))
                        yield hx[:idx.size], hy[:idx.size]
                    epoch += 1

            streamed = data.ShardedBatches(table, rows, batch, seed=0, device=device, prefetch=4, dtype=None)
            resident = data.ShardedBatches(table, rows, batch, seed=0, device=device, resident=tier.store, dtype=None)
            # (e) as lesson 4 delivered batches until commit 7d97d0f: converted to float32 on the device
            resident32 = data.ShardedBatches(table, rows, batch, seed=0, device=device, resident=tier.store)
            # (a') four batches on the GPU in turn: a batch of 26 MB (float16, 1024) fits in an H100's 50 MB L2
            # cache, so the ceiling's first layer may read its one batch from the cache, which no path can
            rotating = [(torch.rand_like(x, dtype=torch.float32).to(x.dtype), torch.rand_like(y)) for _ in range(4)]
            paths = {"ceiling": (lambda x=x, y=y: epoch_batches([(x, y)], table.n_rows, batch), True),
                     "ceiling_rotating": (lambda b=rotating: epoch_batches(b, table.n_rows, batch), True),
                     "reader": (read_only, False),
                     "streamed": (lambda s=streamed: endless(s), True),
                     "resident": (lambda s=resident: endless(s), True),
                     "resident_f32": (lambda s=resident32: endless(s), True)}
            if dt == "float16" and batch >= 1024:  # (c) with every epoch begun cold: what reading on is worth
                paths["streamed_cold"] = (lambda s=streamed: endless(s, cold=True), True)
                # (d) gathering float16 values one by one, as before commit 347f836: what gathering words is worth
                paths["resident_elements"] = (lambda s=data.ShardedBatches(
                    table, rows, batch, seed=0, device=device, resident=gathering_elements(tier.store), dtype=None):
                    endless(s), True)
                # (c) with 4 reading threads rather than the default (8 with 16 cores): (c)'s step itself ran about
                # 0.3 ms longer than the ceiling's in every run of 2026-11-27 at 1024; the reading threads' memory
                # traffic beside the training thread? (A table object of its own: the thread count is the table's.)
                paths["streamed_4_threads"] = (lambda s=data.ShardedBatches(
                    data.NpyTable(tables[dt]), rows, batch, seed=0, device=device, dtype=None, reader_threads=4):
                    endless(s), True)
            r = {"dtype": dt, "batch": batch, "resident_load_s": load_s, "resident_gib": tier.store.nbytes / 2**30,
                 **measured(paths), **gather_rates(tier.store, batch * resident.group_steps)}
            r["reader_gb_s"] = r["reader"] * table.row_bytes / 1e9
            ahead = warm_steps(streamed)
            for name, warm in (("resident", 0), ("streamed", ahead)):
                a = alternated(paths["ceiling"][0], paths[name][0], args.alternated_seconds or args.seconds, warm=warm)
                for k in ("ratio", "quartiles", "interval", "pairs", "ms"):
                    r[f"{name}_alternated_{k}"] = a[k]
            r["streamed_alternated_warm_steps"] = ahead
            if args.profile and batch in args.profile_batches and dt == "float16":
                try:  # (a profiler that cannot start on this machine costs its tables, not the figures)
                    profile(args.profile, {k: paths[k][0]() for k in ("ceiling", "streamed", "resident")}, step,
                            suffix="" if batch == 1024 else f"_{batch}")
                except Exception as e:  # noqa: BLE001
                    print(f"profile: failed ({type(e).__name__}: {e})", flush=True)
            print(f"{dt} batch {batch}: ceiling {r['ceiling']:,.0f}  reader {r['reader']:,.0f} "
                  f"({r['reader_gb_s']:.1f} GB/s)  streamed {r['streamed']:,.0f} ({r['streamed_ratio']:.0%})  "
                  f"resident {r['resident']:,.0f} ({r['resident_ratio']:.0%}) samples/s; alternated with the "
                  f"ceiling: streamed {r['streamed_alternated_ratio']:.0%}, "
                  f"resident {r['resident_alternated_ratio']:.0%}",
                  flush=True)
            results.append(r)
            partial({"gpu": torch.cuda.get_device_name(0), "results": results, "complete": False})
            del streamed, resident, resident32, paths, rotating
        del tier
        torch.cuda.empty_cache()
    return {"gpu": torch.cuda.get_device_name(0), "results": results, "complete": True}


def gathering_elements(store):
    """``store`` (a ``ResidentRows``) gathering its rows as values of the table's dtype, one by one, as before
    commit 347f836 (the same rows: a shallow copy)."""
    elements = copy.copy(store)
    elements._x_words = elements.x
    return elements


def gather_rates(store, n, repeats=20):
    """The resident tier's gather of a group of ``n`` rows (sorted random positions), in GB/s of bytes read and
    written, by the GPU's clock: the inputs gathered as elements of the table's dtype (``index_select`` of
    ``store.x``) and as the tier gathers them, rows of wider words (``ResidentRows.gather``, with the targets)."""
    import torch

    n = min(n, store.x.shape[0])
    p = torch.sort(torch.randperm(store.x.shape[0], device=store.device)[:n]).values
    moved = 2 * n * (store.x.shape[1] + 1) * store.x.element_size()
    got = {}
    for name, gather in (("elements", lambda: (store.x.index_select(0, p), store.y.index_select(0, p))),
                         ("words", lambda: store.gather(p))):
        gather()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            gather()
        end.record()
        end.synchronize()
        got[f"gather_{name}_gb_s"] = moved * repeats / (start.elapsed_time(end) / 1e3) / 1e9
    return {"gather_rows": n, **got}


def profile(folder, paths, step, steps=40, suffix=""):
    """torch.profiler over ``steps`` steps of each path: a table of the host and GPU time per operation
    (``{folder}/{name}{suffix}.txt``) and a Chrome trace (``.json``), to see where a path loses."""
    import torch
    from torch.profiler import ProfilerActivity

    Path(folder).mkdir(parents=True, exist_ok=True)
    for name, batches in paths.items():
        it = iter(batches)
        for _ in range(5):
            step(*next(it))
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(steps):
                step(*next(it))
            torch.cuda.synchronize()
        if hasattr(it, "close"):
            it.close()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)
        table += "\n\n" + prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25)
        Path(folder, f"{name}{suffix}.txt").write_text(table)
        prof.export_chrome_trace(str(Path(folder, f"{name}{suffix}.json")))
        print(f"profile of {name}: {folder}/{name}{suffix}.txt", flush=True)


def gpu_markdown(report):
    lines = [f"GPU: {report['gpu']}; {report['machine']}; table {report['rows']:,} x {REFERENCE_COLUMNS:,}; "
             f"{report['seconds']:g} s per figure in {report['gpu_rounds']} rounds (the paths in turn in each; "
             "5 warm-up batches before each figure), then the ceiling again; medians, and a ratio is the median of "
             "a path's rates over the ceiling measured around them (interpolated in time).", "",
             "| dtype | batch | (a) on the GPU | (b) reader alone | reader GB/s | (c) streamed | (c)/(a) "
             "| (d) resident | (d)/(a) | (e) resident, float32 batches | (e)/(a) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["results"]:
        lines.append(f"| {r['dtype']} | {r['batch']} | {r['ceiling']:,.0f} | {r['reader']:,.0f} | "
                     f"{r['reader_gb_s']:.1f} | {r['streamed']:,.0f} | {r['streamed_ratio']:.0%} | "
                     f"{r['resident']:,.0f} | {r['resident_ratio']:.0%} | "
                     f"{r['resident_f32']:,.0f} | {r['resident_f32_ratio']:.0%} |")
    paths = ("ceiling", "streamed", "resident")
    lines += ["", "The training thread's time, ms per step: waiting for the next batch / in the step "
              "(dispatch, and the wait for the GPU at the loss read every 10 steps); and the peak GPU memory "
              "of the steps above what was held before them (model, optimizer state, resident rows), GiB.", "",
              "| dtype | batch | (a) on the GPU | (c) streamed | (d) resident | GPU peak (a) / (c) / (d) "
              "| resident rows |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["results"]:
        lines.append(f"| {r['dtype']} | {r['batch']} | " + " | ".join(
            f"{r[k + '_fetch_ms']:.2f} / {r[k + '_step_ms']:.2f}" for k in paths) + " | "
            + " / ".join(f"{r[k + '_gpu_peak_gib']:.2f}" for k in paths) + f" | {r['resident_gib']:.2f} GiB |")
    lines += ["", "The resident tier's gather of a group of steps (its rows), GB/s read and written, "
              "by the GPU's clock: as elements of the table's dtype / as rows of wider words "
              "(as the tier gathers): " + "; ".join(
                  f"{r['dtype']} batch {r['batch']} ({r['gather_rows']:,} rows): {r['gather_elements_gb_s']:,.0f} / "
                  f"{r['gather_words_gb_s']:,.0f}" for r in report["results"] if "gather_rows" in r)]
    lines += ["", f"Host peak RSS of the whole benchmark: {report['host_peak_rss_gib']:.2f} GiB."]
    lines += ["", "(a') four batches on the GPU in turn rather than one (out of the L2 cache, as the paths' batches "
              "are), against (a): " + "; ".join(f"{r['dtype']} {r['batch']}: {r['ceiling_rotating_ratio']:.0%}"
                                                for r in report["results"] if "ceiling_rotating_ratio" in r)]
    alt = [r for r in report["results"] if "resident_alternated_ratio" in r]
    if alt:
        lines += ["", "(c)/(a) and (d)/(a) measured in alternation: blocks of 20 steps of each, the GPU drained after "
                  "each block, the order swapped every pair, the streamed path's blocks each after a few untimed steps "
                  f"(its read-ahead, and one), for {report['alternated_seconds']:g} s; the whole ratio (the pairs' "
                  "quartiles) [its 95% interval: a bootstrap over runs of 4 pairs], and the training thread's ms a "
                  "step in those blocks, waiting for the batch / in the step, of the path and of (a) beside it:", "",
                  "| dtype | batch | (c)/(a) | (d)/(a) | (c) ms, (a) ms | (d) ms, (a) ms |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['dtype']} | {r['batch']} | " + " | ".join(
            f"{r[k + '_alternated_ratio']:.0%} ({r[k + '_alternated_quartiles'][0]:.0%}-"
            f"{r[k + '_alternated_quartiles'][1]:.0%}) [{r[k + '_alternated_interval'][0]:.1%}-"
            f"{r[k + '_alternated_interval'][1]:.1%}]" for k in ("streamed", "resident")) + " | " + " | ".join(
            "{1[0]:.2f} / {1[1]:.2f}, {0[0]:.2f} / {0[1]:.2f}".format(*r[k + "_alternated_ms"])
            for k in ("streamed", "resident")) + " |" for r in alt]
    words = [r for r in report["results"] if "resident_elements" in r]
    if words:
        lines += ["", "(d) gathering float16 values one by one (as before commit 347f836) rather than as 8-byte words: "
                  + "; ".join(f"batch {r['batch']}: {r['resident_elements']:,.0f} ({r['resident_elements_ratio']:.0%}, "
                              f"against {r['resident_ratio']:.0%})" for r in words)]
    cold = [r for r in report["results"] if "streamed_cold" in r]
    if cold:
        lines += ["", "(c) with every epoch begun cold (the next epoch's first batches not read on): " + "; ".join(
            f"{r['dtype']} batch {r['batch']}: {r['streamed_cold']:,.0f} ({r['streamed_cold_ratio']:.0%})"
            for r in cold)]
    few = [r for r in report["results"] if "streamed_4_threads" in r]
    if few:
        lines += ["", "(c) with 4 reading threads rather than the default; in brackets the training thread's ms "
                  "a step, waiting for the batch / in the step, against (c)'s: " + "; ".join(
                      f"{r['dtype']} batch {r['batch']}: {r['streamed_4_threads']:,.0f} "
                      f"({r['streamed_4_threads_ratio']:.0%}, "
                      f"{r['streamed_4_threads_fetch_ms']:.2f} / {r['streamed_4_threads_step_ms']:.2f} against "
                      f"{r['streamed_ratio']:.0%}, {r['streamed_fetch_ms']:.2f} / {r['streamed_step_ms']:.2f})"
                      for r in few)]
    return "\n".join(lines)


def variants_markdown(report):
    lines = [f"GPU: {report['gpu']}; {report['machine']}; (c) with other settings, each alternated with (a) for "
             f"{report['alternated_seconds']:g} s: the whole ratio (the pairs' quartiles) [its 95% interval], "
             "and the training thread's ms a step, waiting for the batch / in the step, of the path and of (a) "
             "beside it.", "",
             "| dtype | batch | (c) | threads | steps a group | (c)/(a) | (c) ms | (a) ms |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["variants"]:
        for name, v in r["variants"].items():
            lines.append(f"| {r['dtype']} | {r['batch']} | {name} | {v['threads']} | {v['group_steps']} | "
                         f"{v['ratio']:.0%} ({v['quartiles'][0]:.0%}-{v['quartiles'][1]:.0%}) "
                         f"[{v['interval'][0]:.1%}-{v['interval'][1]:.1%}] | "
                         f"{v['ms'][0]:.2f} / {v['ms'][1]:.2f} | "
                         f"{v['ceiling_ms'][0]:.2f} / {v['ceiling_ms'][1]:.2f} |")
    return "\n".join(lines)


# ---- the CPU half ------------------------------------------------------------------------------------
def old_batches(src):
    """Today's reader (wideann.data at commit fc86d48), kept here to compare with: for every batch a fresh
    float32 buffer filled by Python preadv per run of rows (NpyTable.read_index), the inputs a view of it
    and the targets copied out, on a Python read-ahead thread (`thread_ahead`, as the batch sources read
    ahead until commit 75a64c2). Same plan."""
    import torch

    t = src.table

    def load(rows):
        buf = torch.empty((rows.size, t.n_columns), dtype=torch.float32)
        t.read_index(rows, out=buf.numpy())
        return buf[:, :-1], buf[:, -1:].clone()

    return thread_batches(src, load)


def thread_batches(src, load):
    """``load(rows)`` of every step of ``src``'s plan, epoch after epoch, on a Python read-ahead thread."""
    epoch = 0
    while True:
        order = src.epoch_order(epoch)
        yield from thread_ahead(lambda s: load(src.step_rows(order, s)), range(len(src)), src.prefetch)
        epoch += 1


def thread_ahead(load, steps, prefetch):
    """``load(step)`` for every step on a Python read-ahead thread, at most ``prefetch`` batches ahead: how
    the batch sources read ahead until the native ReadAhead (commit 75a64c2 and before)."""
    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def reader():
        for s in steps:
            item = load(s)
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    pass
            if stop.is_set():
                return
        q.put(None)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        while (item := q.get()) is not None:
            yield item
    finally:
        stop.set()
        th.join()


def python_thread_batches(src):
    """The batch source's CPU path as at commit 75a64c2: the native reader called from a Python read-ahead
    thread, into recycled host memory (the same BlockPool), converting float16 to float32 as it reads."""
    import torch

    from wideann.data.host_pool import BlockPool

    t = src.table
    pool = BlockPool(src.batch_size * t.n_inputs * 4, src.prefetch + 3)

    def load(rows):
        x = torch.from_numpy(pool.array((rows.size, t.n_inputs), np.float32))
        y = torch.empty((rows.size, 1), dtype=torch.float32)
        t.read_index(rows, (x.numpy(), y.numpy()))
        return x, y

    return thread_batches(src, load)


def reused_buffer(src, threads):
    """The native reader alone: the plan's rows into one reused buffer, on the calling thread."""
    t = src.table
    t.reader_threads = threads
    x = np.empty((src.batch_size, t.n_inputs), t.dtype)
    y = np.empty((src.batch_size, 1), t.dtype)
    epoch = 0
    while True:
        order = src.epoch_order(epoch)
        for s in range(len(src)):
            rows = src.step_rows(order, s)
            t.read_index(rows, (x[:rows.size], y[:rows.size]))
            yield x[:rows.size], None
        epoch += 1


def cpu_variants():
    """The CPU half's readers by name: each a function of (table, batch) giving endless batches."""
    from wideann import data

    cores = len(os.sched_getaffinity(0))
    return {
        "today": lambda t, b: old_batches(data.ShardedBatches(t, np.arange(t.n_rows), b, seed=0, pin_memory=False)),
        "new, 1 thread": lambda t, b: endless(data.ShardedBatches(t, np.arange(t.n_rows), b, seed=0,
                                                                  pin_memory=False, reader_threads=1)),
        f"new, {cores} threads": lambda t, b: endless(data.ShardedBatches(t, np.arange(t.n_rows), b, seed=0,
                                                                          pin_memory=False, reader_threads=cores)),
        "native alone, 1 thread": lambda t, b: reused_buffer(data.ShardedBatches(t, np.arange(t.n_rows), b), 1),
        f"native alone, {cores} threads": lambda t, b: reused_buffer(data.ShardedBatches(t, np.arange(t.n_rows), b),
                                                                     cores),
        f"new, {cores} threads, epochs cold": lambda t, b: endless(data.ShardedBatches(
            t, np.arange(t.n_rows), b, seed=0, pin_memory=False, reader_threads=cores), cold=True),
    }


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_probe(table_path, batch: int, name: str, steps: int) -> None:
    """(Run in a fresh process by :func:`peak_rss_added`.) Print the KiB by which the variant ``name``
    raises the process's peak RSS over ``steps`` batches: Linux's VmHWM, reset (clear_refs 5) once torch is
    imported and the table is open, less the RSS then. A fresh process, because one that has run
    other variants already holds the memory they freed, and a variant reusing it would show nothing added."""
    import torch

    from wideann import data

    torch.zeros(2).add_(1)  # torch imported and its CPU ops begun: not the variant's own memory
    make = cpu_variants()[name]
    table = data.NpyTable(table_path)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = _status_kib("VmRSS")
    it = make(table, batch)
    for _ in range(steps):
        next(it)
    print("PEAK_ADDED_KIB", _status_kib("VmHWM") - start)
    it.close()


def peak_rss_added(table_path, batch: int, name: str, steps: int) -> float:
    """MiB the variant ``name`` adds to a process's peak RSS (see :func:`rss_probe`)."""
    r = subprocess.run([sys.executable, __file__, "--rss-probe", str(table_path), str(batch), name, str(steps)],
                       capture_output=True, text=True, check=True)
    return int(r.stdout.split("PEAK_ADDED_KIB")[1].split()[0]) / 1024


def cpu_half(args, tables):
    from normalize_vs_peers import _busy_cpu_s, wait_idle

    from wideann import data

    variants = cpu_variants()
    # (untimed) every variant delivers the same batches, so that none is timed doing less: the first steps of
    # an epoch and the first of the next, as float32, equal to today's bit for bit
    batch = min(args.batches)
    for dt in args.dtypes:
        got = {}
        for name, make in variants.items():
            table = data.NpyTable(tables[dt])
            it = make(table, batch)
            steps = -(-table.n_rows // batch)
            firsts = []
            for i in range(steps + 1):
                x, _ = next(it)
                if i in (0, 1, steps):
                    firsts.append(np.array(x, dtype=np.float32))
            it.close()
            table.close()
            got[name] = firsts
        ref = got["today"]
        for name, firsts in got.items():
            if len(firsts) != len(ref) or any(a.shape != b.shape or not np.array_equal(a, b)
                                              for a, b in zip(firsts, ref)):
                sys.exit(f"{dt}, batch {batch}: '{name}' delivers other batches than 'today'")
    print(f"every variant delivers the same batches as today's (first steps of two epochs, batch {batch})", flush=True)

    best, load = {}, {}
    for rnd in range(args.rounds):
        before = wait_idle(0.25, args.idle_wait)
        for dt in args.dtypes:
            warm(tables[dt])
            for batch in args.batches:
                for name, make in variants.items():
                    table = data.NpyTable(tables[dt])
                    it = make(table, batch)
                    for _ in range(3):
                        next(it)
                    b0, c0 = _busy_cpu_s(), time.process_time()
                    t0, n = time.perf_counter(), 0
                    while time.perf_counter() - t0 < args.seconds:
                        x, _ = next(it)
                        n += len(x)
                    wall = time.perf_counter() - t0
                    others = max(0.0, (_busy_cpu_s() - b0) - (time.process_time() - c0)) / wall
                    it.close()
                    gbs = n * table.row_bytes / wall / 1e9
                    key = (dt, batch, name)
                    if gbs > best.get(key, 0):
                        best[key], load[key] = gbs, others
                    print(f"round {rnd + 1} (idle wait: others {before or 0:.2f} cores) {dt} batch {batch} "
                          f"{name}: {gbs:.2f} GB/s, others {others:.2f} cores", flush=True)
                    table.close()
                    del it, table
    # (untimed) the peak RSS each variant adds, each in a fresh process, over two epochs and a step (at least 20
    # steps), at the largest batch: its buffers, threads and batches (the table is read with pread, so its pages
    # stay in the page cache, outside the RSS)
    batch = max(args.batches)
    added = {}
    for dt in args.dtypes:
        steps = max(20, 2 * -(-data.NpyTable(tables[dt]).n_rows // batch) + 1)
        for name in variants:
            added[f"{dt}|{batch}|{name}"] = peak_rss_added(tables[dt], batch, name, steps)
    print("peak RSS added: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in added.items()), flush=True)
    return {"variants": list(variants), "best_gb_s": {"|".join(map(str, k)): v for k, v in best.items()},
            "others_cores": {"|".join(map(str, k)): v for k, v in load.items()}, "peak_rss_added_mib": added}


def host_bound_step(ms):
    """A stand-in for a training step on a GPU as the host sees it: a stream of small operations that each
    release the GIL, as kernel launches do (on the H100, lesson 4's step took 2.7 ms of host time at every
    batch size: the GPU work itself is far shorter). Calibrated to take about ``ms`` milliseconds."""
    import torch

    a, b = torch.zeros(16), torch.ones(16)

    def ops(n):
        for _ in range(n):
            torch.add(a, b, out=a)

    ops(20000)  # warm
    t0 = time.perf_counter()
    ops(20000)
    n = max(1, int(20000 * ms / 1e3 / (time.perf_counter() - t0)))
    return lambda: ops(n)


def training_thread(args, tables):
    """Steps/s of a host-bound step alone, and beside each read-ahead (every step takes one batch): the
    share of the training thread's time that reading ahead costs it. Float16 table delivered as float32
    (the CPU path), one reading thread less than the cores (one is the training thread's)."""
    import torch

    from wideann import data

    torch.set_num_threads(1)
    threads = max(1, len(os.sched_getaffinity(0)) - 1)
    step = host_bound_step(args.step_ms)
    path = tables["float16"] if "float16" in tables else next(iter(tables.values()))
    rows = {}

    def rate(batches):
        it = iter(batches) if batches is not None else None
        for _ in range(10):
            if it is not None:
                next(it)
            step()
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < args.seconds:
            if it is not None:
                next(it)
            step()
            n += 1
        r = n / (time.perf_counter() - t0)
        if it is not None:
            it.close()
        return r

    for batch in args.host_batches:
        best = {}
        for _ in range(args.rounds):
            table = data.NpyTable(path)
            src = data.ShardedBatches(table, np.arange(table.n_rows), batch, seed=0, pin_memory=False,
                                      reader_threads=threads, prefetch=4)
            got = {"step alone": rate(None), "Python read-ahead thread (75a64c2)": rate(python_thread_batches(src)),
                   "native ReadAhead (now)": rate(endless(src))}
            for k, v in got.items():
                best[k] = max(best.get(k, 0), v)
            table.close()
        rows[batch] = best
        print(f"training thread, batch {batch}: " + ", ".join(f"{k} {v:,.0f} steps/s ({v / best['step alone']:.0%})"
                                                              for k, v in best.items()), flush=True)
    return {"step_ms": args.step_ms, "reader_threads": threads,
            "steps_per_second": {str(b): r for b, r in rows.items()}}


def training_thread_markdown(tt):
    names = list(next(iter(tt["steps_per_second"].values())))
    lines = [f"A host-bound step of {tt['step_ms']:g} ms, one batch per step (float16 table, delivered as float32, "
             f"{tt['reader_threads']} reading thread(s)): steps/s and the share of the step alone.", "",
             "| batch | " + " | ".join(names) + " |", "| ---: | " + " | ".join("---:" for _ in names) + " |"]
    for b, r in tt["steps_per_second"].items():
        lines.append(f"| {b} | " + " | ".join(f"{r[n]:,.0f} ({r[n] / r[names[0]]:.0%})" for n in names) + " |")
    return "\n".join(lines)


def cpu_markdown(report):
    names = report["variants"]
    lines = [f"Machine: {report['machine']}; table {report['rows']:,} x {REFERENCE_COLUMNS:,} in the page cache; "
             f"GB/s of table bytes read, best of {report['rounds']} rounds of {report['seconds']:g} s "
             "(in brackets: the cores the rest of the machine used during the best round).", "",
             "| dtype | batch | " + " | ".join(names) + " | new / today |",
             "| --- | ---: | " + " | ".join("---:" for _ in names) + " | ---: |"]
    best, load = report["best_gb_s"], report["others_cores"]
    for dt in report["dtypes"]:
        for b in report["batches"]:
            cells = [f"{best[f'{dt}|{b}|{n}']:.2f} ({load[f'{dt}|{b}|{n}']:.1f})" for n in names]
            speedup = max(best[f"{dt}|{b}|{n}"] for n in names[1:3]) / best[f"{dt}|{b}|{names[0]}"]
            lines.append(f"| {dt} | {b} | " + " | ".join(cells) + f" | {speedup:.2f}x |")
    if "peak_rss_added_mib" in report:
        added, b = report["peak_rss_added_mib"], max(report["batches"])
        lines += ["", f"Peak RSS each reader adds to a process (MiB), batch {b}, each in a fresh process over two "
                  "epochs: its buffers, threads and batches (the table is read with pread: its pages stay in the page "
                  "cache).", "", "| dtype | " + " | ".join(names) + " |",
                  "| --- | " + " | ".join("---:" for _ in names) + " |"]
        for dt in report["dtypes"]:
            lines.append(f"| {dt} | " + " | ".join(f"{added[f'{dt}|{b}|{n}']:.0f}" for n in names) + " |")
    if "training_thread" in report:
        lines += ["", training_thread_markdown(report["training_thread"])]
    return "\n".join(lines)


def at_least_one(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def main():
    if sys.argv[1:2] == ["--rss-probe"]:  # (internal) one reader's peak RSS, in a fresh process
        path, batch, name, steps = sys.argv[2:6]
        return rss_probe(Path(path), int(batch), name, int(steps))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20000, help="rows of the generated tables (20,000: 1.03 GB float32)")
    ap.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="timed seconds per figure (the GPU half splits them between its rounds)")
    ap.add_argument("--alternated-seconds", type=float, help="GPU half: seconds of (c) and of (d) alternated with (a) "
                    "per figure (default --seconds; longer for a steadier ratio: at 2 s the pairs' quartiles lay "
                    "10 points apart on an H100's host)")
    ap.add_argument("--rounds", type=int, default=3, help="CPU half: rounds, the best counts")
    ap.add_argument("--gpu-rounds", type=at_least_one, default=8, help="GPU half: rounds, the paths measured in turn "
                    "in each (--seconds split between them); medians")
    ap.add_argument("--idle-wait", type=float, default=20, help="CPU half: seconds to wait for an idle machine")
    ap.add_argument("--cpu", action="store_true", help="the CPU half even where a GPU is present")
    ap.add_argument("--step-ms", type=float, default=2.7, help="CPU half: host time of the stand-in training step")
    ap.add_argument("--host-batches", type=int, nargs="+", default=[64, 256],
                    help="CPU half: batch sizes of the training-thread figures")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--profile", metavar="FOLDER", help="GPU half: torch.profiler tables and traces of the ceiling, "
                    "streamed and resident paths (float16, batch 1024) into FOLDER")
    ap.add_argument("--profile-batches", type=int, nargs="+", default=[1024],
                    help="with --profile: the batch sizes profiled (files of batches other than 1024 end in _BATCH)")
    ap.add_argument("--streamed-variants", action="store_true", help="GPU half: only (c), as it is and with 4 and 2 "
                    "reading threads, groups of 256 MiB, and the training thread on a core apart from the reading "
                    "threads, each alternated with (a) for --alternated-seconds")
    args = ap.parse_args()
    if args.profile and not set(args.profile_batches) & set(args.batches):
        ap.error(f"--profile-batches {args.profile_batches}: none of them is among --batches {args.batches}")

    import torch

    t_start = time.perf_counter()
    tables = make_tables(args.rows)
    report = {"machine": machine(), "rows": args.rows, "seconds": args.seconds, "batches": args.batches,
              "alternated_seconds": args.alternated_seconds or args.seconds,
              "dtypes": args.dtypes, "rounds": args.rounds, "gpu_rounds": args.gpu_rounds,
              "threads_at_start": threading.active_count()}
    if torch.cuda.is_available() and not args.cpu:
        def partial(got):
            if args.json:
                Path(args.json).write_text(json.dumps({**report, **got}, indent=1) + "\n")
        report.update(gpu_half(args, tables, partial))
        report["host_peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # (KiB on Linux)
        text = variants_markdown(report) if args.streamed_variants else gpu_markdown(report)
    else:
        report.update(cpu_half(args, tables))
        report["training_thread"] = training_thread(args, tables)
        text = cpu_markdown(report)
    report["wall_s"] = time.perf_counter() - t_start
    print()
    print(text)
    print(f"\n(whole benchmark: {report['wall_s']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
