#!/usr/bin/env python3
"""Benchmark: wideann's streaming min-max normalizer against the tools users would pick instead.

Two raw CSV files with every column on its own scale:

* tall: 100 columns x 500,000 rows
* wide: 12,849 columns x 2,000 rows

Two jobs on each:

* ``stats`` - pass 1 alone: per-column min, max and row count, written as JSON;
* ``full``  - the whole job: pass 1, then every value written as ``(v - min) / (max - min)`` in float32
  (a constant column gives 0).

Tools, each written the way an experienced user would write it (streaming engines on, all cores,
reasonable chunk sizes):

* wideann  - ``wideann stats IN -o S.json``; ``wideann normalize IN -o OUT.npy`` (the CLI's ``main``).
* polars   - lazy ``scan_csv`` with an explicit Float64 schema -> min/max/len collected with the streaming
  engine; then ``scan_csv`` -> normalizing expressions -> ``sink_csv`` (CSV out).
* duckdb   - ``SELECT min(COLUMNS(*)), max(COLUMNS(*)), count(*) FROM read_csv(...)`` (types and dialect
  given, sniffer off); then
  ``COPY (SELECT (x - min) / range ...) TO OUT.csv`` (CSV out).
* pyarrow  - ``pyarrow.csv.open_csv`` streaming record batches (blocks of >= 4 MB and >= 512 rows: small
  blocks cost dearly with 12,849 columns), two passes; output rows appended, as float32, to a ``.npy``
  whose header is written first (plain writes, as wideann's; until 2026-11-28 an ``open_memmap``, whose
  mapped pages counted up to the whole output in the peak RSS).
* pandas   - ``read_csv(chunksize=...)``, two passes; ``.npy`` out the same way.
* sklearn  - ``MinMaxScaler.partial_fit`` over ``read_csv`` chunks, then ``transform`` chunk by chunk;
  ``.npy`` out the same way.

Every run is its own fresh process, started by a small wrapper process that runs exactly that one job and
reads its peak RSS from ``getrusage(RUSAGE_CHILDREN)``. Wall seconds are those of the whole job process
(interpreter start and imports included; the time spent in imports is reported separately). Before
every timed run the input file is read once end to end, so every tool starts with the input in the page
cache. Every result is checked (min/max/count against wideann's stats, the output's shape and sampled
rows against values recomputed from the raw text) so that no tool is timed doing the wrong job.

On a shared machine the script waits before each run until the other processes use less than
``--idle-cores`` cores (at most ``--idle-wait`` seconds) and reports how many cores the rest of the
machine used during each run.

    python benchmarks/normalize_vs_peers.py                 # both files, all tools, best of 1
    python benchmarks/normalize_vs_peers.py --quick         # small files: a smoke run
    python benchmarks/normalize_vs_peers.py --only wide --repeat 3 --json out.json --markdown out.md
    python benchmarks/normalize_vs_peers.py --tools wideann,polars --jobs stats --repeat 5
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "work")

SIZES = {"tall": (500_000, 100), "wide": (2_000, 12_849)}        # rows, columns
QUICK_SIZES = {"tall": (50_000, 100), "wide": (200, 12_849)}
TOOLS = ["wideann", "polars", "duckdb", "pyarrow", "pandas", "sklearn"]
JOBS = ["stats", "full"]
OUTPUT_KIND = {"wideann": "npy", "polars": "csv", "duckdb": "csv", "pyarrow": "npy", "pandas": "npy",
               "sklearn": "npy"}
LIBS = {"polars": "polars", "duckdb": "duckdb", "pyarrow": "pyarrow", "pandas": "pandas",
        "sklearn": "scikit-learn", "numpy": "numpy", "wideann": "wideann"}
# The targets of issue 2 (2-core machine): wideann's speed-up over Polars, and its peak RSS.
TARGETS = {("tall", "stats"): 2.0, ("wide", "stats"): 3.0, ("tall", "full"): 3.0, ("wide", "full"): 5.0}
RSS_TARGET_MB = 200            # MB (1e6 bytes), as issue 2 gives it

CHUNK_VALUES = 1 << 22          # pandas / sklearn: ~4M values (32 MB of float64) per chunk
ARROW_MIN_BLOCK = 1 << 22       # pyarrow: blocks of CSV text of >= 4 MB and >= ARROW_BLOCK_ROWS rows
ARROW_BLOCK_ROWS = 512          # (per-batch costs grow with the column count: 1 MB blocks hold 8 wide rows)


# ============================================================================================
# The jobs (run inside the job process; heavy imports happen here, inside the timed process)
# ============================================================================================

def _header(path: str) -> list[str]:
    with open(path, "r", encoding="utf-8-sig", newline="") as f:
        return [c.strip().strip('"') for c in f.readline().rstrip("\r\n").split(",")]


def _write_stats(path: str, columns, mn, mx, n_rows: int) -> None:
    with open(path, "w") as f:
        json.dump({"columns": list(columns), "min": [float(v) for v in mn], "max": [float(v) for v in mx],
                   "n_rows": int(n_rows)}, f)


def _npy_out(path, n_rows, ncols):
    """A float32 ``.npy`` of ``n_rows x ncols`` opened for writing its rows in order, chunk by chunk, with
    plain writes (as wideann writes its output). Not ``numpy.lib.format.open_memmap``: the pages of a live
    map count in the process's resident memory, so a mapped output would add up to the whole output file
    (200 MB tall, 103 MB wide) to the peers' peak RSS, pages that wideann, writing, never holds."""
    import numpy as np

    f = open(path, "wb")
    np.lib.format.write_array_header_1_0(f, {"descr": np.dtype(np.float32).str, "fortran_order": False,
                                             "shape": (int(n_rows), int(ncols))})
    return f


def _write_rows(f, a):
    """Rows ``a`` (float64) into the open ``.npy`` ``f`` as float32."""
    import numpy as np

    f.write(np.ascontiguousarray(a, dtype=np.float32).data)


def _ranges(mn, mx):
    import numpy as np

    mn, mx = np.asarray(mn, dtype=np.float64), np.asarray(mx, dtype=np.float64)
    rng = mx - mn
    return mn, np.where(rng == 0, 1.0, rng)   # a constant column maps to 0


def job_wideann(job, inp, out):
    from wideann.cli import main          # exactly what the `wideann` console script runs

    t0 = time.perf_counter()
    if job == "stats":
        rc = main(["stats", inp, "-o", os.path.join(out, "stats.json"), "-q"])
    else:
        rc = main(["normalize", inp, "-o", os.path.join(out, "out.npy"), "-q",
                   "--stats-out", os.path.join(out, "stats.json")])
    if rc:
        raise SystemExit(rc)
    return t0


def _pandas_chunks(inp, ncols):
    import numpy as np
    import pandas as pd

    rows = max(1, CHUNK_VALUES // ncols)
    return pd.read_csv(inp, chunksize=rows, dtype=np.float64, engine="c")


def job_pandas(job, inp, out):
    import numpy as np
    import pandas as pd  # noqa: F401  (import counted as start-up)

    t0 = time.perf_counter()
    cols = _header(inp)
    mn = np.full(len(cols), np.inf)
    mx = np.full(len(cols), -np.inf)
    n = 0
    for chunk in _pandas_chunks(inp, len(cols)):
        a = chunk.to_numpy()
        np.minimum(mn, a.min(axis=0), out=mn)
        np.maximum(mx, a.max(axis=0), out=mx)
        n += a.shape[0]
    _write_stats(os.path.join(out, "stats.json"), cols, mn, mx, n)
    if job == "full":
        lo, rng = _ranges(mn, mx)
        with _npy_out(os.path.join(out, "out.npy"), n, len(cols)) as res:
            for chunk in _pandas_chunks(inp, len(cols)):
                _write_rows(res, (chunk.to_numpy() - lo) / rng)
    return t0


def job_sklearn(job, inp, out):
    import numpy as np
    import pandas as pd  # noqa: F401
    from sklearn.preprocessing import MinMaxScaler

    t0 = time.perf_counter()
    cols = _header(inp)
    sc = MinMaxScaler()
    n = 0
    for chunk in _pandas_chunks(inp, len(cols)):
        sc.partial_fit(chunk.to_numpy())
        n += len(chunk)
    _write_stats(os.path.join(out, "stats.json"), cols, sc.data_min_, sc.data_max_, n)
    if job == "full":
        with _npy_out(os.path.join(out, "out.npy"), n, len(cols)) as res:
            for chunk in _pandas_chunks(inp, len(cols)):
                _write_rows(res, sc.transform(chunk.to_numpy()))
    return t0


def job_polars(job, inp, out):
    import polars as pl

    t0 = time.perf_counter()
    cols = _header(inp)
    schema = {c: pl.Float64 for c in cols}
    lf = pl.scan_csv(inp, schema=schema)
    agg = lf.select(pl.all().min().name.prefix("min:"), pl.all().max().name.prefix("max:"),
                    pl.len().alias("__n")).collect(engine="streaming")
    row = agg.row(0)
    k = len(cols)
    mn, mx, n = row[:k], row[k:2 * k], row[2 * k]
    _write_stats(os.path.join(out, "stats.json"), cols, mn, mx, n)
    if job == "full":
        lo, rng = _ranges(mn, mx)
        exprs = [((pl.col(c) - float(lo[i])) / float(rng[i])).cast(pl.Float32).alias(c)
                 for i, c in enumerate(cols)]
        pl.scan_csv(inp, schema=schema).select(exprs).sink_csv(os.path.join(out, "out.csv"))
    return t0


def _q(c: str) -> str:
    return '"' + c.replace('"', '""') + '"'


def _sqlstr(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def job_duckdb(job, inp, out):
    import duckdb

    t0 = time.perf_counter()
    cols = _header(inp)
    con = duckdb.connect()                # in memory; threads = all cores by default
    types = ", ".join(f"{_sqlstr(c)}: 'DOUBLE'" for c in cols)
    # Dialect and types given: with 12,849 columns DuckDB's sniffer alone would take many seconds.
    src = f"read_csv({_sqlstr(inp)}, header = true, auto_detect = false, delim = ',', columns = {{{types}}})"
    row = con.execute(f"SELECT min(COLUMNS(*)), max(COLUMNS(*)), count(*) FROM {src}").fetchone()
    k = len(cols)
    mn, mx, n = row[:k], row[k:2 * k], row[2 * k]
    _write_stats(os.path.join(out, "stats.json"), cols, mn, mx, n)
    if job == "full":
        lo, rng = _ranges(mn, mx)
        sel = ", ".join(f"CAST(({_q(c)} - {float(lo[i])!r}) / {float(rng[i])!r} AS FLOAT) AS {_q(c)}"
                        for i, c in enumerate(cols))
        dst = _sqlstr(os.path.join(out, "out.csv"))
        con.execute(f"COPY (SELECT {sel} FROM {src}) TO {dst} (FORMAT csv, HEADER true)")
    con.close()
    return t0


def _arrow_batches(inp, cols):
    import pyarrow as pa
    from pyarrow import csv

    with open(inp, "rb") as f:      # bytes per row, from the first rows
        f.readline()
        sample = f.read(1 << 22)
    row_bytes = len(sample) / max(1, sample.count(b"\n"))
    block = max(ARROW_MIN_BLOCK, int(ARROW_BLOCK_ROWS * row_bytes))
    return csv.open_csv(inp, read_options=csv.ReadOptions(block_size=block, use_threads=True),
                        convert_options=csv.ConvertOptions(column_types={c: pa.float64() for c in cols}))


def job_pyarrow(job, inp, out):
    import numpy as np
    import pyarrow  # noqa: F401

    t0 = time.perf_counter()
    cols = _header(inp)
    mn = np.full(len(cols), np.inf)
    mx = np.full(len(cols), -np.inf)
    n = 0
    for batch in _arrow_batches(inp, cols):
        if batch.num_rows == 0:
            continue
        a = np.column_stack([c.to_numpy() for c in batch.columns])
        np.minimum(mn, a.min(axis=0), out=mn)
        np.maximum(mx, a.max(axis=0), out=mx)
        n += batch.num_rows
    _write_stats(os.path.join(out, "stats.json"), cols, mn, mx, n)
    if job == "full":
        lo, rng = _ranges(mn, mx)
        with _npy_out(os.path.join(out, "out.npy"), n, len(cols)) as res:
            for batch in _arrow_batches(inp, cols):
                if batch.num_rows == 0:
                    continue
                a = np.column_stack([c.to_numpy() for c in batch.columns])
                _write_rows(res, (a - lo) / rng)
    return t0


JOB_FUNCS = {"wideann": job_wideann, "pandas": job_pandas, "sklearn": job_sklearn, "polars": job_polars,
             "duckdb": job_duckdb, "pyarrow": job_pyarrow}


def run_job(tool, job, inp, out):
    """Entry of the job process: one tool, one job; timings into out/timing.json."""
    t_start = time.perf_counter()
    t_work = JOB_FUNCS[tool](job, inp, out)     # returns the time its imports were done
    t_end = time.perf_counter()
    with open(os.path.join(out, "timing.json"), "w") as f:
        json.dump({"imports_s": t_work - t_start, "work_s": t_end - t_work}, f)


# ============================================================================================
# The wrapper: runs exactly one job process and reports its wall time and peak RSS
# ============================================================================================

def run_measure(result_path, cmd, timeout):
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
        rc, err = p.returncode, p.stderr.decode(errors="replace")[-2000:]
    except subprocess.TimeoutExpired as e:
        rc, err = -9, f"timed out after {timeout} s; {(e.stderr or b'').decode(errors='replace')[-1000:]}"
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)   # only child: the job process
    me = resource.getrusage(resource.RUSAGE_SELF)
    with open(result_path, "w") as f:
        # ru_maxrss is in KiB on Linux: /1024 gives MiB (the results before 2026-11-28 called these MB)
        json.dump({"wall_s": wall, "peak_rss_mib": ru.ru_maxrss / 1024, "cpu_s": ru.ru_utime + ru.ru_stime,
                   "wrapper_cpu_s": me.ru_utime + me.ru_stime, "rc": rc, "stderr": err}, f)


# ============================================================================================
# Data generation
# ============================================================================================

def generate_own(path, rows, cols, seed=1):
    """Fallback generator (numpy + polars): every column on its own scale and offset, 6 significant digits."""
    import numpy as np
    import polars as pl

    rs = np.random.default_rng(seed)
    scale = 10.0 ** rs.uniform(-2, 4, cols)
    offset = rs.uniform(-1, 1, cols) * 10.0 ** rs.uniform(0, 5, cols)
    names = [f"x{i + 1}" for i in range(cols - 1)] + ["y"]
    step = max(1, (1 << 23) // cols)
    with open(path + ".tmp", "wb") as f:
        for r0 in range(0, rows, step):
            n = min(step, rows - r0)
            a = offset + scale * rs.random((n, cols))
            mag = np.floor(np.log10(np.abs(a) + 1e-300))
            q = 10.0 ** (5 - mag)
            a = np.round(a * q) / q
            pl.DataFrame(a, schema=names, orient="row").write_csv(f, include_header=(r0 == 0))
    os.replace(path + ".tmp", path)


def _engine_id():
    """Size and mtime of the built engine: a rebuilt engine may write different make-data."""
    import importlib.util

    try:
        origin = importlib.util.find_spec("wideann._native").origin
        st = os.stat(origin)
        return [st.st_size, int(st.st_mtime)]
    except Exception:
        return None


def ensure_data(name, rows, cols, generator):
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(WORK, f"{name}_{cols}x{rows}.csv")
    meta_path = path + ".meta.json"
    engine = _engine_id() if generator == "wideann" else None
    if os.path.exists(path) and os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if (meta.get("generator") == generator and meta.get("bytes") == os.path.getsize(path)
                and meta.get("engine") == engine):
            return path, meta
    t0 = time.perf_counter()
    if generator == "wideann":
        subprocess.run([sys.executable, "-m", "wideann", "make-data", "-o", path, "--rows", str(rows),
                        "--cols", str(cols), "--seed", "1", "-q"], check=True)
    else:
        subprocess.run([sys.executable, __file__, "--_gen", path, str(rows), str(cols)], check=True)
    meta = {"generator": generator, "engine": engine, "rows": rows, "cols": cols, "bytes": os.path.getsize(path),
            "gen_s": round(time.perf_counter() - t0, 2)}
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    return path, meta


def warm_cache(path):
    """Read the whole file once (untimed) so that every tool starts with it in the page cache."""
    buf = bytearray(1 << 22)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


# ============================================================================================
# Checks: no tool is timed doing the wrong job
# ============================================================================================

CHECK_HEAD_ROWS = 50      # the output's first rows, its last row and CHECK_SAMPLE_ROWS rows drawn from all
CHECK_SAMPLE_ROWS = 200   # of it are compared with (v - min) / (max - min) recomputed from the raw text
CHECK_ATOL = 2e-6         # (float32 has 24 bits: 6e-8 near 1)


def check_rows(n_rows: int) -> "np.ndarray":
    """The data rows (0-based, sorted) whose output is recomputed from the raw text: the first
    CHECK_HEAD_ROWS, CHECK_SAMPLE_ROWS drawn with a fixed seed from all the rows, and the last one; so a
    tool that wrote the head and the tail right but not the middle is caught too."""
    import numpy as np

    rng = np.random.default_rng(12345)
    picks = rng.choice(n_rows, size=min(n_rows, CHECK_SAMPLE_ROWS), replace=False) if n_rows else []
    return np.unique(np.concatenate([np.arange(min(n_rows, CHECK_HEAD_ROWS)), picks,
                                     [n_rows - 1] if n_rows else []]).astype(np.int64))


def _raw_rows(path, rows):
    """The data rows ``rows`` (0-based, sorted; the header line skipped) of a CSV, parsed as float64: one
    array of ``len(rows)`` rows, or fewer where the file has fewer lines."""
    import numpy as np

    want, got = set(int(r) for r in rows), []
    last = max(want) if want else -1
    with open(path, "rb") as f:
        f.readline()
        for i, line in enumerate(f):
            if i > last:
                break
            if i in want:
                got.append(np.array(line.decode().strip().split(","), dtype=np.float64))
    return np.array(got)


def _count_lines(path):
    n, buf = 0, bytearray(1 << 24)
    with open(path, "rb", buffering=0) as f:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            n += buf.count(b"\n", 0, k)
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 1))
        if f.read(1) not in (b"\n", b""):
            n += 1
    return n


def compare_npy(path, ref_path, chunk_values=1 << 22):
    """``(largest |difference|, share of values bit for bit equal)`` of two float32 ``.npy`` of one shape,
    read in chunks (neither in memory whole)."""
    import numpy as np

    a, b = np.load(path, mmap_mode="r"), np.load(ref_path, mmap_mode="r")
    if a.shape != b.shape:
        raise ValueError(f"shape {a.shape}, the reference's {b.shape}")
    step = max(1, chunk_values // max(1, a.shape[1]))
    worst, same, total = 0.0, 0, a.size
    for r in range(0, a.shape[0], step):
        x, y = np.asarray(a[r:r + step]), np.asarray(b[r:r + step])
        d = np.abs(x.astype(np.float64) - y)
        worst = max(worst, float("inf") if np.isnan(d).any() else float(d.max(initial=0.0)))
        same += int(np.count_nonzero(x.view(np.uint32) == y.view(np.uint32)))
    del a, b
    return worst, same / max(1, total)


def check_result(tool, job, inp, out, ref, ref_npy=None):
    """Return a list of problems (empty if none), and a note. ref: wideann's stats dict (None: this run is
    the reference). ref_npy: wideann's checked full-job output, against which every ``.npy`` output is
    compared value by value (to CHECK_ATOL), and the share of its values bit for bit equal given."""
    import numpy as np

    problems, note = [], ""
    st = json.load(open(os.path.join(out, "stats.json")))
    mn, mx = np.array(st["min"], dtype=np.float64), np.array(st["max"], dtype=np.float64)
    n_rows, ncols = int(st["n_rows"]), len(st["min"])
    if ref is not None:
        rmn, rmx = np.array(ref["min"]), np.array(ref["max"])
        if mn.shape != rmn.shape:
            problems.append(f"{ncols} columns, wideann found {rmn.size}")
        else:
            for what, a, b in (("min", mn, rmn), ("max", mx, rmx)):
                bad = np.flatnonzero(~np.isclose(a, b, rtol=1e-12, atol=0))
                if bad.size:
                    problems.append(f"{what} differs from wideann's in {bad.size} columns "
                                    f"(column {bad[0] + 1}: {a[bad[0]]!r} vs {b[bad[0]]!r})")
        if n_rows != ref["n_rows"]:
            problems.append(f"{n_rows} rows, wideann counted {ref['n_rows']}")
    if job == "full":
        rows = check_rows(n_rows)
        raw = _raw_rows(inp, rows)
        if len(raw) != len(rows):
            problems.append(f"the input has fewer rows than the {n_rows} counted")
            return problems, note
        lo, rng = _ranges(mn, mx)
        expected = (raw - lo) / rng
        if OUTPUT_KIND[tool] == "npy":
            p = os.path.join(out, "out.npy")
            try:
                a = np.load(p, mmap_mode="r")
            except ValueError as e:   # (a file shorter than its header says)
                problems.append(f"output unreadable as .npy: {e}")
                return problems, note
            if a.shape != (n_rows, ncols) or a.dtype != np.float32:
                problems.append(f"output is {a.dtype}{a.shape}, expected float32{(n_rows, ncols)}")
                return problems, note
            got = np.asarray(a[rows], dtype=np.float64)
            del a
            if ref_npy is not None:
                worst, same = compare_npy(p, ref_npy)
                note = f"vs wideann's output: max |diff| {worst:.1e}, {same:.4%} bit for bit"
                if not worst <= CHECK_ATOL:
                    problems.append(f"differs from wideann's output by up to {worst:.3g} (tolerance {CHECK_ATOL:g})")
        else:
            p = os.path.join(out, "out.csv")
            lines = _count_lines(p)
            if lines != n_rows + 1:
                problems.append(f"output has {lines} lines, expected {n_rows + 1}")
            got = _raw_rows(p, rows)
            if ref_npy is not None and got.shape == expected.shape:
                r = np.load(ref_npy, mmap_mode="r")
                want = np.asarray(r[rows])
                del r
                g32 = got.astype(np.float32)   # the text of a float32, read back
                worst = float(np.abs(g32.astype(np.float64) - want).max(initial=0.0))
                note = (f"sampled rows vs wideann's output: max |diff| {worst:.1e}, "
                        f"{np.mean(g32.view(np.uint32) == want.view(np.uint32)):.4%} bit for bit")
                if not worst <= CHECK_ATOL:
                    problems.append(f"sampled rows differ from wideann's output by up to {worst:.3g}")
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=0, atol=CHECK_ATOL):
            problems.append(f"sampled rows ({len(rows)} of {n_rows}: the first {CHECK_HEAD_ROWS}, the last, "
                            f"the rest drawn from all) differ from (v-min)/(max-min) of the input")
    return problems, note


# ============================================================================================
# Driver
# ============================================================================================

def versions():
    from importlib import metadata

    v = {"python": platform.python_version()}
    for tool, dist in LIBS.items():
        try:
            v[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            v[dist] = None
    return v


def machine():
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": model, "ram_gib": round(mem, 1),
            "kernel": platform.release(), "loadavg_at_start": os.getloadavg()}


def _busy_cpu_s():
    """CPU seconds spent by the whole machine so far (all processes), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_idle(max_busy, max_wait):
    """Wait (at most max_wait s) until the other processes on the machine use < max_busy cores."""
    t0 = time.monotonic()
    while True:
        a = _busy_cpu_s()
        if a is None:
            return None
        time.sleep(1.0)
        busy = _busy_cpu_s() - a
        if busy < max_busy or time.monotonic() - t0 > max_wait:
            return busy


def one_run(tool, job, inp, dataset, timeout, idle_cores, idle_wait):
    out = os.path.join(WORK, "out", f"{dataset}-{tool}-{job}")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    before = wait_idle(idle_cores, idle_wait) if idle_wait > 0 else None
    warm_cache(inp)
    mfile = os.path.join(out, "measure.json")
    b0 = _busy_cpu_s()
    subprocess.run([sys.executable, __file__, "--_measure", mfile, str(timeout), "--",
                    sys.executable, __file__, "--_job", tool, job, inp, out], check=True)
    b1 = _busy_cpu_s()
    m = json.load(open(mfile))
    m["load_before"] = before
    # The rest of the machine during the run: all CPU time minus the job's, in cores (0 = had it alone).
    m["others_cores"] = ((max(0.0, (b1 - b0) - m["cpu_s"] - m["wrapper_cpu_s"]) / m["wall_s"])
                         if b0 is not None else None)
    if m["rc"] == 0:
        m.update(json.load(open(os.path.join(out, "timing.json"))))
    return m, out


def fmt_table(rows, dataset, job, mb):
    lines = ["| tool | output | wall s | of which imports s | input MB/s | CPU s | peak RSS MiB | wideann speed-up "
             "| others' load (cores) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        tool = r["tool"] + (f" ({r['failed_runs']} run(s) failed)" if r.get("failed_runs") else "")
        if r.get("error"):
            lines.append(f"| {tool} | {r['output']} | failed: {r['error'][:60]} | | | | | | |")
            continue
        if not r.get("correct", True):  # a wrong result has no speed worth showing
            lines.append(f"| {tool} | {r['output']} | WRONG: {'; '.join(r.get('problems', []))[:60]} | | | | | | |")
            continue
        sp = "—" if r["tool"] == "wideann" else (f"{r['speedup']:.2f}×" if r.get("speedup") else "n/a")
        lines.append(f"| {tool} | {r['output']} | {r['wall_s']:.2f} | {r.get('imports_s', 0):.2f} | "
                     f"{mb / r['wall_s']:.0f} | {r['cpu_s']:.2f} | {r['peak_rss_mib']:.0f} | {sp} | "
                     f"{r.get('others_cores') or 0:.2f} |")
    return "\n".join(lines)


def render_markdown(report) -> str:
    """The results as Markdown: the machine, the versions, one table per file and job, the targets."""
    m, v = report["machine"], report["versions"]
    out = [f"Machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}; "
           f"load average {m['loadavg_at_start'][0]:.2f} at the start, "
           f"{m.get('loadavg_at_end', [0])[0]:.2f} at the end.",
           "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
           f"Best of {report['repeat']} runs (a run over {report.get('no_repeat_over', 15):g} s is not repeated); "
           "peak RSS (MiB) is the largest of the runs. Page cache warmed before every run.", ""]
    for ds, res in report["datasets"].items():
        mb = res["bytes"] / 1e6
        for job, rows in res["jobs"].items():
            title = "pass 1 alone (min, max, count)" if job == "stats" else "full job (stats + normalized output)"
            out += [f"**{ds}** ({res['cols']:,} columns × {res['rows']:,} rows, {mb:.0f} MB of CSV), {title}:", "",
                    fmt_table(rows, ds, job, mb), ""]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small files (a smoke run)")
    ap.add_argument("--only", choices=("tall", "wide"), help="one file only")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    ap.add_argument("--jobs", default=",".join(JOBS), help="comma-separated subset of stats,full")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each job; the best (fastest) counts")
    ap.add_argument("--no-repeat-over", type=float, default=15.0, metavar="S",
                    help="a job whose first run took longer than S seconds is not repeated (default 15)")
    ap.add_argument("--idle-cores", type=float, default=0.25, metavar="C",
                    help="before each run wait until other processes use < C cores (default 0.25) ...")
    ap.add_argument("--idle-wait", type=float, default=60, metavar="S",
                    help="... but at most S seconds (default 60; 0: do not wait)")
    ap.add_argument("--json", metavar="OUT.json", help="write all measurements here")
    ap.add_argument("--markdown", metavar="OUT.md", help="write the results as Markdown tables here")
    ap.add_argument("--generator", choices=("auto", "wideann", "own"), default="auto",
                    help="input data: `wideann make-data` (auto: when wideann is installed) or a numpy one")
    ap.add_argument("--timeout", type=int, default=900, help="seconds before one run is abandoned")
    ap.add_argument("--keep", action="store_true", help="keep the outputs of the last run of each job")
    args = ap.parse_args(argv)

    tools = [t for t in args.tools.split(",") if t]
    jobs = [j for j in args.jobs.split(",") if j]
    for t in tools:
        if t not in TOOLS:
            ap.error(f"unknown tool {t!r}")
    if "wideann" in tools:   # wideann first: its stats are the reference the others are checked against
        tools = ["wideann"] + [t for t in tools if t != "wideann"]
    generator = args.generator
    if generator == "auto":
        import importlib.util

        generator = "wideann" if importlib.util.find_spec("wideann") else "own"
    sizes = QUICK_SIZES if args.quick else SIZES
    datasets = [args.only] if args.only else ["tall", "wide"]

    report = {"machine": machine(), "versions": versions(), "repeat": args.repeat, "quick": args.quick,
              "no_repeat_over": args.no_repeat_over,
              "page_cache": "input read once end to end before every timed run", "datasets": {}}
    print(f"# machine: {report['machine']}", flush=True)
    print(f"# versions: {report['versions']}", flush=True)
    all_ok = True
    for ds in datasets:
        rows, cols = sizes[ds]
        inp, meta = ensure_data(ds, rows, cols, generator)
        mb = meta["bytes"] / 1e6
        print(f"\n## {ds}: {cols} columns x {rows} rows, {mb:.1f} MB ({generator} generator) -> {inp}", flush=True)
        best: dict = {}
        walls: dict = {}     # every run's wall seconds, per (tool, job)
        failed: dict = {}    # runs that failed, per (tool, job)
        ref = None
        ref_npy = None       # wideann's full-job output, once checked: the peers' .npy are compared with it
        for rep in range(args.repeat):
            for job in jobs:
                for tool in tools:
                    prev = best.get((tool, job))
                    if rep and prev and (prev.get("error") or prev["wall_s"] > args.no_repeat_over):
                        continue     # a long run is not repeated: noise matters little there
                    m, out = one_run(tool, job, inp, ds, args.timeout, args.idle_cores, args.idle_wait)
                    key = (tool, job)
                    if m["rc"] != 0:
                        err = m["stderr"].strip().splitlines()[-1:] or [f"exit {m['rc']}"]
                        print(f"  {ds} {job:5s} {tool:8s} FAILED ({m['rc']}): {err[0]}", flush=True)
                        failed[key] = failed.get(key, 0) + 1
                        best.setdefault(key, {"tool": tool, "output": OUTPUT_KIND[tool] if job == 'full' else 'json',
                                              "error": err[0]})
                        all_ok = False
                        continue
                    is_ref = ref is None     # wideann's stats (or, without wideann, the first tool's)
                    if is_ref:
                        ref = json.load(open(os.path.join(out, "stats.json")))
                    problems, note = check_result(tool, job, inp, out, None if is_ref else ref,
                                                  ref_npy if tool != "wideann" else None)
                    if tool == "wideann" and job == "full" and not problems and ref_npy is None:
                        ref_npy = os.path.join(WORK, "out", f"{ds}-wideann-reference.npy")
                        os.replace(os.path.join(out, "out.npy"), ref_npy)   # the others' .npy are compared with it
                    status = (("ok" if not problems else "WRONG: " + "; ".join(problems))
                              + (f" ({note})" if note else ""))
                    print(f"  {ds} {job:5s} {tool:8s} rep {rep + 1}: {m['wall_s']:7.2f} s "
                          f"(imports {m['imports_s']:.2f}, cpu {m['cpu_s']:.1f} s) {mb / m['wall_s']:7.0f} MB/s "
                          f"{m['peak_rss_mib']:6.0f} MiB  others {m['others_cores'] or 0:.2f} cores  {status}",
                          flush=True)
                    if problems:
                        all_ok = False
                    m.update(tool=tool, output=OUTPUT_KIND[tool] if job == "full" else "json",
                             correct=not problems, problems=problems, check=note)
                    walls.setdefault(key, []).append(round(m["wall_s"], 3))
                    prev = best.get(key)
                    # the best run is the fastest correct one: a wrong result never stands for the tool
                    if prev is None or prev.get("error") or (m["correct"], -m["wall_s"]) > (prev["correct"],
                                                                                            -prev["wall_s"]):
                        m["peak_rss_mib"] = max(m["peak_rss_mib"], (prev or {}).get("peak_rss_mib", 0))
                        best[key] = m
                    else:
                        prev["peak_rss_mib"] = max(prev["peak_rss_mib"], m["peak_rss_mib"])
                    if not args.keep:
                        shutil.rmtree(out, ignore_errors=True)
        if ref_npy and not args.keep:
            os.remove(ref_npy)
        res = {"rows": rows, "cols": cols, "bytes": meta["bytes"], "generator": generator, "jobs": {}}
        for job in jobs:
            rows_ = [best[(t, job)] for t in tools if (t, job) in best]
            w = best.get(("wideann", job))
            for r in rows_:
                if w and not w.get("error") and not r.get("error") and w.get("correct") and r.get("correct"):
                    r["speedup"] = r["wall_s"] / w["wall_s"]
                r["failed_runs"] = failed.get((r["tool"], job), 0)
                r.pop("stderr", None)
                r["all_wall_s"] = walls.get((r["tool"], job), [])
            res["jobs"][job] = rows_
            title = "pass 1 alone (min, max, count)" if job == "stats" else "full job (stats + normalized output)"
            print(f"\n### {ds}, {title}: best of {args.repeat} (runs over {args.no_repeat_over:g} s: once)\n")
            print(fmt_table(rows_, ds, job, mb))
        report["datasets"][ds] = res

    # Targets of issue 2
    print("\n## targets (issue 2)" + (": not judged on --quick's small files" if args.quick else ""))
    for (ds, job), want in TARGETS.items():
        if args.quick or ds not in report["datasets"] or job not in report["datasets"][ds]["jobs"]:
            continue
        rs = {r["tool"]: r for r in report["datasets"][ds]["jobs"][job]}
        p, w = rs.get("polars"), rs.get("wideann")
        if p and w and p.get("speedup"):
            print(f"  {ds} {job}: wideann {p['speedup']:.2f}x Polars (target >= {want}x): "
                  f"{'met' if p['speedup'] >= want else 'MISSED'}")
        elif "polars" in tools or "wideann" in tools:
            print(f"  {ds} {job}: wideann against Polars (target >= {want}x): not measured (a run failed, was "
                  "wrong, or was not asked for)")
        if w and not w.get("error") and w.get("correct"):
            peak_mb = w["peak_rss_mib"] * 2**20 / 1e6
            print(f"  {ds} {job}: wideann peak RSS {peak_mb:.0f} MB (target <= {RSS_TARGET_MB} MB): "
                  f"{'met' if peak_mb <= RSS_TARGET_MB else 'MISSED'}")
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(render_markdown(report))
    return 0 if all_ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_job":
        run_job(*sys.argv[2:6])
    elif len(sys.argv) > 1 and sys.argv[1] == "--_measure":
        i = sys.argv.index("--")
        run_measure(sys.argv[2], sys.argv[i + 1:], int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--_gen":
        generate_own(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(main())
