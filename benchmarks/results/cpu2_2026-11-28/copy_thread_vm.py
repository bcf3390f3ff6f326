"""(Runs at commit 2a98837: ShardedBatches.copy_thread was removed after the GPU run of 2026-11-28.)

A check on a machine without a GPU (2026-11-28, the 2-core VM), CUDA's calls stood in: the streamed GPU path's
fetch time on the training thread, copies issued here or by the helper thread, with a copy that is
asynchronous (costs the host nothing) or one that blocks its caller for its bytes at 50 GB/s (GIL released, as
Tensor.to does). The step: 1.5 ms holding the GIL (dispatch) then 1 ms without it (backward). Run from the
repository: python benchmarks/results/cpu2_2026-11-28/copy_thread_vm.py (about 50 s; it writes a 20,000 x
12,849 float16 table of 514 MB to /tmp first)."""
import contextlib, time, sys, numpy as np, torch
from pathlib import Path
import wideann.data as data

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from lessons_common import write_random_table  # noqa: E402

class Event:
    def record(self, stream=None): pass
    def synchronize(self): pass
class Stream:
    def wait_event(self, e): pass
    def wait_stream(self, s): pass
torch.Tensor.record_stream = lambda t, s: None
torch.cuda.Stream = lambda device=None: Stream()
torch.cuda.current_stream = lambda device=None: Stream()
torch.cuda.stream = lambda s: contextlib.nullcontext()
torch.cuda.Event = Event
real_to = torch.Tensor.to
BLOCK = False
def to(t, *a, **k):
    if k.get("non_blocking") and BLOCK:
        time.sleep(t.numel() * t.element_size() / 50e9)
    return real_to(t, *a, **k)
torch.Tensor.to = to

p = Path("/tmp/t20k_12849.npy")
if not p.exists():
    write_random_table(p, 20000, cols=12849, dtype="float16")
t = data.NpyTable(p)
def step():
    e = time.perf_counter() + 0.0015
    while time.perf_counter() < e: pass
    time.sleep(0.001)
for BLOCK in (False, True):
  for batch in (256, 1024):
    for thread in (False, True, False, True):
        s = data.ShardedBatches(t, np.arange(20000), batch, seed=0, pin_memory=False, dtype=None)
        s.cuda, s.device = True, torch.device("cpu")
        s.copy_thread = thread
        def endless():
            e = 0
            while True:
                yield from s.epoch(e); e += 1
        it = endless()
        for _ in range(2 * len(s)): next(it); step()
        n, t0, fetch = 0, time.perf_counter(), 0.0
        while time.perf_counter() - t0 < 3:
            a = time.perf_counter(); next(it); fetch += time.perf_counter() - a; n += 1
            step()
        print(f"copy {'blocks' if BLOCK else 'async '} batch {batch:4d} group {s.group_steps:2d} copies from "
              f"{'a thread' if thread else 'here    '}: fetch {1e3 * fetch / n:.3f} ms a step", flush=True)
        it.close()
