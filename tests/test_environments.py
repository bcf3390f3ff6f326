"""The command line and the lessons in the environments users run them in: locales, odd paths, permissions,
the umask, closed or full standard streams.

Real files and the real ``wideann`` program (``python -m wideann``) in subprocesses; nothing is mocked. A
test that needs a write-protected file to be refused drops the superuser's right to write anything
(``capsh``) when it runs as root, and is skipped where it cannot.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import WIDEANN, cli_env, write_csv

ROOT = Path(__file__).resolve().parents[1]

ASCII_LOCALE = {"LC_ALL": "C", "PYTHONUTF8": "0"}
"""The C locale without Python's UTF-8 mode: the locale's encoding is ASCII (as a Latin-1 locale, it cannot
spell every name), and ``open()`` without ``encoding=`` uses it."""


def _sh(script: str, cwd, env=None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else cli_env())


def _wideann() -> str:
    return shlex.join(WIDEANN)


def _table(path, target: str = "y", rows: int = 50) -> Path:
    rng = np.random.default_rng(0)
    x = rng.random((rows, 3))
    return write_csv(path, [list(r) + [float(r @ [1.0, 2.0, 3.0])] for r in x], header=["a", "b", "c", target])


# ---- numbers in messages -------------------------------------------------------------------------------

def _decimal_comma_locale(tmp_path) -> dict | None:
    """``de_DE.UTF-8`` compiled into ``tmp_path`` (``localedef``; the machine may have no locale but C): the
    environment that finds it, or None."""
    if not shutil.which("localedef"):
        return None
    r = subprocess.run(["localedef", "-i", "de_DE", "-f", "UTF-8", str(tmp_path / "de_DE.UTF-8")],
                       capture_output=True, text=True)
    if not (tmp_path / "de_DE.UTF-8").is_dir():
        return None
    env = cli_env(LOCPATH=str(tmp_path), LC_ALL="de_DE.UTF-8")
    check = subprocess.run([sys.executable, "-c", "import locale; locale.setlocale(locale.LC_ALL, ''); "
                            "print(locale.localeconv()['decimal_point'])"], env=env, capture_output=True, text=True)
    return env if check.stdout.strip() == "," else None


def test_numbers_in_the_engines_messages_have_a_dot_in_a_decimal_comma_locale(tmp_path):
    """A program that sets its locale (``locale.setlocale(LC_ALL, "")``, as GUI toolkits and many scripts do)
    got ``3,5e+38`` in a message whose file and line are separated by commas. The outputs never depended on it
    (``std::to_chars``); the messages used ``printf``."""
    env = _decimal_comma_locale(tmp_path)
    if env is None:
        pytest.skip("no decimal-comma locale can be made here (localedef, de_DE)")
    _table(tmp_path / "raw.csv")
    script = f"""
import locale, numpy as np, wideann
locale.setlocale(locale.LC_ALL, "")
assert locale.localeconv()["decimal_point"] == ","
np.save("p.npy", np.array([[3.5e38]], dtype="<f8"))
wideann.Stats(["y"], [0.0], [1.5e308], 1).save("s.json")
try:
    wideann.denormalize("p.npy", "p.csv", stats="s.json")
except wideann.DataError as e:
    print(e)
wideann.normalize("raw.csv", "t.csv")
wideann.denormalize("t.csv", "back.csv", stats="t.stats.json")
write = open("far.csv", "w"); write.write("a,b,c,y\\n100000.5,0,0,0\\n"); write.close()
try:
    wideann.normalize("far.csv", "f.npy", stats="t.stats.json", dtype="float16")
except wideann.DataError as e:
    print(e)
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    denorm, half = r.stdout.splitlines()
    assert "normalized value 3.5e+38 is beyond a double" in denorm, denorm
    assert ", line 2, column 1: normalized value " in half and "," not in half.split("normalized value ")[1].split()[0]
    for name in ("t.csv", "back.csv"):  # (the outputs: a dot, as always)
        body = (tmp_path / name).read_text().splitlines()[1:]
        assert all(len(line.split(",")) == 4 for line in body)
