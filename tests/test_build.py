"""The build: a reused build folder (pyproject's ``build-dir``) rebuilds every source whose content changed.

Configures the project's CMakeLists.txt with CMake and Ninja as ``pip install .`` does (into a build folder of
its own), and has Ninja build an object again. Skipped where CMake, Ninja or pybind11 (the build's own
requirements, which ``pip install`` fetches into an isolated environment) are not at hand.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OBJECT = "CMakeFiles/wideann_engine.dir/csrc/half.cpp.o"


def _pybind11_cmakedir() -> str | None:
    r = subprocess.run([sys.executable, "-m", "pybind11", "--cmakedir"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def test_a_source_put_in_place_with_an_older_time_is_rebuilt(tmp_path):
    """A newer release unpacked over the tree (tar keeps the archive's modification times), or copied with
    ``rsync -a`` / ``cp -p``: its sources may be older than the objects of the last build, and Ninja, which goes
    by time, rebuilt nothing: ``pip install --no-build-isolation .`` installed the old engine without a word."""
    cmake, ninja, pybind11_dir = shutil.which("cmake"), shutil.which("ninja"), _pybind11_cmakedir()
    if not (cmake and ninja and pybind11_dir):
        pytest.skip("needs cmake, ninja and pybind11 (pip install cmake ninja pybind11)")
    src, build = tmp_path / "src", tmp_path / "build"
    shutil.copytree(ROOT / "csrc", src / "csrc")
    shutil.copy(ROOT / "CMakeLists.txt", src)
    configure = [cmake, "-S", src, "-B", build, "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}",
                 "-DCMAKE_BUILD_TYPE=Debug", "-DSKBUILD_PROJECT_NAME=wideann", f"-Dpybind11_DIR={pybind11_dir}",
                 f"-DPython_EXECUTABLE={sys.executable}"]
    subprocess.run(configure, check=True, capture_output=True)
    subprocess.run([ninja, "-C", build, OBJECT], check=True, capture_output=True)  # the last build

    def rebuilt() -> bool:
        """Whether configuring and building again (as ``pip install .`` does) compiles half.cpp."""
        subprocess.run(configure, check=True, capture_output=True)
        done = subprocess.run([ninja, "-C", build, "-v", OBJECT], check=True, capture_output=True, text=True)
        return "half.cpp" in done.stdout

    assert not rebuilt(), "nothing changed, yet it was rebuilt"
    half = src / "csrc" / "half.cpp"
    old = half.stat()
    half.write_text(half.read_text().replace('"software"', '"software (changed)"'))
    os.utime(half, ns=(old.st_atime_ns - 10**12, old.st_mtime_ns - 10**12))  # older than the object
    assert rebuilt(), "a source whose content changed, put in place with an older time, was not rebuilt"
    header = src / "csrc" / "half.hpp"
    old = header.stat()
    header.write_text(header.read_text() + "\n// changed\n")
    os.utime(header, ns=(old.st_atime_ns - 10**12, old.st_mtime_ns - 10**12))
    assert rebuilt(), "a header whose content changed, put in place with an older time, was not rebuilt"
    assert not rebuilt(), "nothing changed since, yet it was rebuilt"
