"""Where the training thread's time goes when it asks lesson 4's data paths for a batch (issue 6): a
diagnosis of the gap that `gpu_data_path.py` measures, not a target.

On an H100 the training step is bound by the host's time to launch its work, so every microsecond the
training thread spends in `next(batches)` comes off the training's speed. `gpu_data_path.py` (runs 8-10,
2026-11-27) measured that time for a float16 table of the reference width: the resident tier 0.02 / 0.04 /
0.19 ms a step at batch 256 / 1024 / 4096 (about 0.9 ms an epoch of 20,000 rows at every batch size), the
streamed path 0.13 / 0.38 ms (0.75-1.3 ms a group of steps), against 0.002 ms for a batch already on the
GPU. The CPU (2 cores, no GPU) gives 0.012 ms a step for the resident tier at 4096. This script finds where
the extra goes (its first run, batch 1024 on an H100, 2026-11-28: no wait and no sync, a group's or an
epoch's worth of small calls; benchmarks/README.md), for the float16 table, batch 256, 1024 and 4096, the
ceiling, the streamed path and the resident tier:

0. **calls**: the host time of each CUDA call the paths make for a group of steps (the copy of a pinned ring
   slot to the device, the resident gather, events, `record_stream`), with the GPU idle and with GPU work
   queued before it: a call that waits for the GPU, or for its own copy, shows it at once;
1. **by position**: lesson 4's real step, the fetch's host time of every step, split by where the step
   lies: an epoch's first step, a group's first step (the streamed path copies a group, the resident tier
   gathers one), the others; with the time Python's garbage collector took inside the fetch and inside the
   step (a callback times every collection), and the same once more with the collector off; and with
   other group sizes (the resident tier gathering a whole epoch at once, the streamed path copying groups
   of 16 MiB), which says whether a cost goes with the groups or with the bytes;
2. **syncs**: the host waiting for the GPU inside the data path, found by
   `torch.cuda.set_sync_debug_mode("warn")` over enough epochs to remake the resident tier's plan (a
   warning names the line that synchronized);
3. **profile**: torch.profiler with Python's calls (`with_stack`) over a stand-in step that is the model's
   step without its host work (the GPU sleeps about as long as the model's step there, the host sleeps as
   long as its dispatch): the host time inside the fetch by operation, by CUDA runtime call (cudaMalloc,
   cudaEventSynchronize, ...) and by Python function, self time and count; tables in --out;
4. **in the step**: the streamed path's step itself ran longer than the ceiling's beside it (0.02-0.6 ms,
   in every alternated run on an H100), the resident tier's hardly: lesson 4's step on a batch already on
   the GPU, alternated with the same step on batches copied a group at a time from a pinned block, without
   reading, the copy made as the streamed path made it until commit 19ddd6a (memory taken on the side
   stream, `record_stream`: a freed block leaves an event that every allocation queries until it has
   passed), as it makes it since (memory of the training stream), and into one kept block (no allocation):
   `in_the_step`, --step-seconds for each batch size.

    python benchmarks/gpu_host_time.py --out /tmp/host_time        # on the GPU machine, about 2 minutes
        # (estimated: --batches 1024 alone took 26 s on an H100 on 2026-11-28)
    python benchmarks/gpu_host_time.py --dry --rows 3000 --seconds 0.3 --batches 256   # the CPU as the
        # device: a check of the script (about 20 s on 2 cores), its figures mean nothing
"""
import argparse
import contextlib
import gc
import json
import re
import statistics
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_data_path  # noqa: E402
from lessons_common import load_lesson, machine  # noqa: E402


class GcClock:
    """Seconds spent in Python's garbage collections so far (``spent``), by a ``gc.callbacks`` hook."""

    def __init__(self):
        self.spent, self.collections, self._t = 0.0, 0, None
        gc.callbacks.append(self._hook)

    def _hook(self, phase, info):
        if phase == "start":
            self._t = time.perf_counter()
        elif self._t is not None:
            self.spent += time.perf_counter() - self._t
            self.collections += 1
            self._t = None

    def close(self):
        gc.callbacks.remove(self._hook)


def by_position(make, step, length, group, seconds, warmup, sync, gc_off=False):
    """The fetch's host time of every step of ``make()``'s batches trained by ``step`` for ``seconds``, by
    position (``length`` steps an epoch, ``group`` steps a group: an epoch's first, a group's first, others),
    and the garbage collector's time inside the fetches and the steps."""
    clock, gcc = time.perf_counter, GcClock()
    it, k = make(), 0
    for _ in range(warmup):
        step(*next(it))
        k += 1
    sync()
    gc.collect()
    if gc_off:
        gc.disable()
    kinds = defaultdict(list)
    fetch_gc = step_gc = stepping = 0.0
    try:
        end = clock() + seconds
        while clock() < end:
            g0, a = gcc.spent, clock()
            x, y = next(it)
            b, g1 = clock(), gcc.spent
            step(x, y)
            c = clock()
            p = k % length
            kinds["epoch_first" if p == 0 else "group_first" if p % group == 0 else "other"].append(b - a)
            fetch_gc, step_gc, stepping = fetch_gc + g1 - g0, step_gc + gcc.spent - g1, stepping + c - b
            k += 1
        sync()
    finally:
        gc.enable()
        gcc.close()
        if hasattr(it, "close"):
            it.close()
    n = sum(len(v) for v in kinds.values())
    every = [t for v in kinds.values() for t in v]
    out = {"steps": n, "fetch_ms": 1e3 * sum(every) / n, "step_ms": 1e3 * stepping / n,
           "gc_ms_in_fetch": 1e3 * fetch_gc / n, "gc_ms_in_step": 1e3 * step_gc / n, "collections": gcc.collections}
    for kind, ts in kinds.items():
        out[kind] = {"steps": len(ts), "mean_ms": 1e3 * statistics.fmean(ts), "median_ms": 1e3 * statistics.median(ts),
                     "p90_ms": 1e3 * float(np.percentile(ts, 90)), "max_ms": 1e3 * max(ts)}
    return out


def syncs(make, steps):
    """Where ``steps`` fetches of ``make()`` (no training) made the host wait for the GPU: warnings of
    ``torch.cuda.set_sync_debug_mode``, counted by the file and line that synchronized."""
    import torch

    it = make()
    found = defaultdict(int)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(steps):
                next(it)
    finally:
        torch.cuda.set_sync_debug_mode(0)
        if hasattr(it, "close"):
            it.close()
    for w in caught:
        if "synchroniz" in str(w.message):
            found[f"{Path(w.filename).name}:{w.lineno}"] += 1
    torch.cuda.synchronize()
    return dict(found)


def sleep_cycles(ms):
    """The ``torch.cuda._sleep`` cycles that keep the GPU busy ``ms`` (measured once, by the GPU's clock)."""
    import torch

    if not hasattr(sleep_cycles, "per_ms"):
        torch.cuda._sleep(1000)  # (warm)
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        torch.cuda._sleep(1_000_000)
        b.record()
        b.synchronize()
        sleep_cycles.per_ms = 1_000_000 / a.elapsed_time(b)
    return int(sleep_cycles.per_ms * ms)


def stand_in_step(device, gpu_ms, host_ms):
    """A step that is lesson 4's without its host work: the GPU busy ``gpu_ms`` (``torch.cuda._sleep``), the
    host away ``host_ms`` (the step's dispatch); the host stays ahead of the GPU, so a fetch that waits for
    the GPU shows as such."""
    import torch

    cycles = sleep_cycles(gpu_ms) if device.type == "cuda" else 0

    def step(x, y):
        if cycles:
            torch.cuda._sleep(cycles)
        time.sleep(host_ms / 1e3)  # (not a spin: the profiler would trace each of its calls)
    return step


def _nested(events):
    """``events`` (one thread's, chrome-trace dicts with ts and dur) with each one's self time: its duration
    less its direct children's."""
    events = sorted(events, key=lambda e: (e["ts"], -e["dur"]))
    stack, out = [], []
    for e in events:
        while stack and e["ts"] >= stack[-1]["ts"] + stack[-1]["dur"]:
            stack.pop()
        e = dict(e, self=e["dur"])
        if stack:
            stack[-1]["self"] -= e["dur"]
        stack.append(e)
        out.append(e)
    return out


def profile(make, step, steps, warmup, folder, name):
    """torch.profiler, with Python's calls, over ``steps`` steps of ``make()``'s batches and ``step``: the
    events inside the fetches (``record_function("fetch")``), by kind and name, count and self time per step
    (µs); the tables are also written to ``folder/name.txt``."""
    import torch
    from torch.profiler import ProfilerActivity, record_function

    it = make()
    for _ in range(warmup):
        step(*next(it))
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch.profiler.profile(activities=activities, with_stack=True) as prof:
        for _ in range(steps):
            with record_function("fetch"):
                x, y = next(it)
            step(x, y)
        sync()
    if hasattr(it, "close"):
        it.close()
    trace = Path(folder, f"{name}.json")
    prof.export_chrome_trace(str(trace))
    events = [e for e in json.loads(trace.read_text())["traceEvents"] if e.get("ph") == "X" and "dur" in e]
    fetches = [e for e in events if e["name"] == "fetch" and e.get("cat") == "user_annotation"]
    tid = fetches[0]["tid"] if fetches else None
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in fetches)
    starts = [s for s, _ in spans]
    inside = defaultdict(list)  # by thread: the training thread's, and CUDA's runtime calls where they are kept apart
    for e in events:
        if e["name"] == "fetch" or (e.get("tid") != tid and not e.get("cat", "").startswith("cuda_")):
            continue
        i = int(np.searchsorted(starts, e["ts"], side="right")) - 1
        if i >= 0 and e["ts"] + e["dur"] <= spans[i][1] + 1e-3:
            inside[e.get("tid")].append(e)
    table = defaultdict(lambda: [0, 0.0, 0.0])
    for e in (e for group in inside.values() for e in _nested(group)):
        row = table[(e.get("cat", "?"), re.sub(r" at 0x[0-9a-f]+", "", e["name"]))]  # (a method of any object)
        row[0] += 1
        row[1] += e["self"]
        row[2] += e["dur"]
    n = max(1, len(fetches))
    rows = sorted(({"kind": k[0], "name": k[1], "count_per_step": v[0] / n, "self_us_per_step": v[1] / n,
                    "total_us_per_step": v[2] / n} for k, v in table.items()), key=lambda r: -r["self_us_per_step"])
    fetch_us = sum(b - a for a, b in spans) / n
    lines = [f"{name}: {len(fetches)} fetches, {fetch_us:.1f} µs each under the profiler (Python's calls traced)",
             f"{'kind':<16} {'count/step':>10} {'self µs/step':>12} {'total µs/step':>13}  name"]
    lines += [f"{r['kind']:<16} {r['count_per_step']:>10.2f} {r['self_us_per_step']:>12.1f} "
              f"{r['total_us_per_step']:>13.1f}  {r['name'][:110]}" for r in rows[:60]]
    ops = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
    Path(folder, f"{name}.txt").write_text("\n".join(lines) + "\n\n" + ops + "\n")
    trace.unlink()  # (tens of MB with Python's calls; the tables say what it held)
    return {"fetch_us": fetch_us, "fetches": len(fetches), "top": rows[:40]}


def calls(device, table, store, batch, group_steps, gpu_ms, repeats=15):
    """The host time (µs, median of ``repeats``) of the single calls the two paths make for a group of steps,
    each with the GPU idle and with ``gpu_ms`` of GPU work queued just before it (on the stream the call
    uses): a call that waits for the GPU shows the queued work in its time; one whose time grows with the
    bytes it moves (at about the bus's rate) waits for its own copy. The streamed path's copy of a group
    from a slot of its pinned ring to the device on a side stream, also from a fresh pinned tensor and from
    pageable memory (which CUDA copies with the host); the resident tier's gather of a group; an event's
    record and a stream's wait for it; `record_stream`."""
    import torch

    from wideann.data.pinned_ring import PinnedRing

    n = group_steps * batch
    ring = PinnedRing(1, n, table.n_inputs, store.x.dtype)
    block = ring.block(0, n)
    fresh = torch.empty(block.shape, dtype=block.dtype, pin_memory=True)
    pageable = torch.empty(block.shape, dtype=block.dtype)
    side, here = torch.cuda.Stream(device), torch.cuda.current_stream(device)
    pos = torch.sort(torch.randperm(store.rows.size, device=device)[:n]).values
    cycles = sleep_cycles(gpu_ms)
    event = torch.cuda.Event()

    def timed(call, stream, queued):
        ts = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            if queued:
                with torch.cuda.stream(stream):
                    torch.cuda._sleep(cycles)
            a = time.perf_counter()
            with torch.cuda.stream(stream):
                call()
            ts.append(time.perf_counter() - a)
        torch.cuda.synchronize()
        return 1e6 * statistics.median(ts)

    def recorded():
        event.record(side)
        here.wait_event(event)

    got = {"group_mb": block.numel() * block.element_size() / 1e6, "ring_pinned": bool(block.is_pinned()),
           "fresh_pinned": bool(fresh.is_pinned())}
    checks = {"ring slot -> device (side stream)": (lambda: block.to(device, non_blocking=True), side),
              "fresh pinned -> device (side stream)": (lambda: fresh.to(device, non_blocking=True), side),
              "pageable -> device (side stream)": (lambda: pageable.to(device, non_blocking=True), side),
              "resident gather of a group": (lambda: store.inputs(pos), here),
              "event record + wait_event": (recorded, here),
              "record_stream": (lambda: store.x.record_stream(side), here)}
    for name, (call, stream) in checks.items():
        got[name] = {"idle_us": timed(call, stream, False), "gpu_busy_us": timed(call, stream, True)}
    return got


def group_copies(device, x, y, group, design):
    """Batches of ``x``'s shape, ``group`` steps at a time, from a copy of one pinned block of a group's rows
    (inputs and targets) on a side stream, each group's copy started before the steps of the group before
    are handed out, as the streamed path does, without its reading: ``design`` says where the copy lands.

    - "side stream, record_stream": memory taken on the side stream, converted there, ``record_stream`` of
      the training stream (the streamed path from 2026-11-26 until commit 19ddd6a);
    - "training stream": memory taken on the training stream, the side stream waiting for the training
      stream's work before it copies (the memory may have been freed by work still queued there), the
      targets converted on the training stream after the copy, no ``record_stream`` (the streamed path since
      commit 19ddd6a, not yet measured on a GPU when it was made);
    - "one kept block": the same device block copied into every time (no allocation, no ``record_stream``),
      the side stream waiting as above: what the copies cost without the allocator."""
    import torch

    batch, k = x.shape
    n = group * batch
    pinned = torch.rand(n * (k + 1)).to(x.dtype).pin_memory()
    side, here = torch.cuda.Stream(device), torch.cuda.current_stream(device)
    kept = torch.empty(pinned.shape, dtype=pinned.dtype, device=device) if design == "one kept block" else None

    def copy():
        done = torch.cuda.Event()
        if design == "side stream, record_stream":
            with torch.cuda.stream(side):
                block = pinned.to(device, non_blocking=True)
                xs, ys = block[:n * k].view(n, k), block[n * k:].view(n, 1).to(y.dtype, copy=True)
            done.record(side)
            return xs, ys, done
        block = kept if kept is not None else torch.empty(pinned.shape, dtype=pinned.dtype, device=device)
        side.wait_stream(here)
        with torch.cuda.stream(side):
            block.copy_(pinned, non_blocking=True)
        done.record(side)
        return block, None, done

    def handed(xs, ys, done):
        here.wait_event(done)
        if ys is None:  # (the block: the targets converted on the training stream)
            xs, ys = xs[:n * k].view(n, k), xs[n * k:].view(n, 1).to(y.dtype)
        else:
            xs.record_stream(here)
            ys.record_stream(here)
        return zip(xs.split(batch), ys.split(batch))

    copied = copy()
    while True:
        started = copy()
        yield from handed(*copied)
        copied = started


def in_the_step(step, device, x, y, group, seconds, block=20):
    """Lesson 4's step on one batch already on the GPU (the ceiling) in blocks of ``block`` steps, alternated
    with blocks of the same step on the batches of `group_copies`, every design in turn (the order turned
    each round, the GPU drained after each block): the training thread's ms in the step, and each design's
    rate over the ceiling's (all its rows over its time; the rounds' quartiles). The streamed path's step
    itself ran 0.02-0.6 ms longer than the ceiling's beside it, at every batch size, in every alternated run
    of 2026-11-27/28 on an H100, the resident tier's 0.00-0.04 ms: is it the copies and their memory?"""
    import torch

    designs = ["ceiling", "side stream, record_stream", "training stream", "one kept block"]
    its = {"ceiling": iter(lambda: (x, y), None)}
    its.update({d: group_copies(device, x, y, group, d) for d in designs[1:]})
    for it in its.values():
        for _ in range(group + 5):
            step(*next(it))
    torch.cuda.synchronize()
    clock = time.perf_counter
    rows, spent, stepping, steps = (dict.fromkeys(designs, 0.0) for _ in range(4))
    rounds = []
    end, r = clock() + seconds, 0
    while clock() < end:
        rate = {}
        for d in designs[r % 4:] + designs[:r % 4]:
            it, n, t0 = its[d], 0, clock()
            for _ in range(block):
                xi, yi = next(it)
                a = clock()
                step(xi, yi)
                stepping[d] += clock() - a
                n += len(xi)
            torch.cuda.synchronize()
            dt = clock() - t0
            rows[d], spent[d], steps[d], rate[d] = rows[d] + n, spent[d] + dt, steps[d] + block, n / dt
        rounds.append({d: rate[d] / rate["ceiling"] for d in designs[1:]})
        r += 1
    for it in its.values():
        if hasattr(it, "close"):
            it.close()
    torch.cuda.synchronize()
    ceiling = rows["ceiling"] / spent["ceiling"]
    return {"rounds": len(rounds), "group_steps": group,
            **{d: {"step_ms": 1e3 * stepping[d] / steps[d],
                   **({} if d == "ceiling" else {
                       "ratio": rows[d] / spent[d] / ceiling,
                       "quartiles": [float(q) for q in np.percentile([o[d] for o in rounds], [25, 75])]})}
               for d in designs}}


@contextlib.contextmanager
def stood_in_cuda():
    """CUDA's streams, events and page-locked memory as no-ops on the CPU (``--dry``: the host-time sections
    run, their figures mean nothing)."""
    import torch

    class Stream:
        def __init__(self, *args, **kwargs):
            pass

        def wait_stream(self, other):
            pass

        def wait_event(self, event):
            pass

    class Event:
        def record(self, *args):
            pass

    saved = {(torch.cuda, n): getattr(torch.cuda, n)
             for n in ("Stream", "current_stream", "stream", "Event", "synchronize")}
    saved.update({(torch.Tensor, n): getattr(torch.Tensor, n) for n in ("record_stream", "pin_memory")})
    torch.cuda.Stream, torch.cuda.Event = Stream, Event
    torch.cuda.current_stream = lambda device=None: Stream()
    torch.cuda.stream = lambda stream: contextlib.nullcontext()
    torch.cuda.synchronize = lambda device=None: None
    torch.Tensor.record_stream = lambda tensor, stream: None
    torch.Tensor.pin_memory = lambda tensor, *args: tensor
    try:
        yield
    finally:
        for (owner, name), value in saved.items():
            setattr(owner, name, value)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds of each path, by position")
    ap.add_argument("--gpu-ms", type=float, default=1.3, help="the stand-in step's GPU time (the model's, at 4096)")
    ap.add_argument("--host-ms", type=float, default=2.5, help="the stand-in step's host time (the model's dispatch)")
    ap.add_argument("--step-seconds", type=float, default=8.0, help="seconds of the step beside a group's copy "
                    "(section 4), every design and the ceiling together")
    ap.add_argument("--only-in-the-step", action="store_true", help="section 4 alone (about 10 s a batch size)")
    ap.add_argument("--out", default="benchmarks/work/gpu_host_time", help="folder of the report and the tables")
    ap.add_argument("--dry", action="store_true", help="the CPU as the device, to check the script without a GPU")
    args = ap.parse_args()

    import torch

    from wideann import data
    from wideann.data.batches import PLAN_EPOCHS
    from wideann.data.resident import torch_dtype

    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available() and not args.dry
    device = torch.device("cuda" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    table = data.NpyTable(gpu_data_path.make_tables(args.rows, dtypes=("float16",))["float16"])
    rows = np.arange(table.n_rows)
    tier = data.device_tier(table, [rows], device, "resident")
    lesson4 = load_lesson("4_multi_gpu_ann.py")
    report = {"machine": machine(), "gpu": torch.cuda.get_device_name(0) if cuda else "none (dry run)",
              "python": sys.version.split()[0], "torch": torch.__version__, "gc_threshold": gc.get_threshold(),
              "rows": args.rows, "seconds": args.seconds, "results": []}
    for batch in args.batches:
        step = gpu_data_path.trainer(lesson4, device, batch)
        stand_in = stand_in_step(device, args.gpu_ms, args.host_ms)
        x = torch.rand((batch, table.n_inputs), device=device).to(torch_dtype(table.dtype))
        y = torch.rand((batch, 1), device=device)
        streamed = data.ShardedBatches(table, rows, batch, seed=0, device=device, prefetch=4, dtype=None)
        resident = data.ShardedBatches(table, rows, batch, seed=0, device=device, resident=tier.store, dtype=None)
        paths = {"ceiling": (lambda x=x, y=y: iter(lambda: (x, y), None), len(streamed), len(streamed)),
                 "streamed": (lambda s=streamed: gpu_data_path.endless(s), len(streamed), streamed.group_steps),
                 "resident": (lambda s=resident: gpu_data_path.endless(s), len(resident), resident.group_steps)}
        # the group size, which says whether a cost goes with the groups or with the bytes: the resident tier
        # gathering a whole epoch at once, the streamed path copying groups of 16 MiB
        resident_epoch = data.ShardedBatches(table, rows, batch, seed=0, device=device, resident=tier.store, dtype=None)
        resident_epoch.group_bytes = 1 << 50
        streamed_16 = data.ShardedBatches(table, rows, batch, seed=0, device=device, prefetch=4, dtype=None)
        streamed_16.group_bytes = 16 << 20
        paths["resident, one gather an epoch"] = (lambda s=resident_epoch: gpu_data_path.endless(s), len(resident),
                                                  resident_epoch.group_steps)
        paths["streamed, groups of 16 MiB"] = (lambda s=streamed_16: gpu_data_path.endless(s), len(streamed),
                                               streamed_16.group_steps)
        r = {"batch": batch, "steps_per_epoch": len(streamed), "streamed_group_steps": streamed.group_steps,
             "resident_group_steps": resident.group_steps, "streamed_16_group_steps": streamed_16.group_steps}
        warmup = 2 * len(streamed) + 5
        with contextlib.nullcontext() if cuda else stood_in_cuda():
            r["in_the_step"] = got = in_the_step(step, device, x, y, streamed.group_steps, args.step_seconds)
        print(f"batch {batch}, in the step beside a group's copy ({got['rounds']} rounds): ms a step, and the rate "
              "over the ceiling's (quartiles of the rounds): ceiling {:.3f}; ".format(got["ceiling"]["step_ms"])
              + "; ".join(
                  f"{d} {v['step_ms']:.3f}, {v['ratio']:.1%} ({v['quartiles'][0]:.0%}-{v['quartiles'][1]:.0%})"
                  for d, v in got.items() if isinstance(v, dict) and "ratio" in v), flush=True)
        if args.only_in_the_step:
            report["results"].append(r)
            (out / "gpu_host_time.json").write_text(json.dumps(report, indent=1) + "\n")
            continue
        if cuda:
            for name, group in (("streamed", streamed.group_steps), ("resident", resident.group_steps)):
                r[f"calls_{name}_group"] = got = calls(device, table, tier.store, batch, group, args.gpu_ms)
                print(f"batch {batch}, a {name} group ({got['group_mb']:.0f} MB; ring pinned: {got['ring_pinned']}), "
                      "host µs idle / with the GPU busy: " + "; ".join(
                          f"{k} {v['idle_us']:.0f} / {v['gpu_busy_us']:.0f}" for k, v in got.items()
                          if isinstance(v, dict)), flush=True)
        for name, (make, length, group) in paths.items():
            r[name] = by_position(make, step, length, group, args.seconds, warmup, sync)
            if name in ("streamed", "resident"):
                r[f"{name}_gc_off"] = by_position(make, step, length, group, args.seconds / 2, warmup, sync,
                                                  gc_off=True)
            print(f"batch {batch} {name}: fetch {r[name]['fetch_ms']:.3f} ms a step (" + ", ".join(
                f"{k} {r[name][k]['mean_ms']:.3f}" for k in ("epoch_first", "group_first", "other") if k in r[name])
                + f"), gc {r[name]['gc_ms_in_fetch']:.3f} ms in the fetch / {r[name]['gc_ms_in_step']:.3f} in the step"
                + (f"; gc off: fetch {r[name + '_gc_off']['fetch_ms']:.3f}" if name + "_gc_off" in r else ""),
                flush=True)
        if cuda:
            r["syncs"] = {"streamed": syncs(paths["streamed"][0], 2 * len(streamed) + 3),
                          "resident": syncs(paths["resident"][0], (2 * PLAN_EPOCHS + 2) * len(resident))}
            print(f"batch {batch} syncs inside the fetch: {r['syncs']}", flush=True)
        steps = max(40, 2 * len(streamed))
        for name in ("ceiling", "streamed", "resident"):
            got = profile(paths[name][0], stand_in, steps, warmup, out, f"{name}_{batch}")
            r[f"{name}_profile"] = got
            print(f"batch {batch} {name} under the profiler: {got['fetch_us']:.0f} µs a fetch; most self time: "
                  + "; ".join(f"{t['name'][:60]} {t['self_us_per_step']:.0f} µs ({t['count_per_step']:.1f}x)"
                              for t in got["top"][:6]), flush=True)
        report["results"].append(r)
        (out / "gpu_host_time.json").write_text(json.dumps(report, indent=1) + "\n")
        del streamed, resident, resident_epoch, streamed_16, paths
    report["wall_s"] = time.perf_counter() - t_start
    (out / "gpu_host_time.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"(gpu_host_time: {report['wall_s']:.0f} s; {out}/gpu_host_time.json and a table a path and batch)")


if __name__ == "__main__":
    main()
