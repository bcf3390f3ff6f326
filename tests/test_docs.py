"""The docs' commands run as written: the README's blocks of commands and the course's, from an empty folder, in
the order they are given, and the options the README's table of commands names are those of `wideann CMD --help`.

What the tests change, and only that: a lesson runs with `python` instead of `accelerate launch` (the launch is
tests/test_lessons.py's) for one epoch, quietly; `--rows` of make-data is at most 3,000; the raw CSV shards a
user brings are made first with make-data. Everything else, options, file names and folders included, is the
docs' own text.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("accelerate")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COURSE = ROOT / "scripts" / "README.md"
MAX_ROWS = 3000


def _block(doc: Path, after: str) -> list[str]:
    """The command lines of the first ```bash block after the line that contains ``after`` (comments and
    blank lines dropped)."""
    text = doc.read_text()
    start = text.index(after)
    m = re.compile(r"```bash\n(.*?)```", re.S).search(text, start)
    assert m, f"{doc.name}: no bash block after {after!r}"
    lines = []
    for line in m.group(1).splitlines():
        command = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if command:
            lines.append(command)
    return lines


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # the `wideann` console script
    env["HF_HOME"] = str(tmp_path / "hf")
    env["OMP_NUM_THREADS"] = "1"
    env["CUDA_VISIBLE_DEVICES"] = ""
    for k in ("ACCELERATE_USE_CPU", "ACCELERATE_MIXED_PRECISION"):
        env.pop(k, None)
    return env


def _as_run_here(command: str) -> str:
    """The docs' command, changed only as the module docstring says."""
    words = shlex.split(command)
    if words[:2] == ["accelerate", "launch"]:
        script = words[2]
        assert (ROOT / script).is_file(), f"the docs name {script}, which does not exist"
        words = [sys.executable, str(ROOT / script), *words[3:], "--epochs", "1", "--quiet"]
    elif words[:2] == ["wideann", "make-data"] and "--rows" in words:
        i = words.index("--rows") + 1
        words[i] = str(min(int(words[i]), MAX_ROWS))
    # the shell's own job (a glob such as stats/part_*.json) stays the shell's
    return " ".join(w if w.startswith(("stats/part_", "/")) else shlex.quote(w) for w in words)


def _run(commands: list[str], cwd: Path) -> None:
    env = _env(cwd)
    for command in commands:
        r = subprocess.run(["bash", "-c", _as_run_here(command)], cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, f"the docs' `{command}` failed ({r.returncode}):\n" \
                                  f"{r.stdout[-2000:]}\n{r.stderr[-3000:]}"


def _user_shards(cwd: Path, cols: int) -> None:
    """The raw CSV shards a user brings to the shard workflow: raw/part_01.csv and raw/test.csv."""
    (cwd / "raw").mkdir()
    _run([f"wideann make-data -o raw/part_01.csv --rows 1500 --cols {cols} --seed 1",
          f"wideann make-data -o raw/test.csv --rows 400 --cols {cols} --seed 2"], cwd)


def test_readme_whole_flow_runs_as_written(tmp_path):
    commands = _block(README, "## The whole flow on the command line")
    assert any(c.startswith("wideann predict") for c in commands)
    _run(commands, tmp_path)
    assert (tmp_path / "runs" / "3_out_of_core_ann" / "predictions.csv").is_file()
    head = (tmp_path / "new_pred.csv").read_text().splitlines()[0]
    assert head == "row,y_pred"


def test_readme_shard_workflow_runs_as_written(tmp_path):
    _user_shards(tmp_path, cols=12)
    _run(_block(README, "**A table in shards, on several machines.**"), tmp_path)
    assert (tmp_path / "runs" / "4_multi_gpu_ann" / "metrics.json").is_file()


def test_course_shard_workflow_runs_as_written(tmp_path):
    _user_shards(tmp_path, cols=12)
    _run(_block(COURSE, "### A table in shards, normalized on several machines"), tmp_path)
    assert (tmp_path / "runs" / "4_multi_gpu_ann" / "metrics.json").is_file()


def test_course_predict_runs_as_written(tmp_path):
    """`wideann predict` on lesson 3 trained as the course trains it first (no options: the example data)."""
    _run(["accelerate launch scripts/3_out_of_core_ann.py"], tmp_path)
    _run(_block(COURSE, "### Using a trained model on new data"), tmp_path)
    assert (tmp_path / "new_predictions.csv").read_text().splitlines()[0] == "row,y_pred"


def _table_of_commands() -> dict[str, str]:
    """The README's table of commands: command -> its synopsis."""
    rows = re.findall(r"^\| `wideann ([a-z-]+)([^`]*)` \|", README.read_text(), re.M)
    return {cmd: synopsis for cmd, synopsis in rows}


def test_readme_table_of_commands_matches_help():
    table = _table_of_commands()
    p = subprocess.run([sys.executable, "-m", "wideann", "--help"], capture_output=True, text=True)
    listed = set(re.findall(r"^    ([a-z-]+)", p.stdout, re.M))
    assert set(table) == listed, (sorted(table), sorted(listed))
    for cmd, synopsis in table.items():
        usage = subprocess.run([sys.executable, "-m", "wideann", cmd, "--help"], capture_output=True, text=True).stdout
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-o)\b", synopsis):
            assert re.search(rf"(?<![\w-]){re.escape(option)}\b", usage), \
                f"README: wideann {cmd} {option}: not in its --help"
        # and the other way: every option of the usage line is in the table (--quiet, which every command with a
        # progress bar takes, is said once below the table)
        usage_line = usage.split("\n\n", 1)[0]
        for option in set(re.findall(r"\[(--[a-z][a-z-]*)", usage_line)) - {"--quiet"}:
            assert re.search(rf"(?<![\w-]){re.escape(option)}\b", synopsis), \
                f"README: wideann {cmd} takes {option} (its --help), which its row of the table of commands leaves out"


def test_a_lessons_help_gives_the_defaults_that_say_something():
    """Each lesson's --help gives an option's default, but not a switch's ("--quiet ... (default: False)")."""
    for script in sorted((ROOT / "scripts").glob("[0-9]_*.py")):
        said = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, check=True).stdout
        flat = " ".join(said.split())
        assert "(default: False)" not in flat and "(default: True)" not in flat, (script.name, said)
        assert "(default: 0)" in flat, (script.name, said)  # --seed's
        if "--hidden" in flat:  # a list as it is typed, not as Python writes it
            assert re.search(r"\(default: [0-9]+( [0-9]+)*\)", flat[flat.index("--hidden HIDDEN"):]), said
            assert "[1024" not in flat and "[128" not in flat, said
