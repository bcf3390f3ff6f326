"""Fuzzing the engine through its command line, against the sanitized build and the normal one.

    python tests/fuzz/sanitized.py build                   # once: the ASan + UBSan engine
    python tests/fuzz/fuzz_engine.py --seconds 90          # the short run of .ci/run
    python tests/fuzz/fuzz_engine.py --seconds 1800 --seed 7 --report build/fuzz/report.json

Each case writes inputs — CSV files generated or taken from the seed corpus (tests/fuzz/corpus/),
often mutated (random bytes, truncations, huge fields, very long lines, 100,000 columns, quotes, BOMs,
CR/LF mixes, numbers at the edges of double and float16), .npy files with broken headers, stats files
with broken JSON — and runs one command on them (`stats`, `normalize` fitting or applying stats,
`denormalize`, `info`) twice: in a process running the sanitized engine and in one running the
normal install. It checks, for both:

- no sanitizer report, no crash, no Python traceback, no hang;
- exit code 0 or 1; on 1 exactly one line on stderr, ``wideann: error: ...``, naming one of the case's
  files, and nothing left in the output folder (no output, no stats, no temporary file);
- on 0: the outputs are there and readable (a .npy that numpy loads, finite values, a stats file that
  `Stats.load` takes) and, for generated tables that were not mutated, the numbers equal an oracle
  (numpy on the values the text denotes);
- the two builds agree: the same exit code, the same message, the same output bytes. The sanitized
  process also runs with other block sizes, digit readers and float16 conversions than the normal one
  (settings that must not change a byte), rotated during the run.

Commands run in long-lived worker processes (``wideann.cli.main`` in-process, stdout and stderr
captured) so that thousands of cases fit in a minute; a worker that dies (a sanitizer stops it with
exit code 86, or a crash) is reported with its stderr and replaced. A failing case is kept, with its
inputs, the command and what went wrong, under --failures (default build/fuzz/failures); the exit code
is 1 if any case failed. The summary (cases per command, inputs tried, failures) is printed and, with
--report, written as JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = HERE / "corpus"
sys.path.insert(0, str(HERE))

import sanitized  # noqa: E402

CASE_TIMEOUT = 120.0

# ---- the worker: runs CLI commands in-process --------------------------------------------------------


def worker_main() -> None:
    import contextlib
    import io
    import traceback

    from wideann import _native, cli

    out = sys.stdout
    out.write(json.dumps({"ready": True, "sanitized": bool(_native.sanitized), "native": _native.__file__}) + "\n")
    out.flush()
    for line in sys.stdin:
        argv = json.loads(line)["argv"]
        o, e = io.StringIO(), io.StringIO()
        crash = None
        try:
            with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
                rc = cli.main(argv)
        except SystemExit as x:
            rc = x.code if isinstance(x.code, int) else 2
        except BaseException:  # noqa: BLE001 - anything else is what we are looking for
            rc, crash = None, traceback.format_exc()
        out.write(json.dumps({"rc": rc, "stdout": o.getvalue(), "stderr": e.getvalue(), "crash": crash}) + "\n")
        out.flush()


class Worker:
    """A `fuzz_engine.py --worker` process with a given environment."""

    def __init__(self, name: str, env: dict, log_dir: Path):
        self.name, self.env, self.log_dir = name, env, log_dir
        self.proc = None

    def start(self) -> None:
        self.log = open(self.log_dir / f"{self.name}.stderr", "w+b")
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=self.env, cwd=str(ROOT))
        hello = self._read_line(60)
        if hello is None:
            raise SystemExit(f"fuzz: worker {self.name} did not start:\n{self.stderr_text()}")
        self.info = json.loads(hello)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None
            self.log.close()

    def stderr_text(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "backslashreplace")[-20000:]

    def _read_line(self, timeout: float):
        fd = self.proc.stdout.fileno()
        buf = b""
        end = time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            left = end - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None
            buf += chunk
        return buf.decode()

    def run(self, argv: list[str]) -> dict:
        if self.proc is None:
            self.start()
        t0 = time.monotonic()
        try:
            self.proc.stdin.write((json.dumps({"argv": argv}) + "\n").encode())
            self.proc.stdin.flush()
            line = self._read_line(CASE_TIMEOUT)
        except BrokenPipeError:
            line = None
        took = time.monotonic() - t0
        if line is None:
            try:  # the answer never came: the worker died (give it time to exit) or hangs
                self.proc.wait(timeout=10)
                hung = False
            except subprocess.TimeoutExpired:
                hung = True
                self.proc.kill()
                self.proc.wait()
            res = {"rc": None, "stdout": "", "stderr": "", "seconds": took,
                   "crash": (f"hung for over {CASE_TIMEOUT:.0f} s" if hung else
                             f"worker died (exit code {self.proc.returncode})") + "\n" + self.stderr_text()}
            self.stop()
            return res
        res = json.loads(line)
        res["seconds"] = took
        return res


# ---- inputs ------------------------------------------------------------------------------------------

EDGE_NUMBERS = [
    "1.7976931348623157e308", "-1.7976931348623157e308", "1.7976931348623157E+308", "1e308", "-1e308",
    "2.2250738585072014e-308", "2.2250738585072009e-308", "4.9406564584124654e-324", "5e-324", "-5e-324",
    "0", "-0", "0.0", "-0.0", "0e999", "65504", "-65504", "65519.99999999999", "65520", "65536",
    "6.103515625e-05", "6.097555160522461e-05", "5.960464477539063e-08", "2.9802322387695312e-08",
    "2.9802322387695313e-08", "3.4028234663852886e38", "3.4028235677973366e38", "1.401298464324817e-45",
    "7e-46", "9007199254740993", "9007199254740992", "18446744073709551616", "1e22", "1e23", "8.98846567431158e307",
    "123456789012345678901234567890", "0.1", "0.30000000000000004", "1E5", "1e+5", ".5", "5.", "+.5", "-.5e-3",
    "00001", "+0", "1e-400", "1.0000000000000002", "0.99999999999999989", "4503599627370496.5",
]
BAD_TOKENS = ["nan", "NaN", "inf", "-Infinity", "", " ", "abc", "1e", "--1", "0x10", "1.2.3", "1e999", "\"", "\"1",
              "1\"", "''", "1 2", "+", "-", ".", "e5", "١", "1\x00", "\xef\xbb\xbf1"]


def fmt_number(rng: random.Random, v: float, style: str) -> str:
    if style == "repr":
        return repr(v)
    if style == "sci":
        return f"{v:.{rng.randint(0, 17)}e}"
    if style == "fixed":
        return f"{v:.{rng.randint(0, 8)}f}"
    if style == "g":
        return f"{v:.{rng.randint(1, 17)}g}"
    if style == "SCI":
        return f"{v:.{rng.randint(0, 12)}E}"
    return repr(v)


def gen_column(rng: random.Random, rows: int) -> list[str]:
    kind = rng.choice(["uniform", "int", "huge", "tiny", "const", "edge", "half", "mixed", "longdigits"])
    style = rng.choice(["repr", "repr", "sci", "fixed", "g", "SCI"])
    if kind == "uniform":
        a = rng.uniform(-1e3, 1e3)
        vals = [fmt_number(rng, rng.uniform(a, a + rng.choice([1e-6, 1, 1e3])), style) for _ in range(rows)]
    elif kind == "int":
        vals = [str(rng.randint(-10**rng.randint(1, 19), 10**rng.randint(1, 19))) for _ in range(rows)]
    elif kind == "huge":
        vals = [fmt_number(rng, rng.choice([-1, 1]) * rng.uniform(1e300, 1.7976931348623157e308), style)
                for _ in range(rows)]
    elif kind == "tiny":
        vals = [fmt_number(rng, rng.uniform(-1e-300, 1e-300) * rng.choice([1, 1e-20]), style) for _ in range(rows)]
    elif kind == "const":
        c = fmt_number(rng, rng.uniform(-10, 10), style)
        vals = [c] * rows
    elif kind == "edge":
        vals = [rng.choice(EDGE_NUMBERS) for _ in range(rows)]
    elif kind == "half":  # around float16's limits, in a column whose range is [0, 1] once fitted
        vals = ["0", "1"] + [rng.choice(["6.103515625e-05", "6.097555160522461e-05", "5.960464477539063e-08",
                                         "2.9802322387695312e-08", "0.000244140625", "0.99951171875",
                                         "0.999755859375", "0.9997558593750001", repr(rng.random()),
                                         repr(rng.random() * 1e-5)]) for _ in range(rows)]
        vals = vals[:rows]
    elif kind == "longdigits":
        vals = ["0." + "".join(rng.choice("0123456789") for _ in range(rng.randint(20, 400))) for _ in range(rows)]
    else:
        vals = [rng.choice(EDGE_NUMBERS) if rng.random() < 0.2
                else fmt_number(rng, rng.gauss(0, 10 ** rng.randint(-5, 5)), style)
                for _ in range(rows)]
    if rng.random() < 0.2:  # decorate: quotes, spaces, a leading '+'
        deco = rng.choice(['"{}"', " {}", "{} ", ' "{}" ', "+{}"])
        vals = [deco.format(v) if not (deco == "+{}" and v.startswith(("-", "+"))) else v for v in vals]
    return vals


def gen_table(rng: random.Random, cols: int | None = None) -> dict:
    """A CSV table: its bytes, delimiter, width, header names (or None) and the values (for the oracle)."""
    r = rng.random()
    if cols is None:
        cols = rng.choice([1, 2, 3, 4, 5, 8, 13, 40]) if r < 0.9 else rng.choice([200, 3001, 100_000])
    rows = rng.choice([1, 2, 3, 5, 10, 50, 200]) if cols < 1000 else rng.choice([1, 2, 3])
    if cols < 50 and rng.random() < 0.05:
        rows = 5000
    delim = rng.choice([",", ",", ",", ",", "\t", ";"])
    columns = [gen_column(rng, rows) for _ in range(cols)] if cols < 1000 else \
        [[repr(rng.uniform(-1, 1)) for _ in range(rows)] for _ in range(cols)]
    header = None
    lines = []
    if rng.random() < 0.6:
        style = rng.choice(["plain", "quoted", "unicode", "empty", "delim"])
        header = []
        for j in range(cols):
            name = f"c{j}" if j < cols - 1 else "y"
            if style == "unicode" and j % 3 == 0:
                name = f"température_{j}"
            if style == "empty" and j % 4 == 1:
                name = ""
            header.append(name)
        cells = list(header)
        if style == "quoted":
            cells = [f'"{n}"' for n in header]
        if style == "delim" and cols > 1:
            header[0] = f"a{delim}b"
            cells[0] = f'"a{delim}b"'
        lines.append(delim.join(cells))
    for i in range(rows):
        lines.append(delim.join(c[i] for c in columns))
    nl = rng.choice(["\n", "\n", "\r\n", "mix"])
    if nl == "mix":
        text = "".join(ln + rng.choice(["\n", "\r\n"]) for ln in lines)
    else:
        text = nl.join(lines) + (nl if rng.random() < 0.9 else "")
    blank = rng.random() < 0.1
    if blank:  # blank lines (in a one-column table, a missing value: refused)
        parts = text.split("\n")
        for _ in range(rng.randint(1, 3)):
            parts.insert(rng.randint(0, len(parts)), rng.choice(["", "\r"]))
        text = "\n".join(parts)
    data = text.encode("utf-8")
    if rng.random() < 0.1:
        data = b"\xef\xbb\xbf" + data
    values = None
    try:  # the values the text denotes, when every field is a plain number (for the oracle)
        values = [[float(c[i].strip().strip('"').strip()) for c in columns] for i in range(rows)]
        if not all(math.isfinite(v) for row in values for v in row):
            values = None
    except ValueError:
        values = None
    if blank and cols == 1:
        values = None
    if header is None and rows and all(c[0].strip().strip('"').strip() == str(j)
                                                     for j, c in enumerate(columns)):
        values = None  # a first line 0, 1, 2, ...: --header auto refuses it (pandas' names, or data?)
    return {"data": data, "delim": delim, "cols": cols, "header": header, "values": values}


SPECIAL = [b'"', b"\r", b"\n", b"\r\n", b"\x00", b",", b"\t", b"\xef\xbb\xbf", b"\xff", b"\x89PNG", b"e", b"-",
           b".", b" ", b"9" * 30, b"\"\"", b"\n\n", b"1e308", b"nan"]


def mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
        op = rng.randrange(11)
        n = len(data)
        pos = rng.randint(0, n)
        if op == 0 and n:  # flip bytes
            b = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(n)] = rng.randrange(256)
            data = bytes(b)
        elif op == 1:
            data = data[:pos] + rng.choice(SPECIAL) + data[pos:]
        elif op == 2:
            data = data[:pos] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[pos:]
        elif op == 3:
            data = data[:pos] + data[pos + rng.randint(1, 64):]
        elif op == 4:
            data = data[:pos]  # truncate
        elif op == 5 and n:  # duplicate a range
            a = rng.randrange(n)
            data = data[:pos] + data[a:a + rng.randint(1, 200)] + data[pos:]
        elif op == 6:  # a huge field
            big = rng.choice([b"9" * rng.randint(1000, 2_000_000), b"0." + b"0" * rng.randint(1000, 500_000) + b"1",
                              b'"' + b" " * rng.randint(1000, 100_000) + b'1"', b"1e" + b"0" * 100_000 + b"5"])
            data = data[:pos] + big + data[pos:]
        elif op == 7:  # a very long line
            line = b",".join([b"1"] * rng.randint(1000, 300_000)) + b"\n"
            nl = data.find(b"\n", pos)
            cut = nl + 1 if nl >= 0 else n
            data = data[:cut] + line + data[cut:]
        elif op == 8:  # swap line ends
            data = data.replace(b"\r\n", b"\n") if rng.random() < 0.5 else data.replace(b"\n", b"\r\n")
        elif op == 9:  # a bad token in a field
            data = data[:pos] + rng.choice(BAD_TOKENS).encode() + data[pos:]
        else:  # an edge number somewhere
            data = data[:pos] + rng.choice(EDGE_NUMBERS).encode() + data[pos:]
    return data


def gen_npy(rng: random.Random, cols: int | None = None) -> tuple[bytes, bool]:
    """A .npy file (returns its bytes and whether it was broken on purpose)."""
    dtype = rng.choice(["<f4", "<f4", "<f2", "<f8", "=f4", ">f4", "<i4", "|u1", "<c8", "|O", "<U3"])
    if cols is None:
        cols = rng.choice([1, 1, 2, 3, 7])
    rows = rng.choice([0, 1, 2, 5, 100, 3000])
    shape = (rows,) if cols == 1 and rng.random() < 0.5 else (rows, cols)
    if rng.random() < 0.05:
        shape = rng.choice([(), (2, 2, 2), (rows, 0), (0, 0)])
    broken = False
    shape_text = repr(shape)
    fortran = "False"
    if rng.random() < 0.3:
        broken = True
        shape_text = rng.choice(["(1,", "(-1, 2)", "(99999999999999999999999, 1)", "(2, 3, )", "()", "(a, b)",
                                 "(3,2)", "(18446744073709551615, 18446744073709551615)", "(4611686018427387904, 4)",
                                 "(1e3, 2)", "(2, -3)", "[2, 3]", "(, )", "(2,3", "((2, 3))", "(0x10, 1)",
                                 f"({rows}, {cols}, 1)", f"({rows + 1}, {cols})", f"({rows}, {cols + 1})"])
    if rng.random() < 0.05:
        fortran = rng.choice(["True", "1", "false", "None"])
        broken = True
    entries = [f"'descr': '{dtype}'", f"'fortran_order': {fortran}", f"'shape': {shape_text}"]
    if rng.random() < 0.1:
        broken = True
        rng.shuffle(entries)
        if rng.random() < 0.5:
            entries.pop(rng.randrange(len(entries)))
        if rng.random() < 0.3:
            entries.append(rng.choice(["'descr': '<f8'", "'extra': 1", "'shape': ('x',)"]))
    header = "{" + ", ".join(entries) + ", }"
    version = 1 if rng.random() < 0.9 else rng.choice([2, 3, 0, 9])
    pre = 10 if version == 1 else 12
    total = (pre + len(header) + 1 + 63) // 64 * 64
    header = header + " " * (total - pre - len(header) - 1) + "\n"
    hlen = len(header)
    if rng.random() < 0.05:
        hlen = rng.choice([0, 1, hlen - 1, hlen + 7, 65535, 2**24 + 1, 2**32 - 1])
        broken = True
    head = b"\x93NUMPY" + bytes([version, 0]) + (struct.pack("<H", hlen & 0xFFFF) if version == 1
                                                  else struct.pack("<I", hlen))
    n = max(0, math.prod(shape)) if shape else 1
    item = {"<f4": 4, "=f4": 4, ">f4": 4, "<f2": 2, "<f8": 8, "<i4": 4, "|u1": 1, "<c8": 8, "|O": 8, "<U3": 12}[dtype]
    if dtype in ("<f4", "=f4", "<f2", "<f8", ">f4"):
        fmt = {"<f4": "<f", "=f4": "<f", ">f4": ">f", "<f2": "<e", "<f8": "<d"}[dtype]
        pick = rng.choice(["unit", "wide", "edge"])
        vals = []
        for _ in range(min(n, 200_000)):
            if pick == "unit":
                vals.append(rng.uniform(-0.2, 1.2))
            elif pick == "wide":
                vals.append(rng.uniform(-1e4, 1e4))
            else:
                vals.append(rng.choice([0.0, 1.0, -0.0, 65504.0, -65504.0, 6e-8, 3e38, float("inf"), float("nan"),
                                        1e-30, 0.5]))
        body = b""
        for v in vals:
            try:
                body += struct.pack(fmt, v)
            except (OverflowError, struct.error):
                body += struct.pack(fmt, float("inf"))
    else:
        body = bytes(rng.randrange(256) for _ in range(min(n * item, 1 << 16)))
    if rng.random() < 0.1:
        body = body[:rng.randint(0, len(body))]
        broken = True
    return head + header.encode() + body, broken


def gen_stats(rng: random.Random, names: list[str], values=None) -> bytes:
    """A stats file for a table of these columns: fitted on values, or ranges chosen to push the
    normalized values to the edges (huge, tiny, constant, float16's limits)."""
    mins, maxs = [], []
    edges = rng.random() < 0.4  # otherwise ranges that most values fit, so that most such runs succeed
    for j in range(len(names)):
        if edges:
            kind = rng.choice(["fit", "unit", "tiny", "const", "huge", "far"]) if values else \
                rng.choice(["unit", "tiny", "const", "huge", "far"])
        else:
            kind = "fit" if values else "unit"
        if kind == "fit":
            col = [row[j] for row in values]
            lo, hi = min(col), max(col)
        elif kind == "unit":
            lo, hi = 0.0, 1.0
        elif kind == "tiny":
            lo = rng.uniform(-1, 1)
            hi = lo + rng.choice([1e-300, 5e-324, 1e-12, 1e-7])
        elif kind == "const":
            lo = hi = rng.uniform(-10, 10)
        elif kind == "huge":
            lo, hi = -1.7976931348623157e308, 1.7976931348623157e308
        else:
            lo, hi = 1e6, 1e6 + rng.choice([1e-3, 1.0])
        mins.append(lo)
        maxs.append(hi)
    d = {"format": "wideann-stats", "version": 1, "columns": names, "min": mins, "max": maxs,
         "count": [5] * len(names), "n_rows": 5, "sources": []}
    r = rng.random()
    if r < 0.1:
        d["version"] = rng.choice([2, 99, 0, "1", 1.0, None, True])
    elif r < 0.2:
        key = rng.choice(list(d))
        d[key] = rng.choice([None, "x", 1, -1, [], [1], ["a"], {"a": 1}, 1.5, [True] * len(names)])
    text = json.dumps(d).encode()
    if rng.random() < 0.15:
        text = mutate(rng, text)
    return text


# ---- cases -------------------------------------------------------------------------------------------

def corpus_files(kind: str) -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.suffix == kind) if CORPUS.is_dir() else []


def default_names(n: int) -> list[str]:
    return [f"x{i}" for i in range(1, n)] + ["y"]


def make_case(rng: random.Random, inp: Path) -> dict:
    """Writes a case's inputs into `inp`; returns its command (OUT stands for the output folder),
    the outputs a success must leave and what the oracle needs."""
    command = rng.choice(["stats", "normalize", "normalize", "apply", "apply", "denormalize", "info"])
    case = {"command": command, "files": [], "oracle": None, "mutated": False}

    def write(name: str | bytes, data: bytes) -> str:
        p = os.path.join(os.fsencode(inp), name if isinstance(name, bytes) else name.encode())
        with open(p, "wb") as f:
            f.write(data)
        case["files"].append(os.fsdecode(p))
        return os.fsdecode(p)

    def csv_input(name="in.csv", cols=None):
        """A generated table (maybe mutated), a corpus file (maybe mutated) or random bytes."""
        r = rng.random()
        if r < 0.7:
            t = gen_table(rng, cols)
        elif r < 0.92 and corpus_files(".csv"):
            data = rng.choice(corpus_files(".csv")).read_bytes()
            t = {"data": data, "delim": ",", "cols": None, "header": None, "values": None}
        else:
            t = {"data": bytes(rng.randrange(256) for _ in range(rng.randint(0, 3000))), "delim": ",",
                 "cols": None, "header": None, "values": None}
        if rng.random() < 0.45:
            t["data"] = mutate(rng, t["data"])
            t["values"] = None
            case["mutated"] = True
        if rng.random() < 0.03:
            name = name.encode().replace(b"in", b"in\xff")
        t["path"] = write(name, t["data"])
        return t

    opts = []
    if command in ("stats", "normalize", "apply"):
        n_inputs = 1 if rng.random() < 0.85 else rng.randint(2, 3)
        first = csv_input("in.csv")
        tables = [first] + [csv_input(f"in{i}.csv", first["cols"]) for i in range(1, n_inputs)]
        if first["delim"] != ",":
            opts += ["--delimiter", first["delim"]]
        if rng.random() < 0.2:
            opts += ["--header", rng.choice(["yes", "no", "auto"])]
        opts += ["--threads", str(rng.choice([1, 1, 2, 3]))]
        paths = [t["path"] for t in tables]
        values = None
        if all(t["values"] is not None for t in tables) and "--header" not in opts:
            values = [row for t in tables for row in t["values"]]
            if first["header"] is None and any(t["header"] for t in tables[1:]):
                values = None  # (a later input's header after a first one without: refused)
        if command == "stats":
            case["argv"] = ["stats", *paths, "-o", "OUT/s.json", *opts]
            case["outputs"] = ["s.json"]
            case["oracle"] = {"kind": "stats", "values": values} if values else None
        elif command == "normalize":
            ext = rng.choice([".npy", ".npy", ".csv"])
            dtype = rng.choice(["float32", "float16"])
            extra = ["--dtype", dtype] + (["--clip"] if rng.random() < 0.1 else [])
            case["outputs"] = [f"t{ext}"]
            if rng.random() < 0.2:
                extra += ["--stats-out", "OUT/fitted.json"]
                case["outputs"].append("fitted.json")
            else:
                case["outputs"].append("t.stats.json")
            case["argv"] = ["normalize", *paths, "-o", f"OUT/t{ext}", *extra, *opts]
            if values and ext == ".npy":
                case["oracle"] = {"kind": "normalize", "values": values, "dtype": dtype}
        else:
            cols = first["cols"]
            if cols is None:  # width of the corpus file's first line, roughly
                cols = first["data"].split(b"\n", 1)[0].count(first["delim"].encode()) + 1
            names = first["header"] if first["header"] and "--header" not in opts else default_names(cols)
            if first["header"] and rng.random() < 0.05:
                names = list(reversed(names))
            stats = write("s.json", gen_stats(rng, names, values))
            ext = rng.choice([".npy", ".npy", ".csv"])
            extra = ["--dtype", rng.choice(["float32", "float16"])] + (["--clip"] if rng.random() < 0.2 else [])
            case["outputs"] = [f"t{ext}"]
            if rng.random() < 0.2:
                extra += ["--stats-out", "OUT/applied.json"]
                case["outputs"].append("applied.json")
            case["argv"] = ["normalize", *paths, "-o", f"OUT/t{ext}", "--stats", stats, *extra, *opts]
    elif command == "denormalize":
        cols = rng.choice([1, 2, 3, 7])
        stats_cols = cols if rng.random() < 0.7 else rng.choice([1, 3, 7])
        stats = write("s.json", gen_stats(rng, default_names(stats_cols)))
        if rng.random() < 0.6:
            data, broken = gen_npy(rng, cols)
            case["mutated"] = broken
            src = write("p.npy", data)
        else:
            t = gen_table(rng, cols)
            if rng.random() < 0.3:
                t["data"] = mutate(rng, t["data"])
                case["mutated"] = True
            src = write("p.csv", t["data"])
            if t["delim"] != ",":
                opts += ["--delimiter", t["delim"]]
        if rng.random() < 0.2:
            opts += ["--columns", *[rng.choice(["y", "x1", "0", "-1", "5", "nope"]) for _ in range(cols)]]
        opts += ["--threads", str(rng.choice([1, 2, 3]))]
        case["argv"] = ["denormalize", src, "-o", "OUT/b.csv", "--stats", stats, *opts]
        case["outputs"] = ["b.csv"]
    else:  # info
        r = rng.random()
        if r < 0.35:
            data, _ = gen_npy(rng)
            path = write("i.npy", data)
        elif r < 0.6:
            path = write("i.json", gen_stats(rng, default_names(rng.randint(1, 5))))
        elif r < 0.9:
            path = csv_input("i.csv")["path"]
        else:
            path = write(rng.choice(["i.bin", "i.json", "i.npy"]), mutate(rng, rng.choice(
                [b"\x93NUMPY\x01\x00", b'{"format": "wideann-stats"}', b"a,b\n1,2\n"])))
        case["argv"] = ["info", path]
        case["outputs"] = []
    return case


# ---- checks ------------------------------------------------------------------------------------------

def _printable_name(path: str) -> str:
    from wideann.cli import printable

    return printable(os.path.basename(path))


def check_result(case: dict, res: dict, out_dir: Path) -> list[str]:
    problems = []
    if res["crash"]:
        return [f"crash: {res['crash'][-4000:]}"]
    rc = res["rc"]
    if rc not in (0, 1):
        return [f"exit code {rc}: {res['stderr'][-2000:]}"]
    left = sorted(os.listdir(out_dir))
    if rc == 1:
        lines = [ln for ln in res["stderr"].splitlines() if ln.strip()]  # (any Unicode line break)
        if len(lines) != 1 or not lines[0].startswith("wideann: error: "):
            problems.append(f"expected one line 'wideann: error: ...' on stderr, got: {res['stderr'][-2000:]!r}")
        else:
            names = [_printable_name(f) for f in case["files"]] + case["outputs"]
            if not any(n in lines[0] for n in names):
                problems.append(f"the message names none of the case's files: {lines[0]}")
        if left:
            problems.append(f"left in the output folder after a failure: {left}")
        return problems
    noise = [ln for ln in res["stderr"].splitlines() if ln.strip()]
    if len(noise) > 1 or any("Warning" in ln or "Traceback" in ln for ln in noise):
        problems.append(f"more than the summary line on stderr after success: {res['stderr'][-2000:]!r}")
    missing = [o for o in case["outputs"] if o not in left]
    extra = [n for n in left if n not in case["outputs"]]
    if missing or extra:
        problems.append(f"after success, missing {missing}, unexpected {extra}")
        return problems
    for name in case["outputs"]:
        problems += check_output(out_dir / name)
    if case["oracle"] and not problems:
        problems += check_oracle(case, out_dir)
    return problems


def check_output(path: Path) -> list[str]:
    import numpy as np

    from wideann import Stats

    try:
        if path.suffix == ".npy":
            a = np.load(path)
            if a.dtype not in (np.float32, np.float16) or a.ndim != 2:
                return [f"{path.name}: dtype {a.dtype}, {a.ndim} dimensions"]
            if not np.isfinite(a).all():
                return [f"{path.name}: non-finite values written"]
        elif path.suffix == ".csv":
            lines = path.read_bytes().decode("utf-8").split("\n")[:-1]  # (a quoted header name may hold a CR)
            if len(lines) < 2:
                return [f"{path.name}: {len(lines)} lines"]
            vals = [float(x) for ln in lines[1:] for x in ln.split(",")]
            if not all(math.isfinite(v) for v in vals):
                return [f"{path.name}: non-finite values written"]
        elif path.suffix == ".json":
            st = Stats.load(path)
            if not (all(map(math.isfinite, st._min)) and all(map(math.isfinite, st._max))):
                return [f"{path.name}: non-finite stats"]
    except Exception as e:  # noqa: BLE001
        return [f"{path.name}: unreadable output: {type(e).__name__}: {e}"]
    return []


def check_oracle(case: dict, out_dir: Path) -> list[str]:
    import numpy as np

    o = case["oracle"]
    v = np.array(o["values"], dtype=np.float64)
    lo, hi = (v + 0.0).min(axis=0), (v + 0.0).max(axis=0)  # (-0.0 counts as 0, as in the engine)
    if o["kind"] == "stats":
        d = json.loads((out_dir / "s.json").read_text())
        if d["min"] != lo.tolist() or d["max"] != hi.tolist() or d["n_rows"] != len(v):
            return ["stats differ from numpy's min, max and row count of the values the text denotes"]
        return []
    with np.errstate(over="ignore", invalid="ignore"):
        rng_ = hi - lo
        wide = ~np.isfinite(rng_)
        x = np.where(wide, (v * 0.5 - lo * 0.5) / np.where(wide, hi * 0.5 - lo * 0.5, 1),
                     (v - lo) / np.where(rng_ == 0, 1, rng_))
        x = np.where(rng_ == 0, 0.0, x) + 0.0
    want = x.astype(np.float32 if o["dtype"] == "float32" else np.float16)
    got = np.load(out_dir / "t.npy")
    if got.shape != want.shape or got.tobytes() != want.tobytes():
        bad = np.argwhere(got != want)[:3].tolist() if got.shape == want.shape else "shape"
        return [f"t.npy differs from the oracle ({o['dtype']}) at {bad}"]
    return []


def compare(case: dict, a: dict, b: dict, out_a: Path, out_b: Path) -> list[str]:
    if a["crash"] or b["crash"]:
        return []
    if a["rc"] != b["rc"]:
        return [f"exit codes differ: normal {a['rc']}, sanitized {b['rc']} "
                f"({a['stderr'][-300:]!r} / {b['stderr'][-300:]!r})"]
    if a["rc"] == 1:
        ma, mb = a["stderr"].replace(str(out_a), "OUT"), b["stderr"].replace(str(out_b), "OUT")
        return [] if ma == mb else [f"messages differ: {ma!r} / {mb!r}"]
    if a["rc"] == 0:
        for name in case["outputs"]:
            pa, pb = out_a / name, out_b / name
            if pa.exists() and pb.exists() and pa.read_bytes() != pb.read_bytes():
                return [f"{name}: the builds wrote different bytes"]
        if a["stdout"].replace(str(out_a), "OUT") != b["stdout"].replace(str(out_b), "OUT"):
            return ["stdout differs between the builds"]
    return []


# ---- the run -----------------------------------------------------------------------------------------

SANITIZED_SETTINGS = [  # settings that must not change a byte of any output
    {},
    {"WIDEANN_BLOCK_SIZE": "64"},
    {"WIDEANN_BLOCK_SIZE": "97", "WIDEANN_DIGIT_READER": "branch-free"},
    {"WIDEANN_DIGIT_READER": "branch-free"},
    {"WIDEANN_BLOCK_SIZE": "1000", "WIDEANN_DIGIT_READER": "loop", "WIDEANN_HALF_CONVERSION": "software"},
    {"WIDEANN_HALF_CONVERSION": "software"},
    {"WIDEANN_BLOCK_SIZE": "65536", "WIDEANN_HALF_CONVERSION": "f16c"},
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=90, help="how long to run (default 90)")
    ap.add_argument("--cases", type=int, default=0, help="stop after this many cases (0: no limit)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock; printed)")
    ap.add_argument("--failures", default=str(ROOT / "build" / "fuzz" / "failures"),
                    help="where failing cases are kept")
    ap.add_argument("--report", help="write the summary as JSON here")
    ap.add_argument("--no-sanitized", action="store_true",
                    help="run the normal build only (where no sanitized build can be made)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main()
        return 0

    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="wideann-fuzz-"))
    failures = Path(args.failures)
    normal_env = {k: v for k, v in os.environ.items() if not k.startswith("WIDEANN_")}
    workers = {"normal": Worker("normal", normal_env, work)}
    if not args.no_sanitized:
        sanitized.ready()  # (as `sanitized.py run` does: a module added to the package since `build` is there too)
        workers["sanitized"] = Worker("sanitized", sanitized.env(normal_env), work)
    for w in workers.values():
        w.start()
    if workers["normal"].info["sanitized"]:
        raise SystemExit("fuzz: the normal worker imports the sanitized engine")
    if "sanitized" in workers and not workers["sanitized"].info["sanitized"]:
        raise SystemExit("fuzz: the sanitized worker imports the normal engine")

    summary = {"seed": seed, "cases": 0, "by_command": {}, "accepted": 0, "refused": 0, "input_bytes": 0,
               "failures": [], "sanitized": "sanitized" in workers, "settings_used": []}
    t_end = time.monotonic() + args.seconds
    setting_every = 150
    print(f"fuzz: seed {seed}, {args.seconds:.0f} s, workers: {', '.join(workers)}", flush=True)
    try:
        while time.monotonic() < t_end and (not args.cases or summary["cases"] < args.cases):
            i = summary["cases"]
            if "sanitized" in workers and i % setting_every == 0:
                setting = SANITIZED_SETTINGS[(i // setting_every) % len(SANITIZED_SETTINGS)]
                w = workers["sanitized"]
                w.stop()
                w.env = {**sanitized.env(normal_env), **setting}
                w.start()
                summary["settings_used"].append(setting)
            case_dir = work / f"case{i}"
            inp = case_dir / "in"
            inp.mkdir(parents=True)
            case = make_case(rng, inp)
            summary["input_bytes"] += sum(os.path.getsize(f) for f in case["files"])
            results, outs = {}, {}
            for name, w in workers.items():
                out = case_dir / f"out-{name}"
                out.mkdir()
                argv = [a.replace("OUT/", str(out) + "/") if a.startswith("OUT/") else a for a in case["argv"]]
                results[name] = w.run(argv)
                outs[name] = out
            problems = []
            stray = sorted(set(os.listdir(inp)) - {os.path.basename(f) for f in case["files"]})
            if stray:
                problems.append(f"files appeared beside the inputs: {stray}")
            for name in workers:
                problems += [f"[{name}] {p}" for p in check_result(case, results[name], outs[name])]
            if "sanitized" in workers:
                problems += compare(case, results["normal"], results["sanitized"], outs["normal"], outs["sanitized"])
            summary["cases"] += 1
            c = summary["by_command"].setdefault(case["command"], {"cases": 0, "accepted": 0})
            c["cases"] += 1
            if results["normal"]["rc"] == 0:
                summary["accepted"] += 1
                c["accepted"] += 1
            else:
                summary["refused"] += 1
            if problems:
                keep = failures / f"seed{seed}-case{i}"
                shutil.rmtree(keep, ignore_errors=True)
                shutil.copytree(case_dir, keep)
                settings = workers["sanitized"].env if "sanitized" in workers else {}
                (keep / "failure.json").write_text(json.dumps({
                    "argv": case["argv"], "problems": problems, "mutated": case["mutated"],
                    "sanitized_settings": {k: v for k, v in settings.items() if k.startswith("WIDEANN_")},
                    "results": results}, indent=1, default=str))
                summary["failures"].append({"case": str(keep), "argv": case["argv"],
                                            "problems": [p[:500] for p in problems]})
                print(f"fuzz: FAILED case {i} ({' '.join(case['argv'][:1])}): {problems[0][:300]}\n  kept in {keep}",
                      flush=True)
            shutil.rmtree(case_dir, ignore_errors=True)
    finally:
        for w in workers.values():
            w.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary["seconds"] = args.seconds
    print(f"fuzz: {summary['cases']} cases ({summary['accepted']} accepted, {summary['refused']} refused), "
          f"{summary['input_bytes'] / 1e6:.1f} MB of input; by command: "
          + ", ".join(f"{k} {v['cases']}" for k, v in sorted(summary["by_command"].items()))
          + f"; {len(summary['failures'])} failing", flush=True)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(summary, indent=1))
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
