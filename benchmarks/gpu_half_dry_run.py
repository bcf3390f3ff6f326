"""The GPU half of `gpu_data_path.py` run on a machine without a GPU, to find its Python mistakes before a
device lease is spent on them (device time is short: a crash in the benchmark costs a rerun).

CUDA's calls are stood in for ("cuda" is the CPU, synchronize does nothing, autocast is the CPU's, pinned
memory is plain), on a small table and short figures: the figures mean nothing, only that every line of the
GPU half runs and its report is written. What it cannot reach: the batch sources' own CUDA path (with
"cuda" being the CPU they take their CPU path; `tests/test_tiers.py` drives that one with stand-ins of its
own) and torch.profiler's CUDA side (add `--profile FOLDER` to try the profiler: slow on a CPU, minutes).

    python benchmarks/gpu_half_dry_run.py                # about 140 s on 2 cores (41-70 s before the
                                                         # alternated figures, 139 s with them)
    python benchmarks/gpu_half_dry_run.py --profile /tmp/p
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_data_path  # noqa: E402

_device, _empty, _autocast = torch.device, torch.empty, torch.autocast


class _Device:
    """``torch.device("cuda")`` is the CPU; any other device is itself."""

    def __new__(cls, *args, **kwargs):
        if args and args[0] == "cuda":
            return _device("cpu")
        return _device(*args, **kwargs)


def _unpinned(*args, **kwargs):
    kwargs.pop("pin_memory", None)
    return _empty(*args, **kwargs)


class _Event:
    """A CUDA event of the host's clock (``elapsed_time`` in ms, as CUDA's)."""

    def __init__(self, *args, **kwargs):
        self.at = None

    def record(self, *args):
        self.at = time.perf_counter()

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return 1e3 * (end.at - self.at)


def main():
    torch.cuda.is_available = lambda: True
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.Event = _Event
    torch.cuda.get_device_name = lambda *a, **k: "none (a dry run on the CPU: the figures mean nothing)"
    torch.cuda.empty_cache = lambda: None
    torch.cuda.reset_peak_memory_stats = lambda *a, **k: None
    torch.cuda.memory_allocated = lambda *a, **k: 0
    torch.cuda.max_memory_allocated = lambda *a, **k: 0
    torch.cuda.is_bf16_supported = lambda *a, **k: True
    torch.device = _Device
    torch.empty = _unpinned
    torch.autocast = lambda device_type, **kwargs: _autocast("cpu", **kwargs)
    sys.argv = [sys.argv[0], "--rows", "3000", "--seconds", "0.2", "--alternated-seconds", "0.01", "--rounds", "2",
                "--gpu-rounds", "2", "--batches", "256", "1024", "--json",
                str(gpu_data_path.WORK / "gpu_half_dry_run.json"), *sys.argv[1:]]
    gpu_data_path.main()


if __name__ == "__main__":
    main()
