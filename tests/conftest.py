"""Shared helpers for the engine and CLI tests: write CSV files, run the real CLI, check failures.

Everything here works on real files on disk and runs the real ``wideann`` command line in a
subprocess (``python -m wideann``); nothing is mocked.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pytest

WIDEANN = [sys.executable, "-m", "wideann"]


def pytest_sessionstart(session):
    """An engine built from other sources than csrc/ (an editable install not rebuilt since an edit) stops the run
    before the first test, in its one line, instead of failing every test that uses it (or, in a test that
    imported wideann._native directly, testing the old engine)."""
    import importlib

    try:
        importlib.import_module("wideann._native_checked")
    except RuntimeError as e:  # (StaleEngineError, EngineMissingError: not ImportError, nor importable once failed)
        if type(e).__module__ != "wideann._native_checked":
            raise
        pytest.exit(f"wideann: {e}", returncode=1)

# Subprocesses must not pick up a progress bar or a stray environment from the caller.
_ENV = dict(os.environ)
_ENV.setdefault("PYTHONDONTWRITEBYTECODE", "1")


not_under_asan = pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="a limit on address space (ulimit -v) stops AddressSanitizer, which reserves terabytes of it, before "
           "the engine runs (.ci/run's sanitized stage; the same tests run unsanitized before it)")
"""For the tests that make threads impossible to start by a limit on address space."""


def cli_env(**extra: str) -> dict:
    env = dict(_ENV)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _arg(a) -> str:
    return os.fspath(a) if isinstance(a, (str, os.PathLike)) else str(a)


def run_cli(*args, timeout: float = 120, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """Run ``wideann ARGS...`` and return the completed process (text stdout/stderr)."""
    cmd = WIDEANN + [_arg(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else _ENV, **kw)


def ok(*args, **kw) -> subprocess.CompletedProcess:
    """Run the CLI and require exit code 0 (show stderr if not)."""
    p = run_cli(*args, **kw)
    assert p.returncode == 0, f"wideann {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr}"
    return p


def popen_cli(*args, env: dict | None = None, **kw) -> subprocess.Popen:
    cmd = WIDEANN + [_arg(a) for a in args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env if env is not None else _ENV, **kw)


# ---- writing inputs -----------------------------------------------------------------------------

def stderr_on_a_terminal(cmd, cwd=None, env=None, columns: int = 120, timeout: float = 240) -> tuple[int, str]:
    """Run ``cmd`` with stderr on a pseudo-terminal of ``columns`` x 24 (stdout discarded); its exit code and
    what it wrote there."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    p = subprocess.Popen([os.fspath(c) for c in cmd], stderr=slave, stdout=subprocess.DEVNULL, cwd=cwd, env=env)
    os.close(slave)
    buf = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO once the child has closed the terminal
            break
        if not chunk:
            break
        buf += chunk
    os.close(master)
    return p.wait(timeout=timeout), buf.decode("utf-8", "replace")


def fmt_value(v) -> str:
    """Shortest round-trip text of a number (ints stay ints)."""
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return repr(float(v))


def write_csv(path, rows: Iterable[Sequence], header: Sequence[str] | None = None, *,
              delimiter: str = ",", newline: str = "\n", bom: bool = False,
              final_newline: bool = True, quote: bool = False) -> Path:
    """Write a CSV file. ``rows`` may hold numbers (written shortest round-trip) or ready strings."""
    path = Path(path)
    lines = []
    if header is not None:
        lines.append(delimiter.join(header))
    for r in rows:
        cells = [c if isinstance(c, str) else fmt_value(c) for c in r]
        if quote:
            cells = [f'"{c}"' for c in cells]
        lines.append(delimiter.join(cells))
    text = newline.join(lines) + (newline if final_newline else "")
    data = text.encode("utf-8")
    if bom:
        data = b"\xef\xbb\xbf" + data
    path.write_bytes(data)
    return path


def write_text(path, text: str) -> Path:
    path = Path(path)
    path.write_bytes(text.encode("utf-8"))
    return path


def default_names(n: int) -> list[str]:
    """Column names the engine gives a headerless table: x1 .. x{n-1}, y."""
    return [f"x{i}" for i in range(1, n)] + ["y"]


def stats_file(path: Path, cols: int, lo: float = 0.0, hi: float = 1.0, n_rows: int = 1) -> Path:
    """A stats file for ``cols`` columns (``default_names``), every column of range [lo, hi]."""
    import wideann

    wideann.Stats(default_names(cols), [lo] * cols, [hi] * cols, n_rows).save(path)
    return path


def varied_table(rng: np.random.Generator, rows: int) -> tuple[list[list[str]], np.ndarray]:
    """A table with columns on wildly different scales, written in several number spellings.

    Returns (text cells, the float64 values those cells denote).
    """
    # (generator of float64 values, formatter)
    specs = [
        (lambda: rng.uniform(-1, 1, rows), repr),                                  # plain, negatives
        (lambda: rng.uniform(0, 1e-8, rows), lambda v: f"{v:.12e}"),             # tiny, sci notation
        (lambda: rng.uniform(-1e8, 1e8, rows), repr),                              # huge
        (lambda: 1e8 + rng.uniform(0, 1, rows), repr),                             # huge offset, small range
        (lambda: rng.integers(-1000, 1000, rows).astype(np.float64), lambda v: str(int(v))),  # ints
        (lambda: rng.uniform(-5e-3, 5e-3, rows), lambda v: f"{v:E}"),              # upper-case exponent
        (lambda: -rng.uniform(1e3, 1e5, rows), repr),                              # all negative
        (lambda: rng.normal(0, 1, rows) * 1e-12, repr),                            # tiny range around 0
        (lambda: rng.uniform(0, 1, rows), lambda v: ("+" + repr(v))),             # leading '+'
        (lambda: rng.uniform(0, 10, rows), lambda v: f"{v:.3f}"),                  # few digits
        (lambda: rng.normal(50, 20, rows), repr),                                  # "y"
    ]
    cells = []
    values = np.empty((rows, len(specs)))
    for j, (gen, f) in enumerate(specs):
        v = gen()
        txt = [f(float(x)) for x in v]
        cells.append(txt)
        values[:, j] = [float(t) for t in txt]  # exactly what the text denotes
    rows_txt = [list(r) for r in zip(*cells)]
    return rows_txt, values


def random_numeric_csv(path, rng: np.random.Generator, rows: int, cols: int, *,
                       header: bool = True, scale: float = 1000.0) -> tuple[Path, np.ndarray]:
    """A plain numeric CSV (values with up to ~9 significant digits) and its float64 values."""
    vals = np.round(rng.uniform(-scale, scale, (rows, cols)), 3)
    names = default_names(cols) if header else None
    lines = [",".join(names)] if names else []
    lines += [",".join(repr(float(x)) for x in r) for r in vals]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path), vals


# ---- reading outputs ----------------------------------------------------------------------------

def _is_number(s: str) -> bool:
    try:
        float(s.strip().strip('"'))
        return True
    except ValueError:
        return False


def read_csv_table(path, delimiter: str = ",") -> tuple[list[str] | None, np.ndarray]:
    """Read a CSV the engine wrote: (header names or None, float64 values rows x cols)."""
    text = Path(path).read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines()]
    while lines and lines[-1] == "":
        lines.pop()
    header = None
    if lines and not all(_is_number(c) for c in lines[0].split(delimiter)):
        header = lines[0].split(delimiter)
        lines = lines[1:]
    if not lines:
        return header, np.empty((0, len(header) if header else 0))
    data = np.array([[float(c.strip('"')) for c in ln.split(delimiter)] for ln in lines], dtype=np.float64)
    return header, data


def load_stats_json(path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def minmax_oracle(values: np.ndarray, lo=None, hi=None) -> np.ndarray:
    """(v - min) / (max - min) in float64, 0 for a constant column (scikit-learn's convention)."""
    lo = values.min(axis=0) if lo is None else np.asarray(lo, dtype=np.float64)
    hi = values.max(axis=0) if hi is None else np.asarray(hi, dtype=np.float64)
    rng = hi - lo
    return np.where(rng == 0, 0.0, (values - lo) / np.where(rng == 0, 1.0, rng))


# ---- failures -----------------------------------------------------------------------------------

TMP_RE = re.compile(r"^\..+\.[^.]+\.tmp$")


def temp_leftovers(folder) -> list[str]:
    """Temporary outputs (``.<basename>.XXXX.tmp``) left in a folder."""
    return sorted(n for n in os.listdir(folder) if n.endswith(".tmp") or n.startswith(".") and "tmp" in n)


def assert_failed_cleanly(p: subprocess.CompletedProcess, *, leftovers: Sequence = (), folder=None,
                          names: Sequence[str] = (), line: int | None = None, column: int | None = None,
                          code: int = 1) -> str:
    """Exit code ``code``, exactly one stderr line ``wideann: error: ...`` naming each of ``names``
    (and ``line L, column C`` when given), none of ``leftovers`` exists, no temp file in ``folder``.
    Returns the message (without the prefix)."""
    assert p.returncode == code, f"exit {p.returncode}, expected {code}; stderr:\n{p.stderr}"
    err_lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(err_lines) == 1, f"expected one line on stderr, got {len(err_lines)}:\n{p.stderr}"
    msg = err_lines[0]
    assert msg.startswith("wideann: error: "), msg
    assert "Traceback" not in p.stderr
    for n in names:
        assert os.fspath(n) in msg, f"message does not name {n!r}: {msg}"
    if line is not None:
        want = f"line {line}, column {column}" if column is not None else f"line {line}"
        assert want in msg, f"message should say {want!r}: {msg}"
    for path in leftovers:
        assert not os.path.exists(path), f"{path} was left behind after a failure"
    if folder is not None:
        assert temp_leftovers(folder) == [], f"temporary files left in {folder}: {temp_leftovers(folder)}"
    return msg[len("wideann: error: "):]


def wait_for(pred, timeout: float, interval: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return pred()



def threads(expect: int | None = None, timeout: float = 2.0) -> int:
    """The threads of this process (``/proc/self/task``). With ``expect``: waits up to ``timeout`` s for that
    count, the garbage collector off. A native thread that has been joined can still be listed for a moment while
    the kernel ends it (longer on a busy machine: CI failed on it); whether the thread was stopped is what a test
    asks, and one still running, kept alive or left for the garbage collector, still fails."""
    import gc

    def count() -> int:
        return len(os.listdir("/proc/self/task"))

    if expect is None:
        return count()
    was = gc.isenabled()
    gc.disable()  # (a collection while waiting would stop a thread that only the collector stops)
    try:
        wait_for(lambda: count() == expect, timeout, interval=0.005)
        return count()
    finally:
        if was:
            gc.enable()

# ---- fixtures -----------------------------------------------------------------------------------

@pytest.fixture
def rng(request):
    """A generator seeded from the test's name, so each test is reproducible."""
    seed = sum(map(ord, request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def big_csv(tmp_path_factory) -> Path:
    """A ~400 MB CSV (many copies of a random block) that takes the engine seconds to normalize
    on one thread: input for interrupt tests. Made by repetition so that it is quick to write."""
    folder = tmp_path_factory.mktemp("big")
    path = folder / "big.csv"
    r = np.random.default_rng(7)
    cols = 40
    block = "\n".join(",".join(f"{x:.6f}" for x in row) for row in r.uniform(-1e4, 1e4, (2000, cols))) + "\n"
    blk = block.encode()
    target = 400 * 2**20
    with open(path, "wb") as f:
        f.write((",".join(default_names(cols)) + "\n").encode())
        n = 0
        while n < target:
            f.write(blk)
            n += len(blk)
    yield path
    path.unlink()  # 400 MB: do not keep it among pytest's last three temporary folders


def mounted_tmpfs(tmp_path, size: str, name: str = "tinyfs"):
    """A tmpfs of ``size`` (``"64k"``, ``"2m"``) mounted under ``tmp_path``, for a generator fixture to yield
    from: a full disk on demand; the test is skipped where mounting is not allowed."""
    mnt = tmp_path / name
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", os.fspath(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", os.fspath(mnt)], capture_output=True)


@pytest.fixture
def tiny_fs(tmp_path):
    """A 64 KiB tmpfs (a full disk on demand); skipped where mounting is not allowed."""
    yield from mounted_tmpfs(tmp_path, "64k")


def remount_read_only(mnt) -> None:
    """Make the tmpfs ``mnt`` (:func:`mounted_tmpfs`'s) read-only, as a read-only mount is: nothing may be
    written there, by the superuser neither (EROFS); the test is skipped where remounting is not allowed."""
    r = subprocess.run(["mount", "-o", "remount,ro", os.fspath(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount a tmpfs read-only here: {r.stderr.strip()}")
