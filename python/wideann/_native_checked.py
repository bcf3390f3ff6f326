"""The C++ engine, ``wideann._native``, as the package imports it: in a source checkout, first compared with csrc/.

An editable install (``pip install -e .``) builds the engine once: editing csrc/ afterwards changes nothing in
the module Python imports until the next ``pip install -e .``, and the tests, the command line and the lessons
ran the old engine without a word. The build records the SHA-256 of each file it compiles (CMakeLists.txt's
script mode: ``_native.SOURCE_MANIFEST``, ``sha256sum``'s lines for csrc/*.cpp, csrc/*.hpp and CMakeLists.txt,
sorted by path; ``_native.SOURCE_DIGEST``, the SHA-256 of that list). When the package runs from a source
checkout -- csrc/ and CMakeLists.txt two folders above this file, beside python/, as an editable install runs
it -- the same list is made from the files on disk, and if it differs the import fails with
:class:`StaleEngineError`: one line naming the changed files and the command that rebuilds. An engine that
records nothing was built before this check existed, and is as stale.

An installed wheel has no csrc/ beside it (its sources are not there to compare with) and is not checked.
``WIDEANN_ALLOW_STALE_ENGINE=1`` skips the check, for the rare deliberate use of an engine known to be older
(bisecting a Python-only change). The check reads and hashes about 150 kB: about a millisecond (``python -X
importtime``), once per process.

A process that passed the check says so to its workers (:data:`CHECKED`, in its environment: the engine file it
checked, as ``os.stat`` knows it, and the digest of its sources): a ``multiprocessing`` child (spawn, forkserver:
a DataLoader's workers, ``torch.multiprocessing``'s) that loads that same file trusts it and does not compare
again. An edit of csrc/ during a long run otherwise stopped the run's DataLoader workers, which import the package
again, half-way through. Any other process compares: one started afresh, or told of another engine file, or of
the same file rebuilt since, and also a plain command the process runs (``subprocess``, a notebook's ``!wideann``,
a batch job submitted with its environment, which may start hours later): it inherits the variable, and is a new
launch all the same, which would otherwise run the engine of the sources as they were without a word.

:class:`StaleEngineError` is not an ``ImportError`` (the engine is there, and is not the one the sources make):
``try: import ... except ImportError`` must not take it for a missing package. A package folder without any
engine, the checkout's ``python/wideann`` imported in place of the installed package (``cd python && python -m
wideann``), is :class:`EngineMissingError`, said in one line as well.

Import ``_native`` from here (``from ._native_checked import _native``), never directly: a module that imports it
directly would run whatever engine was built last.
"""
from __future__ import annotations

import hashlib
import os
import sys

ALLOW_STALE = "WIDEANN_ALLOW_STALE_ENGINE"
CHECKED = "WIDEANN_ENGINE_CHECKED"
"""Set by a process whose engine passed the check, for its children: see :func:`passed`."""


class EngineError(RuntimeError):
    """The engine cannot be used as it is; said in one line (``<program>: error: ...``), exit code 1."""


class StaleEngineError(EngineError):
    """The engine was built from other sources than those in the checkout it runs from."""


class EngineMissingError(EngineError):
    """The package folder imported has no engine at all (a checkout's ``python/wideann``, never built there)."""


def source_root(package_dir: str) -> str | None:
    """The source checkout the package at ``package_dir`` runs from (``<root>/python/wideann``), or None when it
    is installed (a wheel: ``site-packages/wideann``)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(package_dir)))
    if os.path.isdir(os.path.join(root, "csrc")) and os.path.isfile(os.path.join(root, "CMakeLists.txt")):
        return root
    return None


def manifest(root: str) -> str:
    """``sha256sum``'s lines for the files the engine is built from, as CMakeLists.txt writes them: csrc/*.cpp,
    csrc/*.hpp (not an editor's hidden files) and CMakeLists.txt, sorted by path."""
    names = [f"csrc/{n}" for n in os.listdir(os.path.join(root, "csrc"))
             if n.endswith((".cpp", ".hpp")) and not n.startswith(".")]
    lines = []
    for rel in sorted(names + ["CMakeLists.txt"]):
        try:
            with open(os.path.join(root, rel), "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError:  # (a dangling link, no read permission: the build fails on it too)
            digest = "unreadable"
        lines.append(f"{digest}  {rel}\n")
    return "".join(lines)


def _files(listed: str) -> dict:
    return {path: digest for digest, _, path in (line.partition("  ") for line in listed.splitlines())}


def check(native, root: str) -> None:
    """Raise :class:`StaleEngineError` when ``native`` was not built from the files in the checkout ``root``."""
    built = getattr(native, "SOURCE_MANIFEST", None)
    where = getattr(native, "__file__", "wideann._native")
    try:
        on_disk = manifest(root)
    except OSError as e:  # csrc/ not readable: not compared, and not a traceback at every import either
        unread = [os.path.relpath(e.filename, root) if e.filename else "csrc"]
    else:
        if built == on_disk:
            return
        unread = [p for p, digest in _files(on_disk).items() if digest == "unreadable"]
    if unread:  # (said as such, not as "changed since": the build could not read them either)
        said = (f"the C++ engine {where} cannot be compared with the sources in {root}: {_some(unread)} cannot be "
                f"read (make them readable, or set {ALLOW_STALE}=1 to use the engine unchecked)")
    else:
        if built is None:
            what = "was built before it recorded its sources"
        else:
            was, now = _files(built), _files(on_disk)
            changed = sorted(p for p in was.keys() | now.keys() if was.get(p) != now.get(p))
            what = f"was built from other sources than those in {root} ({_some(changed)} changed since)"
        said = (f"the C++ engine {where} {what}: rebuild it with `pip install -e .` in {root} (or set "
                f"{ALLOW_STALE}=1 to use it anyway)")
    _refuse(StaleEngineError(said))


def _refuse(error: EngineError) -> None:
    sys.excepthook = _one_line_if_refused  # a lesson imports the engine at its top, before any code of its own runs
    raise error


def missing(package_dir: str) -> None:
    """Raise :class:`EngineMissingError`: the package at ``package_dir`` has no engine to import."""
    here = os.path.abspath(package_dir)
    root = source_root(here)
    if root is not None:
        why, fix = _why_imported_from(os.path.dirname(here))
        said = (f"the package was imported from the source folder {here}, which has no built engine{why}: {fix}"
                f"build the engine there with `pip install -e .` in {root}")
    else:
        said = (f"the wideann package in {here} has no engine (wideann._native is missing): reinstall it with "
                f"`pip install --force-reinstall wideann`")
    _refuse(EngineMissingError(said))


def _why_imported_from(parent: str) -> tuple[str, str]:
    """Why the package folder in ``parent`` was imported (what put ``parent`` on the import path: PYTHONPATH,
    ``python -m`` or ``-c`` run from it; none known, an editable install's finder, say), and what else than a
    build mends it: the remark and the start of the advice of :func:`missing`'s line."""
    def same(entry: str) -> bool:
        return os.path.abspath(entry or os.curdir) == parent

    causes, fixes = [], []
    if any(same(e) for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e):
        causes.append("PYTHONPATH names it")
        fixes.append("take it off PYTHONPATH")
    first = sys.path[0] if sys.path else None
    if first is not None and same(first) and (first == "" or same(os.getcwd())):
        causes.append("`python -m` or `-c` run from it puts it first")
        fixes.append("run from another folder")
    elif first is not None and same(first):
        causes.append("a script in it puts it first")
        fixes.append("move the script out of it")
    if not causes:
        return "", ""
    return f" ({parent} is on the import path: {'; '.join(causes)})", f"{' and '.join(fixes)}, or "


def passed(native, root: str) -> str | None:
    """What a process says to its children (:data:`CHECKED`) once ``native`` passed the check against ``root``:
    its sources' digest, its file's device, inode, size and modification time, its path and ``root``; None for
    an engine that cannot be told apart this way (no digest recorded, its file gone)."""
    path, digest = getattr(native, "__file__", None), getattr(native, "SOURCE_DIGEST", None)
    if not path or not digest:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{digest} {st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns} {os.path.abspath(path)} {root}"


def a_worker() -> bool:
    """Whether this process is a ``multiprocessing`` child (spawn, forkserver), importing the package as it starts
    (``_inheriting``: its target or the main module unpickled) or once started: what a DataLoader's workers are."""
    mp = sys.modules.get("multiprocessing")  # (a child imports it before anything: it is what starts the child)
    if mp is None:
        return False
    try:
        return bool(getattr(mp.current_process(), "_inheriting", False)) or mp.parent_process() is not None
    except Exception:  # (an odd multiprocessing: not trusted, compared)
        return False


def _some(paths: list) -> str:
    """The first three of ``paths``, and how many more."""
    return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _one_line_if_refused(kind, value, tb, _before=sys.excepthook) -> None:
    """``sys.excepthook`` once the engine was refused (stale, or missing): left uncaught (a lesson's ``from wideann
    import course`` at its top, before ``course.run`` could turn it into its line), the error is said as
    ``<program>: error: ...`` and the process ends with 1, as for any other user error; anything else as Python
    says it.

    Under a launcher (``accelerate launch``, torchrun: ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` set) the first process
    of each machine says it, once for the machine's engine, and the others stay silent (every process said the
    same line); they wait for it (:data:`~wideann.interrupts.SPEAK_WAIT_S` at most) before they end, as
    ``course.run``'s do, because the launcher ends every process as soon as one has failed, and one that ended
    first could have the speaking one killed before it had said why. (Not rank 0 alone: an engine stale on another
    machine only, with rank 0's up to date, would have ended the run without a word.)"""
    if not isinstance(value, EngineError):
        _before(kind, value, tb)
    elif os.environ.get("LOCAL_RANK", "0") in ("", "0") or os.environ.get("LOCAL_WORLD_SIZE", "1") in ("", "1"):
        program = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c") else "python"  # (python -c, the REPL)
        from ._entry import printable  # (a newline in the checkout's path: still one line)

        print(f"{os.path.basename(program)}: error: {printable(str(value))}", file=sys.stderr, flush=True)
    else:
        import time

        from .interrupts import SPEAK_WAIT_S  # (standard modules alone: nothing that needs the engine, no torch)

        try:
            time.sleep(SPEAK_WAIT_S)
        except KeyboardInterrupt:  # (the launcher ends the others once the first one has failed)
            pass


try:
    from . import _native
except ImportError as e:
    if e.name != __package__:  # ("cannot import name '_native' from 'wideann'"): an engine that is there and does
        raise                  # not load (another Python's, a missing library) is said in Python's words
    _native = None
if _native is None:
    missing(os.path.dirname(__file__))

if os.environ.get(ALLOW_STALE) != "1":
    _root = source_root(os.path.dirname(__file__))
    if _root is not None:
        _passed = passed(_native, _root)
        # (a parent's check of this very file, trusted by its workers; a plain child, a new launch, compares)
        if _passed is None or os.environ.get(CHECKED) != _passed or not a_worker():
            check(_native, _root)
            if _passed is not None:
                os.environ[CHECKED] = _passed
