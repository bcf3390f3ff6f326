"""A newcomer's first run: on a machine where `accelerate config` was never run, the README's install
step (`python -m wideann.accelerate_config`) makes `accelerate launch scripts/1_first_ann.py` run without
accelerate's warning about defaulted values; a user's own config is never replaced, so its warnings stay.

Every run here has a fresh HOME, no HF_HOME / XDG_CACHE_HOME and no OMP_NUM_THREADS, as on a new machine.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("accelerate")

ROOT = Path(__file__).resolve().parents[1]
DEFAULTED = "had defaults used instead"  # accelerate's warning about values it defaulted


def _fresh_env(home: Path) -> dict:
    home.mkdir(exist_ok=True)  # a new account's home: there, and empty (one that is not there is refused)
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HOME", "XDG_CACHE_HOME", "OMP_NUM_THREADS") and not k.startswith("ACCELERATE_")}
    env["HOME"] = str(home)
    env["CUDA_VISIBLE_DEVICES"] = ""  # a newcomer's machine without a GPU, on any machine (a GPU's: gpu_checks.sh)
    return env


def _run(args, cwd, env, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([os.fspath(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _config(home: Path) -> Path:
    return home / ".cache" / "huggingface" / "accelerate" / "default_config.yaml"


def _launch(script, cwd, env, *args):
    return _run([sys.executable, "-m", "accelerate.commands.launch", script, *args], cwd, env)


def test_without_a_config_accelerate_warns(tmp_path):
    """The problem, as a newcomer meets it (a trivial script: the warning comes from the launcher)."""
    (tmp_path / "hello.py").write_text("print('hello')\n")
    p = _launch(tmp_path / "hello.py", tmp_path, _fresh_env(tmp_path / "home"))
    assert p.returncode == 0 and "hello" in p.stdout, p.stderr
    assert DEFAULTED in p.stderr and "--num_processes" in p.stderr and "--dynamo_backend" in p.stderr


def test_the_readme_first_run_is_clean(tmp_path):
    home = tmp_path / "home"
    env = _fresh_env(home)
    p = _run([sys.executable, "-m", "wideann.accelerate_config"], tmp_path, env)
    assert p.returncode == 0 and "wrote" in p.stdout, p.stdout + p.stderr
    config = _config(home).read_text()
    assert "num_processes: 1" in config and "use_cpu: false" in config and "mixed_precision: 'no'" in config
    # the README's main command, from the root of the source tree
    p = _launch("scripts/1_first_ann.py", ROOT, env, "--epochs", "1", "--output-dir", tmp_path / "run")
    assert p.returncode == 0, p.stderr[-3000:]
    assert DEFAULTED not in p.stderr and "warn" not in p.stderr.lower(), p.stderr
    assert "test RMSE" in p.stdout and (tmp_path / "run" / "metrics.json").is_file()


def test_a_users_own_config_is_kept_and_its_warnings_stay(tmp_path):
    home = tmp_path / "home"
    env = _fresh_env(home)
    # what `accelerate config default` writes on a machine without a GPU
    p = _run([sys.executable, "-m", "accelerate.commands.accelerate_cli", "config", "default"], tmp_path, env)
    assert p.returncode == 0, p.stderr
    before = _config(home).read_bytes()
    assert b'"use_cpu": true' in before or b"use_cpu: true" in before
    p = _run([sys.executable, "-m", "wideann.accelerate_config"], tmp_path, env)
    assert p.returncode == 0 and "keeping yours" in p.stdout, p.stdout + p.stderr
    assert _config(home).read_bytes() == before
    import psutil

    if (psutil.cpu_count(logical=False) or 1) > 1:  # accelerate's note about CPU threads, not hidden
        (tmp_path / "hello.py").write_text("print('hello')\n")
        p = _launch(tmp_path / "hello.py", tmp_path, env)
        assert p.returncode == 0 and "--num_cpu_threads_per_process" in p.stderr, p.stderr


def test_another_place_and_a_place_that_cannot_be(tmp_path):
    env = _fresh_env(tmp_path / "home")
    target = tmp_path / "cfg" / "lessons.yaml"
    p = _run([sys.executable, "-m", "wideann.accelerate_config", "--config_file", target], tmp_path, env)
    assert p.returncode == 0 and target.is_file() and not _config(tmp_path / "home").exists()
    (tmp_path / "a_file").write_text("")
    p = _run([sys.executable, "-m", "wideann.accelerate_config", "--config_file", tmp_path / "a_file" / "x.yaml"],
             tmp_path, env)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1 and "wideann: error:" in p.stderr, p.stderr
    assert "a_file" in p.stderr


@pytest.mark.parametrize("var", ["HOME", "HF_HOME", "XDG_CACHE_HOME"])
@pytest.mark.parametrize("what", ["missing", "a_file"])
def test_a_home_that_is_not_a_folder_is_refused_and_nothing_is_made(tmp_path, var, what):
    """``HOME=/nonexistent/home/me`` (a service account's, a typo): the folders were made, as root anywhere
    (``/nonexistent/home/me/.cache/...``), and the config went where no later launch looks. A missing
    ``HF_HOME`` or ``XDG_CACHE_HOME`` (cache folders) is made; any of them that is a file is refused. The config's own
    folders are still made under a home that is there (test_the_readme_first_run_is_clean)."""
    env = _fresh_env(tmp_path / "home")
    (tmp_path / "a_file").write_text("")
    folder = tmp_path / "missing" / "home" if what == "missing" else tmp_path / "a_file"
    env[var] = str(folder)
    p = _run([sys.executable, "-m", "wideann.accelerate_config"], tmp_path, env)
    if what == "missing" and var != "HOME":  # a cache folder: made when missing, as huggingface_hub makes it
        assert p.returncode == 0 and (folder / "accelerate" if var == "HF_HOME" else
                                      folder / "huggingface" / "accelerate").is_dir(), p.stdout + p.stderr
        return
    why = "does not exist" if what == "missing" else "is not a folder"
    assert p.returncode == 1 and p.stdout == "" and p.stderr == (
        f"wideann: error: {folder}: the home folder ({var}) {why}: nothing written; set {var} to an existing "
        "folder (or give --config_file)\n"), p.stdout + p.stderr
    assert not (tmp_path / "missing").exists() and sorted(os.listdir(tmp_path / "home")) == []
