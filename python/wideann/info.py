"""``wideann info PATH``: a short description of a .npy table, a folder of .npy shards, a CSV file or a
stats file."""
from __future__ import annotations

import math
import os
import re

import numpy as np

from ._native_checked import _native
from ._atomic import kind_of
from ._entry import counted
from .diskspace import human_bytes
from .engine import lone_cr_said
from .stats import FORMAT, Stats, read_json


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
        if os.path.exists(path):  # /dev/null, a FIFO, a socket
            raise ValueError(f"{path}: is {kind_of(path)}, not a file: info describes a .npy table, a folder of "
                             ".npy shards, a CSV file or a stats file")
        raise FileNotFoundError(2, "no such file", path)
    with open(path, "rb") as f:
        head = f.read(6)
    if head == b"\x93NUMPY":
        return _describe_npy(path)
    if path.endswith(".json"):
        d = read_json(path)
        if isinstance(d, dict) and d.get("format") == FORMAT:
            return _describe_stats(path, Stats.from_dict(d, where=path))
        raise ValueError(f"{path}: JSON, but not a wideann stats file")
    return _describe_csv(path)


def _npy_header(path: str):
    """(shape, fortran_order, dtype, data offset) of a .npy file; a broken header is a ValueError
    naming the file."""
    try:
        with open(path, "rb") as f:
            major, minor = np.lib.format.read_magic(f)
            if (major, minor) not in ((1, 0), (2, 0), (3, 0)):
                raise ValueError(f"format version {major}.{minor} (numpy writes 1.0, 2.0 and 3.0)")
            read_header = (np.lib.format.read_array_header_1_0 if major == 1
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f, max_header_size=1 << 24)
            return shape, fortran, dtype, f.tell()
    except Exception as e:  # numpy's header parser raises many kinds (ValueError, TokenError, ...)
        why = re.sub(r"<[^>]*>", "...", " ".join(str(e).split()))  # no object reprs (addresses)
        raise ValueError(f"{path}: not a valid .npy file: {why}") from None


def _describe_npy(path: str) -> str:
    shape, fortran, dtype, offset = _npy_header(path)
    size = os.path.getsize(path)
    need = offset + math.prod(shape) * dtype.itemsize
    if size < need:
        raise ValueError(f"{path}: truncated .npy file: {' x '.join(map(str, shape)) or 'a scalar'} "
                         f"{dtype} needs {need} bytes, the file has {size}")
    lines = [f"{path}: .npy table, {' x '.join(map(str, shape)) or 'a scalar'} {dtype} ({human_bytes(size)}), "
             f"data at byte {offset}{', Fortran order' if fortran else ''}"]
    if len(shape) >= 1 and shape[0] > 0 and math.prod(shape) > 0 and dtype.kind in "fiu" and not fortran:
        rows = min(shape[0], 1000)
        sample = np.fromfile(path, dtype=dtype, count=rows * math.prod(shape[1:]), offset=offset)
        with np.errstate(invalid="ignore"):  # a signalling NaN in the file warns when cast
            sample = sample.astype(np.float64).reshape((rows, -1))
        finite = sample[np.isfinite(sample)]
        span = f"min {finite.min():.6g}, max {finite.max():.6g}" if finite.size else "no finite values"
        lines.append(f"  first {len(sample)} rows: {span}, non-finite {sample.size - finite.size}")
    return "\n".join(lines)


def _describe_shards(source) -> str:
    """A shard set (a folder of .npy files, or a list): the table they make, each shard's rows, the stats."""
    from .data import ShardSet, stats_beside, table_paths

    paths = table_paths(source)
    where = os.fspath(source) if isinstance(source, (str, os.PathLike)) else f"{len(paths)} files"
    with ShardSet(paths) as t:  # refuses shards that disagree (columns, dtype), naming the odd one
        size = sum(os.path.getsize(p) for p in paths)
        lines = [f"{where}: {len(paths)} .npy shard{'s' if len(paths) != 1 else ''} read as one table, "
                 f"{t.n_rows} x {t.n_columns} {t.dtype} ({human_bytes(size)}), rows in this order:"]
        shown = list(range(len(paths)))
        if len(paths) > 12:  # the first and last five
            shown = shown[:5] + [-1] + shown[-5:]
        for k in shown:
            if k < 0:
                lines.append(f"  ... {len(paths) - 10} more shards ...")
                continue
            a, b = int(t.starts[k]), int(t.starts[k + 1])
            lines.append(f"  {paths[k]}: rows {a}..{b - 1} ({counted(b - a, 'row')})" if b > a
                         else f"  {paths[k]}: no rows")
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
    lines = [f"{path}: wideann stats, {counted(st.n_columns, 'column')}, {counted(st.n_rows, 'row')}",
             f"  columns: {_names(st.columns)}",
             # (shortest round-trip text, as in the file: six digits showed 1e9 .. 1e9 + 50 as "min 1e+09, max 1e+09")
             f"  target {st.columns[-1]!r}: min {st._min[-1]!r}, max {st._max[-1]!r}",
             f"  constant columns: {constant}"]
    if st.sources:
        lines.append(f"  sources: {_names(st.sources, 2)}")
    return "\n".join(lines)


def _describe_csv(path: str) -> str:
    """From the first MiB only (and the whole first line, as the engine reads it), so that it answers at once
    on a file of any size."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(1 << 20)
        while len(head) < size and b"\n" not in head.lstrip(b"\xef\xbb\xbf\r\n"):  # (blank lines before it)
            more = f.read(1 << 20)
            if not more:
                break
            head += more
    if not head.strip():
        raise ValueError(f"{path}: the file is empty" if not head else f"{path}: the file holds blank lines only")
    if b"\0" in head:  # no text file has one (a model's weights, a picture, an archive)
        raise ValueError(f"{path}: not a CSV (binary data), a .npy table or a stats file")
    if said := lone_cr_said(path):
        raise ValueError(said)
    # lines end at LF; CRs and LFs before the first line are skipped, as the engine does
    lines = [ln.removesuffix(b"\r") for ln in head.removeprefix(b"\xef\xbb\xbf").lstrip(b"\r\n").split(b"\n")]
    whole = len(head) == size
    first = lines[0].decode("utf-8", errors="backslashreplace") if lines else ""
    delimiter = max(",;\t|", key=first.count) if first else ","
    fields = split_fields(first, delimiter)
    kind, name, why = _native.guess_first_line(fields)  # (the engine's own rule)
    is_header = kind == "header"
    body = [ln for ln in (lines[1:] if whole else lines[1:-1]) if ln.strip()]
    if whole:
        rows = counted(len(body) + (0 if is_header or not first else 1), "row")
    elif body:
        avg = sum(len(ln) + 1 for ln in body) / len(body)
        rows = f"about {int(size / avg):,} rows (estimated from the first MiB)"
    else:
        rows = "rows unknown (the first MiB holds less than two lines)"
    return "\n".join([
        f"{path}: CSV, {human_bytes(size)}, {counted(len(fields), 'column')}, {rows}",
        f"  delimiter {delimiter!r}, header: {_verdict(kind, why, fields, name)}",
        f"  first line: {_names(fields)}",
    ])


def _verdict(kind: str, why: str, fields: list[str], name: int) -> str:
    """What --header auto makes of a first line, in words (see ``_native.guess_first_line``)."""
    if kind != "unclear":
        return "yes" if kind == "header" else "no"
    if why == "positions":
        what = "the columns' positions 0, 1, 2, ...: pandas' names, or data?"
    elif why == "index":
        what = "no name in column 1, as pandas writes over a frame's index: its row numbers would be an input"
    elif why == "missing":
        what = f"{fields[name]!r} in column {name + 1}: a missing value, or a name?"
    else:
        what = f"numbers and a name, {fields[name]!r} in column {name + 1}"
    return f"unclear ({what}: --header auto refuses it; say --header yes or --header no)"


def split_fields(line: str, delimiter: str) -> list[str]:
    """The fields of one CSV line as the engine reads them (a quoted field may hold the delimiter; quotes
    removed, spaces around a field trimmed)."""
    return _native.split_fields(line, delimiter)
