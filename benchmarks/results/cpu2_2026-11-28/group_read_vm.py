"""(Runs at commits 412af05 and 9a9c714: since 19ddd6a the GPU path copies with `copy_` into memory it takes
first, and its side stream waits for the training stream, which these stand-ins do not model.)

A check on a machine without a GPU (2026-11-28, the 2-core VM), CUDA's calls stood in by no-ops (copies
are views): the streamed GPU path's fetch time on the training thread, by position, with each group of steps
read in one native call (main since 412af05) or one call a step (before it, 9a9c714). The step is a sleep
(the reading threads get the cores), long enough that no read is waited for.

    python benchmarks/results/cpu2_2026-11-28/group_read_vm.py BATCH EPOCHS SLEEP_S
    OLD=/tmp/oldpkg python ...   # another build of wideann (pip install --target /tmp/oldpkg its wheel)

It writes a 20,000 x 12,849 float16 table of 514 MB to /tmp first. Figures: the mean fetch a step, and the
medians of a group's first fetch (the group's reads submitted, its copy) and of the others (a view handed
out), epochs after the first."""
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

if os.environ.get("OLD"):  # another build of wideann, in place of the editable install
    sys.meta_path = [f for f in sys.meta_path if "wideann" not in repr(f) and "scikit" not in repr(type(f))]
    sys.path.insert(0, os.environ["OLD"])
import numpy as np  # noqa: E402
import torch  # noqa: E402
from wideann import data  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from lessons_common import write_random_table  # noqa: E402

batch, epochs, sleep = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])


class Event:
    def record(self, s=None): pass
    def synchronize(self): pass


class Stream:
    def wait_event(self, e): pass


real_to = torch.Tensor.to


def to(t, *a, **k):
    return t if a and isinstance(a[0], torch.device) else real_to(t, *a, **k)


torch.Tensor.to = to
torch.Tensor.record_stream = lambda t, s: None
torch.cuda.Stream = lambda device=None: Stream()
torch.cuda.current_stream = lambda device=None: Stream()
torch.cuda.stream = lambda s: contextlib.nullcontext()
torch.cuda.Event = Event

path = Path("/tmp/t20k_12849.npy")
if not path.exists():
    write_random_table(path, 20000, cols=12849, dtype="float16")
table = data.NpyTable(path)
src = data.ShardedBatches(table, np.arange(table.n_rows), batch, seed=1, pin_memory=False, dtype=None)
src.cuda, src.device = True, torch.device("cpu")
times = []
for e in range(epochs):
    it = src.epoch(e)
    while True:
        t0 = time.perf_counter()
        try:
            next(it)
        except StopIteration:
            break
        times.append(time.perf_counter() - t0)
        time.sleep(sleep)
times, g = times[len(src):], src.group_steps  # the first epoch out
firsts = [t for i, t in enumerate(times) if (i % len(src)) % g == 0]
others = [t for i, t in enumerate(times) if (i % len(src)) % g != 0]
print(f"{'old' if os.environ.get('OLD') else 'new'} batch {batch} group {g}: "
      f"fetch {1e6 * statistics.mean(times):.1f} us a step,"
      f" a group's first {1e6 * statistics.median(firsts):.0f} us, the others {1e6 * statistics.median(others):.1f} us")
