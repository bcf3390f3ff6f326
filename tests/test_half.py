"""float16 output: the hardware conversion (F16C) and the software one give the same bytes, which are
the double rounded once to the nearest half (numpy's conversion), subnormals included; a value beyond
65504 is refused by both."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from wideann._native_checked import _native
from conftest import assert_failed_cleanly, cli_env, default_names, ok, read_csv_table, run_cli, stats_file



def _cpu_has_f16c() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        return False
    return " f16c" in flags and " avx" in flags


no_f16c = pytest.mark.skipif(not _cpu_has_f16c(), reason="this CPU has no F16C")
PATHS = ["software", pytest.param("f16c", marks=no_f16c)]


def test_hardware_path_is_taken_where_the_cpu_has_f16c():
    assert _native.half_conversion() == ("f16c" if _cpu_has_f16c() else "software")
    probe = "import wideann._native as n; print(n.half_conversion())"
    out = subprocess.run([sys.executable, "-c", probe], env=cli_env(WIDEANN_HALF_CONVERSION="software"),
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "software"


def tricky_values(rng: np.random.Generator) -> np.ndarray:
    """Doubles where rounding to half is easy to get wrong."""
    h = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)  # every finite half >= 0
    mid = (h[:-1] + h[1:]) / 2  # ties: to even
    v = [mid, np.nextafter(mid, np.inf), np.nextafter(mid, -np.inf),
         # just off a tie by less than a float's precision: rounding to float first would land on the
         # tie and then round the wrong way (double rounding)
         mid * (1 + 2.0**-40), mid * (1 - 2.0**-40),
         h,
         rng.uniform(0, 1, 3000), 10 ** rng.uniform(-12, 4.8, 3000),
         np.array([65504.0, 65519.99999999999, 6.103515625e-05, 6.097555160522461e-05, 5.960464477539063e-08,
                   2.9802322387695312e-08, 2.9802322387695313e-08, 2.980232238769531e-08, 1e-30, 5e-324,
                   1e-45, 0.0])]
    v = np.concatenate(v)
    v = v[v < 65520]
    v = np.concatenate([v, -v])
    cols = 64
    return v[: len(v) // cols * cols].reshape(-1, cols)


@pytest.fixture(scope="module")
def unit_stats_table(tmp_path_factory):
    """A table of tricky values and stats of range [0, 1] per column, so that the normalized value is
    the value itself: what is written is exactly the conversion of that double."""
    d = tmp_path_factory.mktemp("half")
    vals = tricky_values(np.random.default_rng(0))
    with open(d / "v.csv", "w") as f:
        for row in vals:
            f.write(",".join(repr(float(x)) for x in row) + "\n")
    stats_file(d / "s.json", vals.shape[1])  # range [0, 1]: the normalized value is the value itself
    return d, vals


@pytest.mark.parametrize("path", PATHS)
def test_float16_bytes_equal_correct_rounding(tmp_path, unit_stats_table, path):
    d, vals = unit_stats_table
    env = cli_env(WIDEANN_HALF_CONVERSION=path)
    ok("normalize", d / "v.csv", "-o", tmp_path / "t.npy", "--stats", d / "s.json", "--dtype", "float16",
       "--header", "no", "--threads", "2", env=env)
    got = np.load(tmp_path / "t.npy")
    want = (vals + 0.0).astype(np.float16)  # numpy rounds the double once, to nearest even (-0 is written 0)
    assert got.dtype == np.float16 and got.shape == want.shape
    bad = np.argwhere(got.view(np.uint16) != want.view(np.uint16))
    assert bad.size == 0, f"{len(bad)} values differ, e.g. {vals[tuple(bad[0])]!r}"
    # the CSV output holds the same halves, as the shortest text of their float value
    ok("normalize", d / "v.csv", "-o", tmp_path / "t.csv", "--stats", d / "s.json", "--dtype", "float16",
       "--header", "no", env=env)
    _, text = read_csv_table(tmp_path / "t.csv")
    np.testing.assert_array_equal(text.astype(np.float16).view(np.uint16), want.view(np.uint16))


@no_f16c
def test_both_paths_write_the_same_bytes_for_a_fitted_table(tmp_path):
    """Fit mode on a generated table (values in [0, 1] after normalization): byte-identical files."""
    ok("make-data", "-o", tmp_path / "d.csv", "--rows", "3000", "--cols", "37", "--seed", "4")
    outs = {}
    for path in ("software", "f16c"):
        ok("normalize", tmp_path / "d.csv", "-o", tmp_path / f"{path}.npy", "--dtype", "float16",
           env=cli_env(WIDEANN_HALF_CONVERSION=path))
        outs[path] = (tmp_path / f"{path}.npy").read_bytes()
    assert outs["software"] == outs["f16c"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("column", [3, 9])
@pytest.mark.parametrize("value, fits", [("65504", True), ("65519.99999999999", True), ("65520", False),
                                         ("-65520", False), ("1e300", False)])
def test_beyond_65504_is_refused_by_both_paths(tmp_path, path, column, value, fits):
    """In a row of 9 the hardware path converts columns 1-8 together and the 9th on its own."""
    cols = 9
    names = default_names(cols)
    stats_file(tmp_path / "s.json", cols)
    row = ["0.25"] * cols
    row[column - 1] = value
    inp = tmp_path / "in.csv"
    inp.write_text(",".join(names) + "\n" + ",".join(["0.5"] * cols) + "\n" + ",".join(row) + "\n")
    out = tmp_path / "t.npy"
    p = run_cli("normalize", inp, "-o", out, "--stats", tmp_path / "s.json", "--dtype", "float16",
                env=cli_env(WIDEANN_HALF_CONVERSION=path))
    if fits:
        assert p.returncode == 0, p.stderr
        assert abs(float(np.load(out)[1, column - 1])) == 65504
    else:
        msg = assert_failed_cleanly(p, leftovers=[out], folder=tmp_path, names=["in.csv"], line=3, column=column)
        assert "does not fit float16" in msg and msg.endswith("; use --dtype float32"), msg  # (the option)


@pytest.mark.parametrize("path", PATHS)
def test_overflow_in_a_wide_row_names_its_column(tmp_path, path):
    """In a row converted 8 values at a time, the first column that overflows is the one named."""
    cols = 21
    names = default_names(cols)
    stats_file(tmp_path / "s.json", cols)
    row = ["0.5"] * cols
    row[13], row[17] = "70000", "80000"
    (tmp_path / "in.csv").write_text(",".join(names) + "\n" + ",".join(["0"] * cols) + "\n" + ",".join(row) + "\n")
    p = run_cli("normalize", tmp_path / "in.csv", "-o", tmp_path / "t.npy", "--stats", tmp_path / "s.json",
                "--dtype", "float16", env=cli_env(WIDEANN_HALF_CONVERSION=path))
    msg = assert_failed_cleanly(p, leftovers=[tmp_path / "t.npy"], names=["in.csv"], line=3, column=14)
    assert "70000" in msg


def test_the_python_api_advises_its_keyword_argument_not_the_command_lines_option(tmp_path):
    # the advice for a value beyond float16 names how to ask for float32 where the caller is: normalize's
    # keyword argument from Python (it named the option, --dtype float32, from everywhere)
    import wideann

    cols = 3
    stats_file(tmp_path / "s.json", cols)
    inp = tmp_path / "in.csv"
    inp.write_text(",".join(default_names(cols)) + "\n0.5,70000,0.5\n")
    with pytest.raises(wideann.DataError) as e:
        wideann.normalize([inp], tmp_path / "t.npy", stats=tmp_path / "s.json", dtype="float16")
    assert str(e.value) == (f"{inp}, line 2, column 2: normalized value 70000 does not fit float16 (at most 65504); "
                            'use dtype="float32"')
    assert not (tmp_path / "t.npy").exists()
