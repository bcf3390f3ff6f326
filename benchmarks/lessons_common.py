"""Helpers of the lesson benchmarks: wide random tables written straight to .npy, peak RSS of a command, a
command timed on an idle machine, the lessons imported as modules, the machine in words."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work"
REFERENCE_COLUMNS = 12_849  # 12,848 inputs and y


def write_random_table(path, rows: int, cols: int = REFERENCE_COLUMNS, seed: int = 0, chunk_rows: int = 2048,
                       dtype: str = "float32"):
    """A float32 (or ``dtype``) ``rows x cols`` .npy of uniform [0, 1) values, as if normalized, written in
    chunks (never the whole table in memory, no CSV on the way), with an all-[0, 1] stats file beside it.
    Reused when it already exists with the right shape and dtype."""
    import wideann

    path = Path(path)
    stats_path = path.with_suffix(".stats.json")
    if path.is_file() and stats_path.is_file():
        from wideann.data import NpyTable

        with NpyTable(path) as t:
            if t.shape == (rows, cols) and t.dtype == np.dtype(dtype):
                return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        descr = np.dtype(dtype).newbyteorder("<").str
        np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": (rows, cols)})
        for start in range(0, rows, chunk_rows):
            n = min(chunk_rows, rows - start)
            f.write(rng.random((n, cols), dtype=np.float32).astype(dtype).tobytes())
    os.replace(tmp, path)
    names = [f"x{i + 1}" for i in range(cols - 1)] + ["y"]
    wideann.Stats(names, np.zeros(cols), np.ones(cols), rows, [str(path)]).save(stats_path)
    return path


def run_with_peak_rss(cmd, **kw):
    """Run ``cmd``; return (completed process, peak RSS in bytes of its largest process)."""
    r, peak, _ = run_measured(cmd, **kw)
    return r, peak


def run_measured(cmd, **kw):
    """Run ``cmd``; return (completed process, peak RSS in bytes of its largest process, wall seconds).

    A fresh Python process runs the command and reports ``RUSAGE_CHILDREN`` max RSS (KiB on Linux), so
    the number covers this command only (``accelerate launch`` and the training process it starts), and
    the command's wall time, measured in that process around the command: without the start of the
    measuring process itself (tens of ms, which a step of several short processes would count each
    time)."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); r = subprocess.run(sys.argv[1:]); "
             "t = time.perf_counter() - t; "
             "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, t, file=sys.stderr); "
             "sys.exit(r.returncode)")
    r = subprocess.run([sys.executable, "-c", probe, *map(str, cmd)], capture_output=True, text=True, **kw)
    peak = wall = None
    for line in r.stderr.splitlines():
        if line.startswith("PEAK_RSS_KB"):
            peak, wall = int(line.split()[1]) * 1024, float(line.split()[2])
    return r, peak, wall


def machine() -> str:
    import platform

    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{len(os.sched_getaffinity(0))} cores ({cpu or platform.machine()}), {mem:.0f} GiB RAM, "
            f"Python {sys.version.split()[0]}")


def run_timed(cmd, idle_cores: float = 0.25, idle_wait: float = 120, **kw):
    """Run ``cmd`` after waiting (at most ``idle_wait`` s) until the other processes use fewer than
    ``idle_cores`` cores; return (completed process, wall seconds, cores the other processes used
    meanwhile: all the machine's CPU time but this command's, over the wall time; None if unknown)."""
    import resource
    import time

    from normalize_vs_peers import _busy_cpu_s, wait_idle  # beside this module, on the path of its importers

    def own():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    if idle_wait > 0:
        wait_idle(idle_cores, idle_wait)
    busy0, own0, t0 = _busy_cpu_s(), own(), time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    wall = time.perf_counter() - t0
    others = None if busy0 is None else max(0.0, (_busy_cpu_s() - busy0) - (own() - own0)) / wall
    return r, wall, others


def load_lesson(script: str):
    """A lesson script (``scripts/<script>``) imported as a module, for its model and helpers (its
    ``main()`` does not run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(script).stem, ROOT / "scripts" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
