"""``wideann info PATH``: a short description of a .npy table, a folder of .npy shards, a CSV file or a
stats file."""
from __future__ import annotations

import json
import os

import numpy as np

from .stats import FORMAT, Stats


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _names(names, k: int = 3) -> str:
    names = list(names)
    return ", ".join(names) if len(names) <= 2 * k else ", ".join(names[:k] + ["..."] + names[-k:])


def describe(path) -> str:
    if not isinstance(path, (str, os.PathLike)):  # a list of .npy shards
        return _describe_shards(path)
    path = os.fspath(path)
    if os.path.isdir(path):
        return _describe_shards(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "no such file", path)
    with open(path, "rb") as f:
        head = f.read(6)
    if head == b"\x93NUMPY":
        return _describe_npy(path)
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}") from None
        if isinstance(d, dict) and d.get("format") == FORMAT:
            return _describe_stats(path, Stats.from_dict(d, where=path))
        raise ValueError(f"{path}: JSON, but not a wideann stats file")
    return _describe_csv(path)


def _describe_npy(path: str) -> str:
    with open(path, "rb") as f:
        major, _minor = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if major == 1
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    a = np.load(path, mmap_mode="r")
    sample = np.asarray(a[: min(len(a), 1000)], dtype=np.float64)
    lines = [f"{path}: .npy table, {' x '.join(map(str, shape))} {dtype} ({_size(os.path.getsize(path))}), "
             f"data at byte {offset}{', Fortran order' if fortran else ''}"]
    if sample.size:
        lines.append(f"  first {len(sample)} rows: min {sample.min():.6g}, max {sample.max():.6g}, "
                     f"non-finite {int(np.sum(~np.isfinite(sample)))}")
    return "\n".join(lines)


def _describe_shards(source) -> str:
    """A shard set (a folder of .npy files, or a list): the table they make, each shard's rows, the stats."""
    from .data import ShardSet, stats_beside, table_paths

    paths = table_paths(source)
    where = os.fspath(source) if isinstance(source, (str, os.PathLike)) else f"{len(paths)} files"
    with ShardSet(paths) as t:  # refuses shards that disagree (columns, dtype), naming the odd one
        size = sum(os.path.getsize(p) for p in paths)
        lines = [f"{where}: {len(paths)} .npy shard{'s' if len(paths) != 1 else ''} read as one table, "
                 f"{t.n_rows} x {t.n_columns} {t.dtype} ({_size(size)}), rows in this order:"]
        shown = list(range(len(paths)))
        if len(paths) > 12:  # the first and last five
            shown = shown[:5] + [-1] + shown[-5:]
        for k in shown:
            if k < 0:
                lines.append(f"  ... {len(paths) - 10} more shards ...")
                continue
            a, b = int(t.starts[k]), int(t.starts[k + 1])
            lines.append(f"  {paths[k]}: rows {a}..{b - 1} ({b - a} rows)" if b > a else f"  {paths[k]}: no rows")
    stats_path = stats_beside(paths)  # refuses stats files that disagree, naming the odd shard
    if stats_path is None:
        lines.append("  stats: none beside the shards (give the lessons the stats the shards were normalized "
                     "with: --stats merged.json)")
    else:
        st = Stats.load(stats_path)
        lines.append(f"  stats: {stats_path}, {st.n_columns} columns"
                     + ("" if st.n_columns == t.n_columns else f" -- NOT the table's {t.n_columns} columns"))
    return "\n".join(lines)


def _describe_stats(path: str, st: Stats) -> str:
    constant = int(np.sum(st.data_range == 0))
    lines = [f"{path}: wideann stats, {st.n_columns} columns, {st.n_rows} rows",
             f"  columns: {_names(st.columns)}",
             f"  target {st.columns[-1]!r}: min {st.data_min[-1]:.6g}, max {st.data_max[-1]:.6g}",
             f"  constant columns: {constant}"]
    if st.sources:
        lines.append(f"  sources: {_names(st.sources, 2)}")
    return "\n".join(lines)


def _describe_csv(path: str) -> str:
    """From the first MiB only, so that it answers at once on a file of any size."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    lines = head.splitlines()
    whole = len(head) == size
    first = lines[0].decode("utf-8-sig", errors="replace") if lines else ""
    delimiter = max(",;\t|", key=first.count) if first else ","
    fields = first.split(delimiter)
    is_header = any(_not_number(x) for x in fields)
    body = [ln for ln in (lines[1:] if whole else lines[1:-1]) if ln.strip()]
    if whole:
        rows = f"{len(body) + (0 if is_header or not first else 1)} rows"
    elif body:
        avg = sum(len(ln) + 1 for ln in body) / len(body)
        rows = f"about {int(size / avg):,} rows (estimated from the first MiB)"
    else:
        rows = "rows unknown (the first MiB holds less than two lines)"
    return "\n".join([
        f"{path}: CSV, {_size(size)}, {len(fields)} columns, {rows}",
        f"  delimiter {delimiter!r}, header: {'yes' if is_header else 'no'}",
        f"  first line: {_names([x.strip() for x in fields])}",
    ])


def _not_number(s: str) -> bool:
    s = s.strip().strip('"').strip()
    if not s:
        return False
    try:
        float(s)
        return False
    except ValueError:
        return True
