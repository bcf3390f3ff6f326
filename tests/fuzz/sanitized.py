"""The engine built with AddressSanitizer and UndefinedBehaviorSanitizer, beside the normal install.

    python tests/fuzz/sanitized.py build            # -> build/sanitize/site/wideann (about a minute)
    python tests/fuzz/sanitized.py run CMD ARGS...  # CMD with the sanitized engine, e.g.
    python tests/fuzz/sanitized.py run python -m pytest -q tests/test_bad_input.py

`build` installs the package with `-DWIDEANN_SANITIZE=ON` into its own folder (`pip install --target`;
its own CMake build folder), so the normal install that the test suite uses is left as it is. `run`
puts that folder first on PYTHONPATH and preloads gcc's libasan (Python itself is not built with
ASan, and the runtime must be loaded before anything else): every Python process started from CMD —
pytest's `python -m wideann` subprocesses included — then imports the sanitized engine.
detect_leaks=0: the interpreter keeps objects alive until exit by design, which LeakSanitizer would
report as leaks. Any sanitizer finding stops the process (the build uses -fno-sanitize-recover=all)
with a report on stderr and exit code 86.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "build" / "sanitize" / "site"
EXIT_CODE = 86  # what a process stopped by a sanitizer exits with

# Written into SITE: an editable install (scikit-build-core) puts an import hook in front of
# sys.path, which would shadow the sanitized package; sitecustomize runs after .pth files, so it can
# take that hook out again for the processes started here.
_SITECUSTOMIZE = '''\
import sys
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__name__.startswith("ScikitBuild")]
'''


def _runtime(name: str) -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++") or "g++"
    path = subprocess.run([cxx, f"-print-file-name={name}"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if not os.path.isabs(path) or not os.path.exists(path):
        raise SystemExit(f"sanitized.py: {cxx} has no {name} (install gcc's libasan)")
    return os.path.realpath(path)


def preload() -> str:
    """LD_PRELOAD for a sanitized extension in an unsanitized Python: libasan first (it must come
    before every other library), then libstdc++ — Python does not load it, and without it ASan cannot
    find the C++ runtime's __cxa_throw when it sets up its interceptors (the first exception thrown
    then stops the process with "CHECK failed: ... real___cxa_throw")."""
    return f"{_runtime('libasan.so')} {_runtime('libstdc++.so.6')}"


def env(base: dict | None = None) -> dict:
    """An environment in which Python imports the sanitized engine."""
    e = dict(os.environ if base is None else base)
    e["PYTHONPATH"] = os.pathsep.join([str(SITE)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    e["LD_PRELOAD"] = " ".join([preload()] + ([e["LD_PRELOAD"]] if e.get("LD_PRELOAD") else []))
    e["ASAN_OPTIONS"] = f"detect_leaks=0:halt_on_error=1:exitcode={EXIT_CODE}:detect_stack_use_after_return=1"
    e["UBSAN_OPTIONS"] = f"print_stacktrace=1:halt_on_error=1:exitcode={EXIT_CODE}"
    e["PYTHONDONTWRITEBYTECODE"] = "1"
    return e


def build() -> None:
    SITE.parent.mkdir(parents=True, exist_ok=True)
    # Where the build tools are already installed, build without isolation: the CMake build folder is
    # then reused and a rebuild compiles only what changed.
    have_tools = all(importlib.util.find_spec(m) for m in ("scikit_build_core", "pybind11"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade",
                    *(["--no-build-isolation"] if have_tools else []),
                    "--target", str(SITE), "-C", "cmake.define.WIDEANN_SANITIZE=ON",
                    "-C", "build-dir=build/sanitize/{wheel_tag}", str(ROOT)], check=True, cwd=ROOT)
    (SITE / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    link_sources()
    check()


def link_sources() -> None:
    """The package's Python code in SITE as links to the sources, so that only the engine needs a rebuild after a
    change: each module of ``python/wideann`` and each subpackage (``course/``, ``data/``: the folder itself,
    so that a module added to one later is there too). What ``pip install`` copied and earlier links are replaced;
    the engine (``_native*``, not in the sources) is left. Run by ``build``, and by ``run`` and ``fuzz_engine.py``
    before their work (:func:`ready`): a module added to (or removed from) ``python/wideann`` since the build is
    seen by the next run. (Only the top-level modules were links: an edit of ``course/`` or ``data/`` was not
    seen by a sanitized run until the next ``build``, which tested the old code without a word.)"""
    source, site = ROOT / "python" / "wideann", SITE / "wideann"
    if not site.is_dir():  # no build yet: check() says to make one
        return
    code = {p.name: p for p in source.iterdir()
            if (p.suffix == ".py" and p.is_file()) or (p.is_dir() and (p / "__init__.py").is_file())}
    for p in list(site.iterdir()):
        if p.is_symlink() or p.name == "__pycache__":
            p.unlink() if p.is_symlink() else shutil.rmtree(p)
        elif p.name in code:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    for name, target in code.items():
        (site / name).symlink_to(target, target_is_directory=target.is_dir())


def ready() -> None:
    """Before a use of the sanitized engine (``run``, ``fuzz_engine.py``): the Python code linked to the sources as
    they are now (:func:`link_sources`), and the engine checked to be the sanitized one, built from csrc/ as it is
    now (:func:`check`)."""
    link_sources()
    check()


def check() -> None:
    """Fail unless a process started with env() really runs the sanitized engine, built from the sources in csrc/
    now: ``build`` is not run again by ``run``, and the package's own check of a stale engine does not look at
    this copy (its sources are not two folders above it), so an edit of csrc/ since was tested with the old
    engine without a word."""
    probe = ("import sys, wideann._native as n; from wideann._native_checked import StaleEngineError, check\n"
             "print(n.sanitized, n.__file__)\ntry:\n    check(n, sys.argv[1])\n    print('True')\n"
             "except StaleEngineError as e:\n    print(e)")
    p = subprocess.run([sys.executable, "-c", probe, str(ROOT)], env=env(), capture_output=True, text=True)
    if p.returncode != 0 or not p.stdout.startswith("True ") or str(SITE) not in p.stdout:
        raise SystemExit(f"sanitized.py: the sanitized engine is not the one imported "
                         f"(run `python tests/fuzz/sanitized.py build` first):\n{p.stdout}{p.stderr}")
    if p.stdout.splitlines()[-1] != "True":
        raise SystemExit(f"sanitized.py: the sanitized engine in {SITE} was built from other sources than those in "
                         f"{ROOT / 'csrc'} ({p.stdout.splitlines()[-1]}): run `python tests/fuzz/sanitized.py build` "
                         "again")


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"]:
        build()
        print(f"sanitized engine in {SITE}")
        return 0
    if argv[:1] == ["run"] and len(argv) > 1:
        ready()
        return subprocess.run(argv[1:], env=env()).returncode
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
