"""Bytes that are not UTF-8 (or not printable) in the input: in a field, a header name, a file name or
a stats file. Every message that quotes them reaches Python intact and the command line prints the
usual one line naming file, line and column, with the odd bytes shown as ``\\xNN``."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

import wideann
from conftest import assert_failed_cleanly, ok, run_cli

HEADER = b"a,b,y\n"
GOOD = b"1,2,3\n4,5,6\n"


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("field, shown", [
    (b"\x89PNG", r"'\x89PNG'"),                                 # not UTF-8
    (b"\xff\xfe1", r"'\xff\xfe1'"),
    (b"1\r2", r"'1\x0d2'"),                                      # a control byte
    (b"\x001", r"'\x001'"),                                      # NUL
    (b"\xe2\x82\xac5", "'€5'"),                                  # valid UTF-8 stays as it is
    (b"\xef\xbb\xbf7", r"'\ufeff7'"),                            # a BOM in the middle of a file
    (b"1\xc2\xa0000", r"'1\u00a0000'"),                          # a no-break space
    (b"\xe2\x82", r"'\xe2\x82'"),                                # a character cut short
    (b"\xed\xa0\x80", r"'\xed\xa0\x80'"),                        # an encoded UTF-16 surrogate
    (b"\xc0\xaf", r"'\xc0\xaf'"),                                # an overlong form
    (b"1\xc2\x852", r"'1\u00852'"),                              # NEL: valid UTF-8, a line break to Python
    (b"1\xe2\x80\xa82", r"'1\u20282'"),                          # the Unicode line separator
    (b"1\xe2\x80\xae2", r"'1\u202e2'"),                          # a right-to-left override: the rest reversed
    (b"1\xe2\x80\x8b2", r"'1\u200b2'"),                          # a zero-width space
], ids=lambda v: repr(v) if isinstance(v, bytes) else None)
@pytest.mark.parametrize("command", ["normalize", "apply", "stats", "denormalize"])
def test_odd_bytes_in_a_field(tmp_path, field, shown, command):
    bad = _write(tmp_path / "bad.csv", HEADER + GOOD + b"7," + field + b",9\n")
    if command in ("apply", "denormalize"):
        good = _write(tmp_path / "good.csv", HEADER + GOOD)
        ok("stats", good, "-o", tmp_path / "s.json")
    args = {"normalize": ["normalize", bad, "-o", tmp_path / "o.npy"],
            "apply": ["normalize", bad, "-o", tmp_path / "o.npy", "--stats", tmp_path / "s.json"],
            "stats": ["stats", bad, "-o", tmp_path / "o.json"],
            "denormalize": ["denormalize", bad, "-o", tmp_path / "o.csv", "--stats", tmp_path / "s.json"]}[command]
    p = run_cli(*args)
    msg = assert_failed_cleanly(p, leftovers=[tmp_path / "o.npy", tmp_path / "o.json", tmp_path / "o.csv",
                                              tmp_path / "o.stats.json"],
                                folder=tmp_path, names=["bad.csv"], line=4, column=2)
    assert f"found {shown}" in msg, msg


def test_long_field_is_cut_at_a_character_boundary(tmp_path):
    bad = _write(tmp_path / "bad.csv", HEADER + b"1,2," + "é".encode() * 100 + b"\n")
    msg = assert_failed_cleanly(run_cli("stats", bad, "-o", tmp_path / "s.json"), names=["bad.csv"],
                                line=2, column=3)
    assert "found '" + "é" * 20 + "...'" in msg, msg


def test_python_api_gets_the_message_intact(tmp_path):
    bad = _write(tmp_path / "bad.csv", HEADER + b"1,\x89\xff,3\n")
    with pytest.raises(wideann.DataError) as e:
        wideann.normalize(bad, tmp_path / "o.npy")
    assert str(e.value) == f"{bad}, line 2, column 2: expected a number, found '\\x89\\xff'"
    assert sorted(os.listdir(tmp_path)) == ["bad.csv"]


@pytest.mark.parametrize("name", [b"b\nad.csv", b"bad\xfa.csv"])
def test_a_data_errors_str_is_one_printable_line_and_its_filename_the_exact_name(tmp_path, name):
    """str(DataError) showed a newline of a file name raw (two lines in a caller's log) and a byte that is not UTF-8
    as a surrogate (a log in UTF-8 could not write it); it is the one line the command line prints, and the exact
    name is e.filename: for an error the engine raised (a bad value) and one said before it ran (a missing file)."""
    bad = tmp_path / os.fsdecode(name)
    bad.write_bytes(HEADER + b"1,x,3\n")
    shown = os.fsdecode(name).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") \
        .replace("\n", "\\x0a")
    for path, says in ((bad, ", line 2, column 2: expected a number, found 'x'"),
                       (tmp_path / ("missing " + os.fsdecode(name)), ": no such file")):
        with pytest.raises(wideann.DataError) as e:
            wideann.normalize([path], tmp_path / "o.npy")
        line = str(e.value)
        assert line == str(path.parent / (path.name.replace(os.fsdecode(name), shown))) + says, line
        assert line.isprintable() and line.encode("utf-8")
        assert e.value.filename == os.fspath(path)
        assert os.path.exists(e.value.filename) == (path == bad)  # (the name opens the file)
    with pytest.raises(wideann.DataError) as e:  # the output's folder, too
        wideann.make_data(tmp_path / os.fsdecode(name) / "o.csv", rows=3, cols=6)
    assert str(e.value).isprintable() and e.value.filename == os.fspath(tmp_path / os.fsdecode(name) / "o.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == [bad.name]


@pytest.mark.parametrize("header", ["auto", "yes"])
def test_header_name_that_is_not_utf8(tmp_path, header):
    bad = _write(tmp_path / "bad.csv", b"a,b\xe9,y\n" + GOOD)  # Latin-1 'é'
    for args in (["normalize", bad, "-o", tmp_path / "o.npy"], ["stats", bad, "-o", tmp_path / "o.json"]):
        p = run_cli(*args, "--header", header)
        msg = assert_failed_cleanly(p, leftovers=[tmp_path / "o.npy", tmp_path / "o.json"], folder=tmp_path,
                                    names=["bad.csv"], line=1, column=2)
        assert r"found 'b\xe9'" in msg and "UTF-8" in msg, msg


def test_utf8_header_names_pass_through(tmp_path):
    inp = _write(tmp_path / "in.csv", "température,δ,y\n".encode() + GOOD)
    ok("normalize", inp, "-o", tmp_path / "o.csv")
    assert json.loads((tmp_path / "o.stats.json").read_text("utf-8"))["columns"] == ["température", "δ", "y"]
    assert (tmp_path / "o.csv").read_text("utf-8").splitlines()[0] == "température,δ,y"
    # a second input whose header differs only by an odd byte is named with it escaped
    other = _write(tmp_path / "other.csv", "température,δ,y\x01\n".encode() + GOOD)
    p = run_cli("normalize", inp, other, "-o", tmp_path / "o2.npy")
    msg = assert_failed_cleanly(p, leftovers=[tmp_path / "o2.npy"], names=["other.csv"], line=1, column=3)
    assert r"found 'y\x01'" in msg, msg


def test_whole_binary_file(tmp_path):
    """A file that is no CSV at all (here a .npy given as input) is one clean line too."""
    np.save(tmp_path / "t.npy", np.arange(12, dtype=np.float32).reshape(4, 3))
    for args in (["normalize", tmp_path / "t.npy", "-o", tmp_path / "o.npy"],
                 ["normalize", tmp_path / "t.npy", "-o", tmp_path / "o.npy", "--header", "no"],
                 ["stats", tmp_path / "t.npy", "-o", tmp_path / "o.json"]):
        p = run_cli(*args)
        msg = assert_failed_cleanly(p, leftovers=[tmp_path / "o.npy", tmp_path / "o.json"], names=["t.npy"],
                                    line=1)
        assert r"\x93NUMPY" in msg, msg


def test_file_names_that_are_not_utf8(tmp_path):
    """File names are bytes on Linux: any name the system accepts is read, written and, in a message,
    shown with its odd bytes escaped."""
    folder = os.fsencode(tmp_path)
    inp = folder + b"/in\xff.csv"
    with open(inp, "wb") as f:
        f.write(HEADER + GOOD)
    out = folder + b"/out\xfe.npy"
    ok("normalize", os.fsdecode(inp), "-o", os.fsdecode(out))
    assert sorted(os.listdir(folder)) == [b"in\xff.csv", b"out\xfe.npy", b"out\xfe.stats.json"]
    np.testing.assert_array_equal(np.load(out), [[0, 0, 0], [1, 1, 1]])
    ok("denormalize", os.fsdecode(out), "-o", os.fsdecode(folder + b"/back\xfd.csv"),
       "--stats", os.fsdecode(folder + b"/out\xfe.stats.json"))
    assert (tmp_path / os.fsdecode(b"back\xfd.csv")).read_text() == "a,b,y\n1,2,3\n4,5,6\n"
    # errors name them, escaped
    bad = folder + b"/bad\xfa.csv"
    with open(bad, "wb") as f:
        f.write(HEADER + b"1,x,3\n")
    p = run_cli("normalize", os.fsdecode(bad), "-o", os.fsdecode(folder + b"/o.npy"))
    msgs = [assert_failed_cleanly(p, names=[r"bad\xfa.csv"], line=2, column=2)]
    p = run_cli("normalize", os.fsdecode(folder + b"/missing\xfa.csv"), "-o", os.fsdecode(folder + b"/o.npy"))
    msgs.append(assert_failed_cleanly(p, names=[r"missing\xfa.csv"]))
    p = run_cli("normalize", os.fsdecode(inp), "-o", os.fsdecode(folder + b"/no\xf9/o.npy"))
    msgs.append(assert_failed_cleanly(p, names=[r"no\xf9"]))
    p = run_cli("normalize", os.fsdecode(inp), "-o", os.fsdecode(folder + b"/o.npy"),
                "--stats", os.fsdecode(folder + b"/gone\xf8.json"))
    msgs.append(assert_failed_cleanly(p, names=[r"gone\xf8.json"]))
    assert not any("\\udc" in m for m in msgs), msgs


def test_file_names_that_are_valid_text_but_lie_are_escaped_in_error_lines(tmp_path):
    """A file name with a right-to-left override (U+202E shows the rest of the line reversed) or a zero-width space
    (U+200B, invisible): valid UTF-8, printed raw by the command line's and the lessons' error lines, which then
    showed another name than the file's. Now escaped as ``\\u202e`` / ``\\u200b``, the line otherwise the one a
    plain name gets; a cell holding U+202E is escaped in the message's excerpt too."""
    from test_lessons import SCRIPTS, _env

    bad_value = HEADER + GOOD * 10 + b"7,x,9\n"
    names = {"plain.csv": "plain.csv", "rlo\u202evsc.csv": r"rlo\u202evsc.csv",
             "zero\u200bwidth.csv": r"zero\u200bwidth.csv"}
    for name in names:
        _write(tmp_path / name, bad_value)
    _write(tmp_path / "cell.csv", HEADER + GOOD + b"7,a\xe2\x80\xaeb,9\n")

    def cli(name):
        p = run_cli("normalize", name, "-o", "o.npy", cwd=tmp_path)
        assert_failed_cleanly(p, leftovers=[tmp_path / "o.npy"], folder=tmp_path)
        return p.stderr.rstrip("\n")

    def lesson(name):
        r = subprocess.run([sys.executable, str(SCRIPTS / "1_first_ann.py"), "--data", name, "--epochs", "1",
                            "--output-dir", "run"], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                           timeout=300)
        lines = r.stderr.splitlines()
        assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("1_first_ann.py: error: "), r.stderr
        assert not (tmp_path / "run").exists(), r.stderr
        return lines[0]

    for said in (cli, lesson):
        plain = said("plain.csv")
        assert "plain.csv, line 22, column 2: expected a number, found 'x'" in plain, plain
        for name, escaped in names.items():
            line = said(name)
            assert line.isprintable() and line == plain.replace("plain.csv", escaped), (line, plain)
        line = said("cell.csv")
        assert "cell.csv, line 4, column 2: expected a number, found 'a\\u202eb'" in line and line.isprintable(), line


def test_stats_file_that_is_not_utf8(tmp_path):
    inp = _write(tmp_path / "in.csv", HEADER + GOOD)
    st = _write(tmp_path / "s.json", b'{"format": "wideann-stats",\n "columns": ["a", "b\xe9", "y"]}\n')
    for args in (["normalize", inp, "-o", tmp_path / "o.npy", "--stats", st],
                 ["denormalize", inp, "-o", tmp_path / "o.csv", "--stats", st],
                 ["merge-stats", st, st, "-o", tmp_path / "m.json"],
                 ["info", st]):
        p = run_cli(*args)
        msg = assert_failed_cleanly(p, leftovers=[tmp_path / "o.npy", tmp_path / "o.csv", tmp_path / "m.json"],
                                    names=["s.json"], line=2, column=21)
        assert "UTF-8" in msg and "0xe9" in msg, msg


def test_stats_column_name_that_is_not_valid_text(tmp_path):
    """JSON can spell a lone surrogate (\\udcff), which no file or engine can take as a name."""
    inp = _write(tmp_path / "in.csv", HEADER + GOOD)
    st = {"format": "wideann-stats", "version": 1, "columns": ["a", "b\udcff", "y"], "min": [0, 0, 0],
          "max": [1, 1, 1], "n_rows": 2, "sources": []}
    (tmp_path / "s.json").write_text(json.dumps(st))
    p = run_cli("normalize", inp, "-o", tmp_path / "o.npy", "--stats", tmp_path / "s.json")
    msg = assert_failed_cleanly(p, leftovers=[tmp_path / "o.npy"], names=["s.json"])
    assert "column 2" in msg, msg


# ---- a source's name that is not UTF-8, in a stats file -------------------------------------------------------

def _strings(v):
    """Every string of a parsed JSON value."""
    if isinstance(v, str):
        yield v
    elif isinstance(v, list):
        for x in v:
            yield from _strings(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            yield k
            yield from _strings(x)


def test_a_source_whose_name_is_not_utf8_is_kept_exactly_in_valid_utf8_json(tmp_path):
    """Python's json wrote the name's byte as a lone surrogate (\\udcff), which other readers (jq) take as
    U+FFFD: the path was lost. Now ``sources`` shows it as ``\\xff`` and ``source_bytes`` holds it exactly."""
    folder = os.fsencode(tmp_path)
    inp, other = folder + b"/in\xff%.csv", tmp_path / "b.csv"
    with open(inp, "wb") as f:
        f.write(HEADER + GOOD)
    _write(other, HEADER + b"0,0,0\n")
    for args in (["normalize", os.fsdecode(inp), other, "-o", tmp_path / "t.npy"],
                 ["stats", os.fsdecode(inp), other, "-o", tmp_path / "t.stats.json"]):
        ok(*args)
        raw = (tmp_path / "t.stats.json").read_bytes()
        d = json.loads(raw.decode("utf-8"))
        assert not any(0xD800 <= ord(c) <= 0xDFFF for s in _strings(d) for c in s), raw  # no lone surrogate
        assert d["sources"] == [f"{tmp_path}/in\\xff%.csv", str(other)]
        assert d["source_bytes"] == [f"{tmp_path}/in%FF%25.csv", None]
        st = wideann.Stats.load(tmp_path / "t.stats.json")
        assert st.sources == [os.fsdecode(inp), str(other)] and os.path.exists(st.sources[0])
    # a file of names that are all text is as it was: no source_bytes
    ok("stats", other, "-o", tmp_path / "b.stats.json")
    assert "source_bytes" not in json.loads((tmp_path / "b.stats.json").read_text())
    # merge-stats keeps them, and sees the same file named by two stats files
    ok("stats", os.fsdecode(inp), "-o", tmp_path / "a.stats.json")
    p = ok("merge-stats", tmp_path / "a.stats.json", tmp_path / "t.stats.json", "-o", tmp_path / "m.json")
    assert "both name the source" in p.stderr and "in\\xff%.csv" in p.stderr, p.stderr
    assert wideann.Stats.load(tmp_path / "m.json").sources == [os.fsdecode(inp), os.fsdecode(inp), str(other)]
    assert json.loads((tmp_path / "m.json").read_text())["source_bytes"][2] is None
    assert "sources: " + f"{tmp_path}/in\\xff%.csv" in ok("info", tmp_path / "m.json").stdout


def test_stats_files_written_before_with_a_surrogate_are_read_as_they_were(tmp_path):
    d = {"format": "wideann-stats", "version": 1, "columns": ["a", "y"], "min": [0, 0], "max": [1, 1],
         "n_rows": 2, "sources": ["/data/in\udcff.csv", "/data/b.csv"]}
    (tmp_path / "old.json").write_text(json.dumps(d))  # (as json.dumps wrote it: "\udcff")
    st = wideann.Stats.load(tmp_path / "old.json")
    assert st.sources == ["/data/in\udcff.csv", "/data/b.csv"] and os.fsencode(st.sources[0]) == b"/data/in\xff.csv"
    st.save(tmp_path / "new.json")
    assert json.loads((tmp_path / "new.json").read_bytes().decode("utf-8"))["source_bytes"] == ["/data/in%FF.csv",
                                                                                                 None]
    assert wideann.Stats.load(tmp_path / "new.json").sources == st.sources


@pytest.mark.parametrize("edit, said", [
    ({"source_bytes": ["/data/other%FF.csv", None]}, '"source_bytes"[0] "/data/other%FF.csv" is not the name of '
                                                     '"sources"[0]'),
    ({"sources": ["/data/moved\\xff.csv", "/data/b.csv"]}, '"source_bytes"[0]'),  # edited, not the bytes
    ({"source_bytes": ["/data/in%FF.csv"]}, '"source_bytes" has 1 entries, "sources" 2'),
    ({"source_bytes": "/data/in%FF.csv"}, '"source_bytes" must be a list'),
    ({"source_bytes": [1, None]}, '"source_bytes"[0] must be a string or null'),
    ({"source_bytes": None}, '"source_bytes" must be a list'),
    ({"sources": ["/data/in\ud800.csv", "/data/b.csv"], "source_bytes": [None, None]}, "source 1 is not a file name"),
])
def test_a_stats_file_whose_source_names_disagree_is_refused(tmp_path, edit, said):
    """The readable name and the exact bytes are both in the file; one of them edited, which is meant cannot be
    told. A lone surrogate that is no byte of a name (\\ud800) is no file name."""
    d = {"format": "wideann-stats", "version": 1, "columns": ["a", "y"], "min": [0, 0], "max": [1, 1],
         "n_rows": 2, "sources": ["/data/in\\xff.csv", "/data/b.csv"], "source_bytes": ["/data/in%FF.csv", None]}
    d.update(edit)
    (tmp_path / "s.json").write_text(json.dumps(d))
    p = run_cli("info", tmp_path / "s.json")
    assert said in assert_failed_cleanly(p, names=["s.json"])


def test_the_python_api_saves_and_loads_a_source_name_that_is_not_utf8(tmp_path):
    name = os.fsdecode(b"/data/caf\xc3\xa9 \xff\x01.csv")  # (text, a byte that is not, a control character)
    st = wideann.Stats(["a", "y"], [0, 0], [1, 1], 2, sources=[name])
    st.save(tmp_path / "s.json")
    text = (tmp_path / "s.json").read_bytes().decode("utf-8")
    d = json.loads(text)
    assert d["sources"] == ["/data/café \\xff\x01.csv"] and d["source_bytes"] == ["/data/caf%C3%A9 %FF%01.csv"]
    assert wideann.Stats.load(tmp_path / "s.json").sources == [name]
    with pytest.raises(ValueError, match="source 1 is not a file name"):
        wideann.Stats(["a", "y"], [0, 0], [1, 1], 2, sources=["/data/\ud800.csv"])


def _bash_words(text: str | bytes) -> list[bytes]:
    """The words bash reads in ``text`` (quoting undone), as bytes: what a user who pastes it runs."""
    text = text if isinstance(text, bytes) else os.fsencode(text)
    r = subprocess.run([b"bash", b"-c", b"printf '%s\\0' " + text], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split(b"\0")[:-1]


ODD_NAMES = [b"plain.csv", b"a b.csv", b"a  b.csv", b"it's.csv", b'say "x".csv', b"$HOME.csv", b"back\\slash.csv",
             b"new\nline.csv", b"tab\t.csv", b"cr\r.csv", b"odd\xff.csv", "é€.csv".encode(), b"\x7f\x85.csv",
             "caf\u00e9.csv".encode(), "nel\u0085 ls\u2028.csv".encode(), b"all'\\\n\xff$x \"y\".csv", b"-dash.csv",
             b"--stats", "zero\u200bwidth.csv".encode(), "rlo\u202evsc.csv".encode(), "nb\u00a0sp \ufeff.csv".encode()]


@pytest.mark.parametrize("stdout_encoding", ["utf-8", "ascii", "latin-1"])
def test_shell_path_is_one_line_that_bash_reads_back_as_the_file_name(tmp_path, monkeypatch, stdout_encoding):
    # shlex.quote put a newline into the line and a byte that is not UTF-8 raw (or a character stdout's encoding
    # cannot spell, escaped inside '...': another name to bash); now $'...' with \xNN for those, shlex.quote otherwise
    import io

    from wideann.course.tables import shell_path

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding=stdout_encoding))
    for name in ODD_NAMES:
        (tmp_path / os.fsdecode(name)).write_bytes(b"")
        quoted = shell_path(os.fsdecode(name))
        pasted = quoted.encode(stdout_encoding)  # what the terminal shows, and pastes
        # (a name that starts with "-" as ./-dash.csv: the command it stands in would take it for an option)
        word = b"./" + name if name.startswith(b"-") else name
        assert quoted.isprintable() and _bash_words(pasted) == [word], (name, quoted)
        assert _bash_words(b"-- " + pasted) == [b"--", word]  # one word, wherever it stands in a line
        r = subprocess.run([b"bash", b"-c", b"ls -d " + pasted], cwd=tmp_path, capture_output=True, timeout=30)
        assert r.returncode == 0 and r.stdout == word + b"\n", (name, quoted, r)
        if _printed_as_it_is(name, stdout_encoding):
            assert quoted == shlex.quote(os.fsdecode(name))  # most names: as before


def _printed_as_it_is(name: bytes, encoding: str) -> bool:
    try:
        text = name.decode("utf-8")
        return text.isprintable() and text.encode(encoding) == name and not text.startswith("-")
    except UnicodeError:
        return False


def test_a_lesson_says_odd_file_names_on_one_line_that_bash_reads_back(tmp_path):
    # lesson 3 on CSV files named with a newline, a byte that is not UTF-8 and a letter, into an --output-dir named
    # with a newline and a byte that is not UTF-8, then --resume'd on a stdout that can only spell ASCII: every line
    # one line (a newline in a name broke it in two, the byte went out raw: '-> best_model.pt', '-> metrics.json',
    # 'resumed from'), and each file name in it is the file's name to bash (what it prints can be pasted and run).
    # The resume itself: safetensors refused the checkpoint's weights under a folder whose name is not UTF-8.
    pytest.importorskip("torch")
    pytest.importorskip("accelerate")
    from test_lessons import SCRIPTS, _env

    train, test, out = b"new\nline.csv", b"odd\xff" + "\u00e9t\u00e9.csv".encode(), b"o\nut\xff"
    for name, seed in ((train, 1), (test, 2)):
        wideann.make_data(tmp_path / os.fsdecode(name), rows=200 if name == train else 50, cols=6, seed=seed)

    def lesson(*more: str, **env) -> list[str]:
        r = subprocess.run([sys.executable, str(SCRIPTS / "3_out_of_core_ann.py"), "--data", os.fsdecode(train),
                            "--test-data", os.fsdecode(test), "--epochs", "1", "--output-dir", os.fsdecode(out),
                            *more], cwd=tmp_path, env={**_env(tmp_path), **env}, capture_output=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        encoding = env.get("PYTHONIOENCODING", "utf-8")
        lines = r.stdout.decode(encoding).splitlines()  # (strict: no raw byte)
        for line in lines + r.stderr.decode(encoding).splitlines():
            assert not line.startswith(("line", "ut")), (line, lines, r.stderr)  # (the rest of a name cut in two)
        return lines

    def said(lines, pattern) -> list[list[bytes]]:
        return [_bash_words(" ".join(m.groups())) for m in map(re.compile(pattern).fullmatch, lines) if m]

    table, stats, test_table = out + b"/data/new\nline.npy", out + b"/data/new\nline.stats.json", \
        out + b"/data/test/" + test[:-4] + b".npy"
    denormalizing = r"denormalizing with the C\+\+ engine, as  wideann denormalize PAIRS\.npy -o (.*) --stats (.*) " \
                    r"--columns y y  would \(.*\)"
    best, metrics = r"best validation loss \S+ at epoch 1 -> (.*)", r"-> (.*)"
    results = [[[out + b"/predictions.csv", stats]], [[out + b"/best_model.pt"]], [[out + b"/metrics.json"]]]
    lines = lesson()
    assert said(lines, r"normalizing with the C\+\+ engine:  wideann normalize (.*)") == [
        [train, b"-o", table], [test, b"-o", test_table, b"--stats", stats]], lines
    assert [said(lines, denormalizing), said(lines, best), said(lines, metrics)] == results, lines
    lines = lesson("--resume", PYTHONIOENCODING="ascii")
    assert said(lines, r"using (.*) \(normalized from (.*) earlier\)") == [[table, train], [test_table, test]], lines
    checkpoint = said(lines, r"resumed from (.*): epoch 2, step 0")
    assert checkpoint == [[out + b"/checkpoints/step_00000003"]], lines
    assert [said(lines, denormalizing), said(lines, best), said(lines, metrics)] == results, lines
    for name in (train, test, table, stats, test_table, checkpoint[0][0], *(r[0][0] for r in results)):
        assert (tmp_path / os.fsdecode(name)).exists(), name


@pytest.mark.parametrize("target", ["my $y", "0", "-y"])
def test_a_lessons_denormalize_line_runs_as_it_says(tmp_path, target):
    # the line that says what the predictions' denormalization is, as a command: the target's name went out as it
    # is, so "my $y" was two words to bash (and $y expanded), and a name of digits, "0", a position to the command
    # line (position 0, refused: "0" names column 5), and "-y" an option
    pytest.importorskip("torch")
    pytest.importorskip("accelerate")
    from test_lessons import SCRIPTS, _env

    wideann.make_data(tmp_path / "raw.csv", rows=200, cols=6, seed=1)
    lines = (tmp_path / "raw.csv").read_text().splitlines(keepends=True)
    (tmp_path / "raw.csv").write_text(lines[0].rsplit(",", 1)[0] + f",{target}\n" + "".join(lines[1:]))
    wideann.normalize(tmp_path / "raw.csv", tmp_path / "t.npy", header="yes")
    r = subprocess.run([sys.executable, str(SCRIPTS / "1_first_ann.py"), "--data", "t.npy", "--epochs", "1",
                        "--output-dir", "run"], cwd=tmp_path, env=_env(tmp_path), capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    m = re.search(r"denormalizing with the C\+\+ engine, as  (wideann denormalize PAIRS\.npy .*)  would",
                  r.stdout.decode())
    assert m, r.stdout
    np.save(tmp_path / "PAIRS.npy", np.array([[0.25, 0.5]], dtype=np.float32))
    cmd = m.group(1).replace("-o run/predictions.csv", "-o pasted.csv")
    bin_dir = os.path.dirname(sys.executable)
    r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, timeout=60,
                       env={**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")})
    assert r.returncode == 0, (cmd, r.stderr)
    st = wideann.Stats.load(tmp_path / "t.stats.json")
    assert (tmp_path / "pasted.csv").read_text().splitlines()[1] == ",".join(
        repr(float(v)) for v in st.inverse_transform(np.array([0.25, 0.5], dtype=np.float32)))
