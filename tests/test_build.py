"""The build: a reused build folder (pyproject's ``build-dir``) rebuilds every source whose content changed, and
an editable install's engine is refused at import when csrc/ changed since it was built.

Configures the project's CMakeLists.txt with CMake and Ninja as ``pip install .`` does (into a build folder of
its own), and has Ninja build an object again. Skipped where CMake, Ninja or pybind11 (the build's own
requirements, which ``pip install`` fetches into an isolated environment) are not at hand.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
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


# ---- an editable install's engine against the sources beside it ----------------------------------------------
# `pip install -e .` does not rebuild the engine when csrc/ changes: the build records what it compiled
# (_native.SOURCE_MANIFEST, written by CMakeLists.txt's script mode) and wideann/_native_checked.py compares it
# with the files of the checkout the package runs from.

def _checkout(tmp_path: Path, name: str = "checkout") -> Path:
    """A copy of what the engine is built from: csrc/ and CMakeLists.txt."""
    root = tmp_path / name
    shutil.copytree(ROOT / "csrc", root / "csrc")
    shutil.copy(ROOT / "CMakeLists.txt", root)
    return root


def test_cmake_records_the_sources_as_the_import_check_reads_them(tmp_path):
    """The two sides of the check, CMake's list and Python's, agree; the file is rewritten only when a source
    changed (so an unchanged tree compiles nothing), and a changed or new source changes it."""
    from wideann._native_checked import manifest

    cmake = shutil.which("cmake")
    if not cmake:
        pytest.skip("needs cmake (pip install cmake)")
    root, out = _checkout(tmp_path), tmp_path / "source_digest.cpp"

    def recorded() -> str:
        subprocess.run([cmake, f"-DWIDEANN_ROOT={root}", f"-DWIDEANN_DIGEST_OUT={out}", "-P", root / "CMakeLists.txt"],
                       check=True, capture_output=True)
        text = out.read_text()
        listed = text.split('R"wideann(', 1)[1].split(')wideann"', 1)[0]
        digest = text.split('wideann_source_digest[] = "', 1)[1].split('"', 1)[0]
        assert digest == hashlib.sha256(listed.encode()).hexdigest()
        return listed

    assert recorded() == manifest(root)
    assert "csrc/half.hpp" in manifest(root) and "CMakeLists.txt" in manifest(root)
    written = out.stat().st_mtime_ns
    os.utime(out, ns=(written - 10**9, written - 10**9))
    assert recorded() == manifest(root) and out.stat().st_mtime_ns == written - 10**9, "rewritten, nothing changed"
    (root / "csrc" / "half.cpp").write_text((root / "csrc" / "half.cpp").read_text() + "\n// changed\n")
    (root / "csrc" / "extra.hpp").write_text("#pragma once\n")
    (root / "csrc" / ".#half.cpp").symlink_to("an editor's lock, a dangling link")
    assert recorded() == manifest(root) and "csrc/extra.hpp" in manifest(root)


def test_an_unchanged_checkout_passes_and_a_changed_source_is_named(tmp_path):
    from wideann._native_checked import StaleEngineError, _native, check, source_root

    root = _checkout(tmp_path)
    check(_native, root)  # this checkout's engine, built from these files
    (root / "csrc" / ".#half.cpp").symlink_to("an editor's lock, a dangling link")
    (root / "csrc" / "half.cpp~").write_text("an editor's backup\n")
    check(_native, root)
    half = root / "csrc" / "half.hpp"
    half.write_text(half.read_text() + "\n// changed\n")
    (root / "csrc" / "new.cpp").write_text("// new\n")
    with pytest.raises(StaleEngineError) as e:
        check(_native, root)
    said = str(e.value)
    assert "\n" not in said and "csrc/half.hpp, csrc/new.cpp changed" in said and "`pip install -e .` in" in said
    with pytest.raises(StaleEngineError, match="built before it recorded its sources"):
        check(object(), root)  # an engine built before the check existed
    assert source_root(root / "python" / "wideann") == str(root)
    assert source_root(tmp_path / "lib" / "python3" / "site-packages" / "wideann") is None  # a wheel's


def test_sources_that_cannot_be_read_are_said_so_in_one_line(tmp_path, monkeypatch):
    """A csrc/ that may not be read ended every import (the command line's, a lesson's) in a PermissionError
    traceback; a source that cannot be read was said to have "changed since", and a rebuild fails on it."""
    from wideann._native_checked import StaleEngineError, _native, check

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # (check sets its own, for a lesson's top)
    root = _checkout(tmp_path)
    (root / "csrc" / "gone.cpp").symlink_to("nothing here")  # (as a file without read permission reads)
    with pytest.raises(StaleEngineError) as e:
        check(_native, root)
    assert "cannot be compared with the sources in" in str(e.value) and "csrc/gone.cpp cannot be read" in str(e.value)
    assert "changed since" not in str(e.value)
    (root / "csrc" / "gone.cpp").unlink()
    listdir = os.listdir

    def refused(path):  # (as a csrc/ of mode 0700 owned by another user: the superuser reads any folder)
        if os.fspath(path).endswith("csrc"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return listdir(path)

    monkeypatch.setattr(os, "listdir", refused)
    with pytest.raises(StaleEngineError, match=r"\S+: csrc cannot be read \(make them readable, or set "):
        check(_native, root)


def _package_at(folder: Path) -> Path:
    """The package's Python files and the engine Python imports now, copied to ``folder``/wideann."""
    from wideann._native_checked import _native

    shutil.copytree(ROOT / "python" / "wideann", folder / "wideann", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(_native.__file__, folder / "wideann")
    return folder


# The program run from ``folder``: the editable install's import hook (scikit-build-core's, first on sys.meta_path)
# taken out, so that ``wideann`` is the copy there.
_FROM = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__name__.startswith('ScikitBuild')]; "
         "sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'wideann'; from wideann._entry import console; console()")


def test_the_program_of_a_stale_checkout_says_how_to_rebuild_in_one_line(tmp_path):
    root = _checkout(tmp_path)
    python = _package_at(root / "python")
    env = {k: v for k, v in os.environ.items() if k != "WIDEANN_ALLOW_STALE_ENGINE"}

    def program(folder, *args, **extra):
        return subprocess.run([sys.executable, "-c", _FROM, folder, *args], capture_output=True, text=True,
                              env={**env, **extra})

    assert program(python, "--version").returncode == 0
    (root / "csrc" / "tokenizer.cpp").write_text("// changed\n")
    done = program(python, "--version")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("wideann: error: the C++ engine ") and done.stderr.count("\n") == 1
    assert "(csrc/tokenizer.cpp changed since): rebuild it with `pip install -e .` in " in done.stderr
    assert program(python, "--version", WIDEANN_ALLOW_STALE_ENGINE="1").returncode == 0
    # installed (a wheel): no sources beside the package, nothing to compare with
    assert program(_package_at(tmp_path / "site-packages"), "--version").returncode == 0



def test_a_stale_checkout_whose_path_holds_a_newline_is_said_in_one_line(tmp_path):
    """The line names the checkout: a newline in its path is shown escaped (\\x0a), as every error line shows a
    name's control characters, in the program's line and in a lesson's."""
    root = _checkout(tmp_path, "new\nline")
    python = _package_at(root / "python")
    (root / "csrc" / "tokenizer.cpp").write_text("// changed\n")
    env = {k: v for k, v in os.environ.items() if k not in ("WIDEANN_ALLOW_STALE_ENGINE", "LOCAL_RANK")}
    program = subprocess.run([sys.executable, "-c", _FROM, python, "--version"], capture_output=True, text=True,
                             env=env)
    lesson = subprocess.run([sys.executable, "-c", _LESSON_FROM, python, str(ROOT / "scripts" / "1_first_ann.py")],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    for done in (program, lesson):
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert "new\\x0aline" in done.stderr and "Traceback" not in done.stderr

# A lesson run from ``folder`` (as _FROM runs the program): ``python -c _LESSON_FROM folder script args...``.
_LESSON_FROM = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__name__.startswith("
                "'ScikitBuild')]; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = sys.argv[1]; import runpy; "
                "runpy.run_path(sys.argv.pop(1), run_name='__main__')")


def _a_stale_checkout(tmp_path) -> tuple:
    """A copy of the checkout whose csrc/tokenizer.cpp changed since the engine was built: the folder of its
    package, and an environment that does not allow a stale engine."""
    root = _checkout(tmp_path)
    python = _package_at(root / "python")
    (root / "csrc" / "tokenizer.cpp").write_text("// changed\n")
    return python, {k: v for k, v in os.environ.items() if k != "WIDEANN_ALLOW_STALE_ENGINE"}


def test_a_lesson_of_a_stale_checkout_says_how_to_rebuild_in_one_line(tmp_path):
    """A lesson imports the engine at its top (``from wideann import course``), before ``course.run`` can turn an
    error into its line: the stale engine is still said in one line, exit 1, not with a traceback."""
    python, env = _a_stale_checkout(tmp_path)
    done = subprocess.run([sys.executable, "-c", _LESSON_FROM, python, str(ROOT / "scripts" / "1_first_ann.py"),
                           "--epochs", "1"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("1_first_ann.py: error: the C++ engine ") and done.stderr.count("\n") == 1
    assert "(csrc/tokenizer.cpp changed since): rebuild it with `pip install -e .` in " in done.stderr


def test_python_c_of_a_stale_checkout_is_said_as_python(tmp_path):
    """``python -c "import wideann.engine"``: the line began "-c: error:" (sys.argv[0] is "-c" there)."""
    root = _checkout(tmp_path)
    python = _package_at(root / "python")
    (root / "csrc" / "tokenizer.cpp").write_text("// changed\n")
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__name__.startswith("
            f"'ScikitBuild')]; sys.path.insert(0, {str(python)!r}); import wideann.engine")
    env = {k: v for k, v in os.environ.items() if k not in ("WIDEANN_ALLOW_STALE_ENGINE", "LOCAL_RANK")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.startswith("python: error: the C++ engine "), done.stderr


def test_except_import_error_does_not_take_a_stale_engine_for_a_missing_package(tmp_path):
    """``try: import wideann.engine / except ImportError: <not installed>`` went on without the engine, as if
    wideann were not installed: a stale engine is not an ImportError, and is still said in one line."""
    python, env = _a_stale_checkout(tmp_path)
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__name__.startswith("
            f"'ScikitBuild')]; sys.path.insert(0, {str(python)!r})\n"
            "try:\n    import wideann.engine\nexcept ImportError:\n    print('taken for not installed')")
    env.pop("LOCAL_RANK", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.stdout == "" and done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("python: error: the C++ engine ") and done.stderr.count("\n") == 1, done.stderr


def _site(tmp_path: Path, *folders: Path) -> dict:
    """An environment whose Python processes, children of any kind included (``multiprocessing``'s spawned ones,
    which start from nothing), import ``wideann`` from ``folders`` rather than from the editable install: a
    ``sitecustomize`` takes its import hook out, as tests/fuzz/sanitized.py's does."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text("import sys\nsys.meta_path[:] = [f for f in sys.meta_path if not "
                                           "type(f).__name__.startswith('ScikitBuild')]\n")
    drop = ("WIDEANN_ALLOW_STALE_ENGINE", "WIDEANN_ENGINE_CHECKED", "LOCAL_RANK", "PYTHONPATH")
    return {**{k: v for k, v in os.environ.items() if k not in drop},
            "PYTHONPATH": os.pathsep.join(map(str, [site, *folders])), "PYTHONDONTWRITEBYTECODE": "1"}


# A run that goes on while csrc/ is edited: it checks its engine, csrc/tokenizer.cpp changes, then it starts
# workers as a DataLoader's workers start (multiprocessing, "spawn" or "forkserver": a new interpreter that imports
# the package again), and new processes; each line it prints says how one ended.
_PARENT = """\
import importlib, multiprocessing, os, subprocess, sys
import wideann.engine
from wideann import _native_checked

root, engine = sys.argv[1], _native_checked._native.__file__
with open(os.path.join(root, "csrc", "tokenizer.cpp"), "a") as f:
    f.write("// changed during the run\\n")
for method in ("spawn", "forkserver"):
    worker = multiprocessing.get_context(method).Process(target=importlib.import_module, args=("wideann.engine",))
    worker.start()
    worker.join()
    print(method, worker.exitcode)

def child(env):
    done = subprocess.run([sys.executable, "-c", "import wideann.engine"], env=env, capture_output=True, text=True)
    return f"{done.returncode} {done.stderr.strip()}"

print("child", child(os.environ))
print("fresh", child({k: v for k, v in os.environ.items() if k != _native_checked.CHECKED}))
digest, identity, rest = os.environ[_native_checked.CHECKED].split(" ", 2)
other = identity.rsplit(":", 1)[0] + ":1"  # another modification time: another file, or this one rebuilt
print("other", child({**os.environ, _native_checked.CHECKED: " ".join([digest, other, rest])}))
os.utime(engine)  # the engine file itself written again (a rebuild): its children check again
print("rebuilt", child(os.environ))
"""


def test_workers_of_a_run_trust_its_check_of_the_same_engine_and_no_other(tmp_path):
    """An edit of csrc/ during a long run stopped its DataLoader workers: they checked the engine again and found
    the sources changed, half-way through the run. A worker that loads the very engine file its parent checked
    trusts that check; a process started afresh, or told of another engine, or whose engine was written again
    since, still compares and refuses; and so does a plain command the run starts ("child": a notebook's
    ``!wideann ...``, a batch job submitted with the environment), which trusted it: a new launch that inherited
    the variable ran the engine of the sources as they had been, without a word."""
    root = _checkout(tmp_path)
    python = _package_at(root / "python")
    done = subprocess.run([sys.executable, "-c", _PARENT, root], capture_output=True, text=True,
                          env=_site(tmp_path, python), cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    said = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert said["spawn"] == "0" and said["forkserver"] == "0", done.stdout
    for started in ("child", "fresh", "other", "rebuilt"):
        assert said[started].startswith("1 python: error: the C++ engine "), (started, done.stdout)
        assert "(csrc/tokenizer.cpp changed since)" in said[started]


def test_a_package_folder_without_an_engine_says_so_in_one_line(tmp_path):
    """``cd python && python -m wideann`` beside a non-editable install: the checkout's python/wideann, which has
    no engine, is imported in place of the installed package, and the program ended in an ImportError traceback
    ("cannot import name '_native'"). (The same folder as a checkout's, here a copy without the engine: a real
    ``pip install .`` compiles the engine, minutes.)"""
    root = _checkout(tmp_path)
    shutil.copytree(ROOT / "python" / "wideann", root / "python" / "wideann",
                    ignore=shutil.ignore_patterns("__pycache__", "_native.*"))
    env = _site(tmp_path)
    done = subprocess.run([sys.executable, "-m", "wideann", "--version"], capture_output=True, text=True, env=env,
                          cwd=root / "python")
    assert done.returncode == 1 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr == (f"wideann: error: the package was imported from the source folder "
                           f"{root / 'python' / 'wideann'}, which has no built engine ({root / 'python'} is on the "
                           f"import path: `python -m` or `-c` run from it puts it first): run from another folder, "
                           f"or build the engine there with `pip install -e .` in {root}\n"), done.stderr
    # PYTHONPATH naming the folder, run from elsewhere: said as such (the line said `python -m` did it)
    done = subprocess.run([sys.executable, "-m", "wideann", "--version"], capture_output=True, text=True,
                          env=_site(tmp_path, root / "python"), cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr == (f"wideann: error: the package was imported from the source folder "
                           f"{root / 'python' / 'wideann'}, which has no built engine ({root / 'python'} is on the "
                           f"import path: PYTHONPATH names it): take it off PYTHONPATH, or build the engine there "
                           f"with `pip install -e .` in {root}\n"), done.stderr
    # a lesson (or any program) that imports it: the same line, as the program's
    done = subprocess.run([sys.executable, "-c", "import wideann.engine"], capture_output=True, text=True, env=env,
                          cwd=root / "python")
    assert done.returncode == 1 and done.stderr.startswith("python: error: the package was imported from "), \
        done.stderr
    # an installed package whose engine is gone: reinstall
    site_packages = tmp_path / "site-packages"
    shutil.copytree(root / "python" / "wideann", site_packages / "wideann")
    done = subprocess.run([sys.executable, "-m", "wideann", "--version"], capture_output=True, text=True,
                          env=_site(tmp_path, site_packages), cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "has no engine (wideann._native is missing): reinstall it with `pip install --force-reinstall" in \
        done.stderr


def test_the_test_session_of_a_stale_checkout_stops_in_one_line(tmp_path):
    """tests/conftest.py's pytest_sessionstart stops the run before its first test when the engine is refused."""
    python, _env = _a_stale_checkout(tmp_path)
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(ROOT / "tests" / "conftest.py", tests)
    (tests / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
                          capture_output=True, text=True, env=_site(tmp_path, python), cwd=tmp_path, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert "wideann: the C++ engine " in done.stdout + done.stderr and "1 passed" not in done.stdout


@pytest.mark.parametrize("process", ["first of a machine", "another"])
def test_a_lesson_of_a_stale_checkout_on_several_processes_says_it_once_a_machine(tmp_path, process):
    """``accelerate launch`` on 2 processes: each said the same line (the course's lessons speak from one
    process). The first process of each machine says it (an engine stale on machine 2 only is said there); the
    others say nothing, and wait for it before they end, so that the launcher cannot kill it before it spoke."""
    python, env = _a_stale_checkout(tmp_path)
    local_rank = "0" if process == "first of a machine" else "1"
    env.update(RANK="2" if process == "first of a machine" else "1", LOCAL_RANK=local_rank, WORLD_SIZE="4",
               LOCAL_WORLD_SIZE="2")
    p = subprocess.Popen([sys.executable, "-c", _LESSON_FROM, python, str(ROOT / "scripts" / "4_multi_gpu_ann.py")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        if process == "another":  # it waits for the first process; the launcher ends it (SIGTERM) once that failed
            time.sleep(3)
            assert p.poll() is None, p.communicate()
            p.terminate()
        _out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    if process == "another":
        assert err == ""
    else:
        assert p.returncode == 1 and err.startswith("4_multi_gpu_ann.py: error: the C++ engine ") and \
            err.count("\n") == 1, err


def test_the_engine_is_imported_through_the_check():
    """A module that imported wideann._native directly would run whatever engine was built last."""
    direct = re.compile(r"^\s*(from\s+(\.+|wideann)\s+import\s+_native\b|import\s+wideann\._native\b)", re.M)
    found = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "python" / "wideann").rglob("*.py"))
             if p.name != "_native_checked.py" and direct.search(p.read_text())]
    assert found == []



def test_the_wait_for_the_speaking_process_is_one_number_that_the_check_may_import():
    """The others' wait for the process that says a refused engine (_native_checked) or a lesson's error
    (course.errors) was defined twice, to be kept equal by hand. One definition now, in a module that the check,
    which runs before the engine is trusted, may import: it imports nothing of the package, nor torch or numpy."""
    import ast

    defined = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "python" / "wideann").rglob("*.py"))
               for node in ast.walk(ast.parse(p.read_text())) if isinstance(node, (ast.Assign, ast.AnnAssign))
               and any(isinstance(t, ast.Name) and t.id == "SPEAK_WAIT_S"
                       for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))]
    assert defined == ["python/wideann/interrupts.py"]
    code = ("import sys; from wideann.interrupts import SPEAK_WAIT_S; "
            "print(sorted(m for m in sys.modules if m.startswith(('wideann.', 'torch', 'numpy'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "['wideann.interrupts']", r.stdout + r.stderr

def test_the_sanitized_engine_built_from_other_sources_is_refused(tmp_path, monkeypatch):
    """``tests/fuzz/sanitized.py run`` tested the engine its last ``build`` made, whatever csrc/ held since: the
    package's own check does not look at that copy (its sources are not beside it). A site like ``build``'s,
    its engine a stand-in that records the sources as given (no sanitized build needed)."""
    spec = importlib.util.spec_from_file_location("sanitized", ROOT / "tests" / "fuzz" / "sanitized.py")
    sanitized = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sanitized)
    from wideann._native_checked import manifest

    site = tmp_path / "site"
    (site / "wideann").mkdir(parents=True)
    (site / "wideann" / "__init__.py").write_text("")
    (site / "wideann" / "_native_checked.py").symlink_to(ROOT / "python" / "wideann" / "_native_checked.py")
    (site / "sitecustomize.py").write_text(sanitized._SITECUSTOMIZE)
    monkeypatch.setattr(sanitized, "SITE", site)
    monkeypatch.setattr(sanitized, "env", lambda: {**os.environ, "PYTHONPATH": str(site),
                                                   "PYTHONDONTWRITEBYTECODE": "1"})

    def engine(recorded: str) -> None:
        (site / "wideann" / "_native.py").write_text(f"sanitized = True\nSOURCE_MANIFEST = {recorded!r}\n")

    engine(manifest(ROOT))
    sanitized.check()  # built from csrc/ as it is
    engine(manifest(ROOT).replace("0", "1", 1))  # a digest of one source other than the file's now
    with pytest.raises(SystemExit, match="was built from other sources than those in .*sanitized.py build` again"):
        sanitized.check()


def _sanitized_module(monkeypatch):
    """``tests/fuzz/sanitized.py``, as the module that ``import sanitized`` gives (``fuzz_engine.py``'s) too."""
    spec = importlib.util.spec_from_file_location("sanitized", ROOT / "tests" / "fuzz" / "sanitized.py")
    sanitized = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sanitized)
    monkeypatch.setitem(sys.modules, "sanitized", sanitized)
    return sanitized


def _a_built_sanitized_site(tmp_path, monkeypatch, sanitized) -> tuple[Path, Path]:
    """A checkout (its ``python/wideann``, with a module ``gone.py``) and a site as ``build`` leaves them (pip's
    copies of the package, an engine that records the sources as given: no sanitized build needed), ``sanitized``
    pointed at them; then edits to the sources: a module of ``course/`` and of ``data/`` changed, ``added.py``
    added, ``gone.py`` removed. ``(sources, site)``."""
    from wideann._native_checked import _native

    root = _checkout(tmp_path)
    source = root / "python" / "wideann"
    shutil.copytree(ROOT / "python" / "wideann", source, ignore=shutil.ignore_patterns("__pycache__", "_native.*"))
    (source / "gone.py").write_text("")
    site = tmp_path / "site"
    shutil.copytree(source, site / "wideann")  # what `pip install --target` leaves
    (site / "wideann" / "_native").mkdir()  # the engine Python imports now, said to be sanitized
    (site / "wideann" / "_native" / "__init__.py").write_text(
        f"import importlib.util\nspec = importlib.util.spec_from_file_location(__name__, {_native.__file__!r})\n"
        "engine = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(engine)\n"
        "globals().update((k, v) for k, v in vars(engine).items() if not k.startswith('__'))\nsanitized = True\n")
    (site / "sitecustomize.py").write_text(sanitized._SITECUSTOMIZE)
    monkeypatch.setattr(sanitized, "ROOT", root)
    monkeypatch.setattr(sanitized, "SITE", site)
    monkeypatch.setattr(sanitized, "env", lambda base=None: {**(os.environ if base is None else base),
                                                             "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"})
    sanitized.link_sources()  # as `build` does after pip
    sanitized.check()

    for module in ("course/errors.py", "data/npy.py"):
        with open(source / module, "a") as f:
            f.write("\nEDITED = True\n")
    (source / "added.py").write_text("ADDED = True\n")
    (source / "gone.py").unlink()
    return source, site


def test_a_sanitized_run_sees_every_python_file_of_the_sources(tmp_path, monkeypatch):
    """``build`` linked only the top-level modules to the sources; ``course/`` and ``data/`` were pip's copies,
    and an edit to them was not seen by a sanitized run until the next ``build`` (nor a module added since). A
    checkout and a site as ``build`` leaves them, then edits to the sources, seen by ``run``'s processes."""
    sanitized = _sanitized_module(monkeypatch)
    source, site = _a_built_sanitized_site(tmp_path, monkeypatch, sanitized)
    out = tmp_path / "seen.txt"
    probe = ("import sys, wideann.course.errors as e, wideann.data.npy as n, wideann.added as a\n"
             "open(sys.argv[1], 'w').write(f'{e.EDITED} {n.EDITED} {a.ADDED}')")
    assert sanitized.main(["run", sys.executable, "-c", probe, str(out)]) == 0
    assert out.read_text() == "True True True"
    assert not os.path.lexists(site / "wideann" / "gone.py"), "a link to a module removed from the sources"
    assert os.path.exists(site / "wideann" / "_native" / "__init__.py"), "the engine was removed"


def test_the_fuzzing_run_sees_every_python_file_of_the_sources(tmp_path, monkeypatch, capsys):
    """``fuzz_engine.py`` only checked the sanitized engine: a module added to the package since ``build`` was not
    in the site, and its sanitized worker failed on the import (or ran the old code of one edited). It makes the
    links as ``sanitized.py run`` does; a run of two cases against the site of :func:`_a_built_sanitized_site`."""
    sanitized = _sanitized_module(monkeypatch)
    source, site = _a_built_sanitized_site(tmp_path, monkeypatch, sanitized)
    monkeypatch.setattr(sys, "path", list(sys.path))  # (fuzz_engine puts its folder first)
    spec = importlib.util.spec_from_file_location("fuzz_engine", ROOT / "tests" / "fuzz" / "fuzz_engine.py")
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    assert fuzz.sanitized is sanitized
    monkeypatch.setattr(sys, "argv", ["fuzz_engine.py", "--cases", "2", "--seconds", "120", "--seed", "1",
                                      "--failures", str(tmp_path / "failures")])
    assert fuzz.main() == 0, capsys.readouterr().out
    assert "fuzz: 2 cases" in capsys.readouterr().out
    assert os.path.samefile(site / "wideann" / "added.py", source / "added.py"), "a module added since the build"
    assert os.path.samefile(site / "wideann" / "course", source / "course")
    assert not os.path.lexists(site / "wideann" / "gone.py"), "a link to a module removed from the sources"


def test_a_sanitized_run_before_any_build_says_to_build(tmp_path, monkeypatch):
    # the links were made before the check: with no build, a FileNotFoundError traceback instead of its line
    sanitized = _sanitized_module(monkeypatch)
    monkeypatch.setattr(sanitized, "SITE", tmp_path / "site")
    with pytest.raises(SystemExit, match="run `python tests/fuzz/sanitized.py build` first"):
        sanitized.main(["run", "true"])


# ---- the source distribution ----------------------------------------------------------------------------------

def test_the_source_distribution_holds_every_file_git_tracks_and_no_build_output(tmp_path):
    """``pip install wideann-0.1.0.tar.gz`` builds the engine from the sdist alone, and its tests and lessons run
    from it: every tracked file is in it (the sources, scripts/, data/, tests/), and nothing a build or a run
    leaves in the checkout. (Checked by hand once: installed into a fresh venv, `wideann --help`, make-data,
    normalize, predict and lesson 1 ran.) The sdist is made as `python -m build --sdist` makes it, by
    scikit-build-core's build_sdist, in a second or two. Files that are neither tracked nor ignored (a scratch
    table in the checkout) go in too, and are not this test's to refuse: build releases from a clean checkout."""
    if importlib.util.find_spec("scikit_build_core") is None:
        pytest.skip("needs scikit-build-core (pip install scikit-build-core)")
    listed = subprocess.run(["git", "-C", ROOT, "ls-files", "-z"], capture_output=True)
    if listed.returncode != 0 or not listed.stdout:
        pytest.skip("not a git checkout (an unpacked sdist?): nothing to compare with")
    gone = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "--deleted"], capture_output=True, check=True)
    tracked = set(os.fsdecode(listed.stdout).split("\0")) - set(os.fsdecode(gone.stdout).split("\0")) - {""}
    made = subprocess.run([sys.executable, "-c", "import sys; from scikit_build_core.build import build_sdist; "
                           "print(build_sdist(sys.argv[1]))", tmp_path], cwd=ROOT, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    with tarfile.open(tmp_path / made.stdout.splitlines()[-1]) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if m.isfile()}
    assert sorted(tracked - members) == [], "tracked, not in the sdist"
    assert {"PKG-INFO", "pyproject.toml", "CMakeLists.txt", "csrc/bindings.cpp", "data/example.csv"} <= members
    # nothing git ignores (build/, .venv/, runs/, the engine's .so, __pycache__): the sdist's own excludes. (A file
    # neither tracked nor ignored, a scratch table, would go in, and is the checkout's owner's to remove.)
    # The project's ignore files only (.gitignore, .git/info/exclude: what the sdist leaves out), not the user's
    # own (core.excludesFile, ~/.config/git/ignore): an editor's *.swp ignored there is a scratch file as well.
    ignored = subprocess.run(["git", "-C", ROOT, "-c", f"core.excludesFile={os.devnull}", "ls-files", "-z", "--others",
                              "--ignored", "--exclude-standard"], capture_output=True, check=True)
    built = sorted(members & set(os.fsdecode(ignored.stdout).split("\0")))
    assert built == [], "build or run output in the sdist"
