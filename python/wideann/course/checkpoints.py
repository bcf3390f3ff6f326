"""Checkpoints for ``--resume`` (:class:`Checkpoints`): each complete or absent, loaded weights-only,
refusing a resume with other options or another number of processes."""
from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from .._exact_names import exact_fields, spell_fields
from .._entry import printable
from ..diskspace import require_free
from .errors import LessonError, UsageError, one_line, say_on_interrupt, shown
from .processes import pause, settle
from .results import clear_results, disk_full, fsync, tensor_bytes
from .runlock import remove_temporaries, the_run_has_started
from .tables import shell_path


_CKPT = re.compile(r"^step_([0-9]+)\Z")  # (not "$": it also matches before a final newline, a user's "step_5\n";
#                                         not \d: it matches any script's digits, and int() reads them: "step_\u0665")
CHECKPOINT_INFO = "checkpoint.json"
"""Written last into a checkpoint folder, before it is renamed to ``step_N``: what it is, when it was
made, by how many processes, and the run's options."""

EARLIER_RUN = ".earlier-run.json"
"""Written into the checkpoints folder as a new run (no ``--resume``) starts where an earlier run left checkpoints:
which ones are that run's (name and completion time). They stay until the new run's saves replace them, but
``--resume`` alone does not continue from them (:meth:`Checkpoints.start_new_run`)."""

RESUME_FREE_OPTIONS = frozenset({"resume", "output_dir", "checkpoint_every", "quiet", "log_every", "log_with"})
"""Options that ``--resume`` may change: they do not change what the run computes (only where it writes, how
often it checkpoints, and what it shows and logs)."""

_PATH_OPTIONS = frozenset({"data", "test_data", "stats"})

_RNG_SAFE_GLOBALS = [getattr(np, "_core", getattr(np, "core", None)).multiarray._reconstruct, np.ndarray,
                     np.dtype, type(np.dtype(np.uint32)), __import__("codecs").encode]
"""What numpy's random state in accelerate's ``random_states_N.pkl`` is made of (accelerate's own list)."""


EXACT_NAMES = {"options": "option_bytes", "data": "data_bytes"}
"""The fields of ``checkpoint.json`` that may hold file names, and the fields of their exact bytes when one is not
UTF-8 (:mod:`wideann._exact_names`: written only then; :func:`_info` gives the names back exactly, so that a
``--resume`` with the same data compares equal)."""

_DAMAGED = "damaged"  # (a key of _info's dict only, never of the file: why its exact names could not be read)


def _info(path: Path) -> dict | None:
    """The ``checkpoint.json`` of a complete checkpoint folder, else None; its file names exact (``options``,
    ``data``: :data:`EXACT_NAMES`)."""
    try:
        with open(path / CHECKPOINT_INFO) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    if not (isinstance(info, dict) and info.get("format") == "wideann-checkpoint"):
        return None
    try:
        return exact_fields(info, EXACT_NAMES)
    except ValueError as e:  # (said by Checkpoints.load, if it is the checkpoint resumed)
        return {**info, _DAMAGED: str(e)}


def _stamp(path: Path, info: dict | None = None) -> tuple:
    """``(name, completion time)``: a checkpoint as this run's records tell it from another of the same step
    (:data:`EARLIER_RUN`, the checkpoints a run saved or loaded); ``info``, its ``checkpoint.json``, read if not
    given."""
    return path.name, ((_info(path) if info is None else info) or {}).get("completed_ns")


def _checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first: by the time they were completed, then step. (A new run in a
    folder that still holds an old run's later steps must not resume from those.)"""
    found = []
    for p in folder.iterdir() if folder.is_dir() else []:
        m = _CKPT.match(p.name)
        info = _info(p) if m and p.is_dir() else None
        if info is not None:
            found.append((info.get("completed_ns", 0), int(m.group(1)), p))
    return [p for *_, p in sorted(found)]


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def swap_folders(new: Path, there: Path) -> Path:
    """Put the folder ``new`` at ``there``, where a folder already is, with no moment in which ``there`` is missing;
    return where the old folder is now, for its removal.

    Replaced in two renames (the old one out, then the new one in), the checkpoint of a step saved again (the end
    of an epoch) was missing between them -- and, when the old one was deleted before the second, for as long as
    that took: a Ctrl-C or a kill there left ``--resume`` to take the checkpoint before, or an earlier run's. One
    ``renameat2(RENAME_EXCHANGE)`` swaps the two names at once (Linux 3.15 and later; the old folder is then at
    ``new``'s name). Where the system or the file system has no exchange, the two renames run back to back with
    interrupts held (:func:`wideann.interrupts.deferred`): only a kill -9 or a crash between them is left."""
    from .. import interrupts

    new_b, there_b = os.fsencode(new), os.fsencode(there)
    exchange = _renameat2()
    if exchange is not None:
        if exchange(_AT_FDCWD, new_b, _AT_FDCWD, there_b, _RENAME_EXCHANGE) == 0:
            return Path(new)
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), os.fspath(there))
    trash = _trash_of(Path(there))
    with interrupts.deferred():
        os.replace(there, trash)
        os.replace(new, there)
    return trash


def _trash_of(path: Path) -> Path:
    """Where a checkpoint folder goes on its way out (one rename; the next save removes what a kill left there)."""
    return path.with_name(f".trash.{path.name}.{os.getpid()}")


@functools.lru_cache(maxsize=1)
def _renameat2():
    """libc's ``renameat2`` (glibc 2.28 and later), or None."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # (one of them missing)
        return False


def latest_checkpoint(folder) -> Path | None:
    """The newest complete checkpoint ``folder/step_N`` (None if there is none)."""
    found = _checkpoints(Path(folder))
    return found[-1] if found else None


def _plain(v):
    """An option's value as JSON can hold it."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return os.fspath(v) if isinstance(v, os.PathLike) else str(v)


def _options(args) -> dict:
    """The run's options as JSON values, paths made absolute."""
    out = {}
    for k, v in sorted(vars(args).items()):
        if k in _PATH_OPTIONS and v is not None:
            v = [os.path.realpath(x) for x in v] if isinstance(v, (list, tuple)) else os.path.realpath(v)
        out[k] = _plain(v)
    return out


_SAMPLE = 1 << 16


def _fingerprint(path: Path) -> list:
    """A file's size and the SHA-256 of its first and last 64 KiB: a table regenerated from other data
    differs; a copy of the same file does not. A stats file is known by its transform (columns, mins and
    maxes) alone: the same stats written on another machine name other source paths."""
    if path.suffix.lower() == ".json":
        from ..stats import Stats

        try:
            st = Stats.load(path)
        except ValueError:
            pass  # not a stats file: its bytes
        else:
            text = json.dumps([st.columns, list(st.data_min), list(st.data_max)])
            return [0, hashlib.sha256(text.encode()).hexdigest()]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(f.read(_SAMPLE))
        if size > _SAMPLE:
            f.seek(max(_SAMPLE, size - _SAMPLE))
            h.update(f.read(_SAMPLE))
    return [size, h.hexdigest()]


def _data_files(args) -> dict[str, list[Path]]:
    """The files a run's data come from, by option: ``--data`` (the example CSV when not given), ``--test-data``
    and ``--stats``; a folder stands for its ``.npy`` shards, and a ``.npy`` table brings its stats file."""
    from ..data import table_paths
    from ..engine import default_stats_path
    from .tables import example_csv

    out = {}
    for option in ("data", "test_data", "stats"):
        given = getattr(args, option, None)
        if given is None and option == "data":
            given = [example_csv()]
        if given is None:
            continue
        files = []
        for shard in table_paths(given):  # (a folder's .npy files in name order; other files as given)
            files.append(shard)
            beside = Path(default_stats_path(shard))
            if shard.suffix.lower() == ".npy" and beside.is_file():
                files.append(beside)
        out["--" + option.replace("_", "-")] = files
    return out


def _data_identity(args) -> tuple[dict, dict]:
    """:func:`_data_files`, and for ``checkpoint.json`` each option's files as ``[name, size, SHA-256 of the first
    and last 64 KiB]`` (both empty when a file cannot be read: the lesson itself says why)."""
    try:
        files = _data_files(args)
        return files, {option: [[f.name, *_fingerprint(f)] for f in fs] for option, fs in files.items()}
    except (OSError, ValueError, LessonError):  # (a DataError is a ValueError)
        return {}, {}


def _option_text(value) -> str:
    if value is None:
        return "not given"
    values = value if isinstance(value, list) else [value]
    return " ".join(printable(str(v)) for v in values)  # (file names among them: shown as the error lines show them)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


@contextlib.contextmanager
def _weights_only_loads():
    """Every ``torch.load`` inside is ``weights_only=True`` (PyTorch's TORCH_FORCE_WEIGHTS_ONLY_LOAD):
    accelerate loads the objects registered with ``register_for_checkpointing`` with ``weights_only=False``."""
    saved = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _utf8_named(folder: Path):
    """``folder``, or, where its name is not UTF-8 (a byte 0xff in ``--output-dir``), a name of it that is:
    ``/proc/self/fd/N`` of the folder held open (nothing to remove after, even after a ``kill -9``). safetensors,
    which reads a checkpoint's weights (for accelerate's ``load_state`` too), refuses such a path ("Path ... is not
    valid UTF-8"), and a run saved there could not be resumed."""
    try:
        os.fsencode(folder).decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        yield folder
        return
    fd = os.open(folder, os.O_PATH | os.O_DIRECTORY)
    try:
        yield Path(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def check_weights_only(path, process_index: int = 0) -> None:
    """Refuse a checkpoint folder (or file) holding a file that ``torch.load(weights_only=True)`` would not
    load: one that holds more than tensors and plain values, whose loading could run code. Reads every
    file one process loads: the pickled ones weights-only, the safetensors ones by their header."""
    import pickle

    import torch

    path = Path(path)
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    for f in files:
        m = re.match(r"^random_states_([0-9]+)\.pkl\Z", f.name)
        if f.name == CHECKPOINT_INFO or not f.is_file() or (m and int(m.group(1)) != process_index):
            continue
        try:
            if f.suffix == ".safetensors":
                from safetensors import safe_open

                with _utf8_named(f.parent) as folder, safe_open(folder / f.name, framework="pt"):
                    pass
            else:
                with torch.serialization.safe_globals(_RNG_SAFE_GLOBALS):
                    torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise LessonError(f"{shown(f)}: refused: this checkpoint file holds more than tensors and plain values, "
                              "and loading it could run code (no lesson writes such a file); resume from another "
                              "checkpoint, or start again without --resume") from None
        except Exception as e:  # noqa: BLE001 - a damaged file is the user's problem, said in one line
            raise LessonError(f"{shown(f)}: this checkpoint file cannot be read ({one_line(str(e)[:200])}); resume "
                              "from another checkpoint, or start again without --resume") from None


class Checkpoints:
    """The checkpoints of one run, ``folder/step_N``: each complete or absent, loaded weights-only.

    ``files`` (the best model so far) are kept with every checkpoint, as hard links (a copy where links
    are not possible), and put back by :meth:`load`: a resumed run's ``best_model.pt`` is the one of the
    checkpoint's time, never one written after it. ``args`` are saved with every checkpoint and
    :meth:`load` refuses a resume with other options (but :data:`RESUME_FREE_OPTIONS`).
    """

    def __init__(self, folder, args, files=(), keep: int = 2):
        self.folder = Path(folder)
        self.options = _options(args)
        self.data_files, self.data = _data_identity(args)
        self.files = [Path(f) for f in files]
        self.keep = max(1, keep)
        self._ours: set = set()  # (name, completed_ns) of the checkpoints this run saved or loaded
        say_on_interrupt(self._resume_hint)

    def _resume_hint(self) -> str | None:
        """After a Ctrl-C: the checkpoint this run can go on from, and how. Nothing when the newest complete one
        (the one --resume takes) is not one this run saved or loaded: before its first, or while it replaces the
        step it saved just before (the end of an epoch), the newest is an earlier run's."""
        newest = self.latest()
        info = _info(newest) if newest is not None else None
        if info is None or _stamp(newest, info) not in self._ours:
            return None
        given = self.options.get("resume")
        same = given in (None, "latest") or os.path.realpath(given) == os.path.realpath(newest)
        # (a command to type: its option value quoted for bash, as a lesson's informational lines quote names, for
        # stderr, where the line is said)
        how = "--resume" if same else (f"--resume {shell_path(newest, stream=sys.stderr)} (in place of --resume "
                                       f"{shell_path(given, stream=sys.stderr)})")
        return (f"; its newest checkpoint is {shown(newest)}: run the same command with {how} to continue from "
                "it (the same batches, the same final model)")

    def latest(self) -> Path | None:
        """The newest complete checkpoint (None if there is none)."""
        return latest_checkpoint(self.folder)

    def start_new_run(self, accelerator) -> None:
        """A new run (no ``--resume``) starts, its options and data checked: the checkpoints an earlier run left in
        the folder are not its own. They stay (an earlier run's model stays too until this one saves its own, and
        this run's saves prune them), but until this run has saved one, ``--resume`` alone would have taken the
        newest of them and gone on with the earlier run -- the same options and data are all it checks. So they
        are listed, atomically, in :data:`EARLIER_RUN` before training, and :meth:`load` refuses them unless named.
        Call it on every process, before :func:`~wideann.course.results.clear_results` (after it, a run killed
        between the two left the earlier run's results gone and its checkpoints unlisted: a bare ``--resume`` went
        on with that run, silently). What killed saves left in the folder goes first
        (:func:`~wideann.course.runlock.remove_temporaries`): left to this run's first save, it stayed when this run
        was killed before that."""
        error = None
        if accelerator.is_main_process:
            try:
                remove_temporaries([self.folder], saves=True)
                marker = self.folder / EARLIER_RUN
                earlier = [list(_stamp(p)) for p in _checkpoints(self.folder)]
                if earlier:
                    with atomic_path(marker) as tmp:
                        text = json.dumps({"format": "wideann-earlier-run", "checkpoints": earlier})
                        Path(tmp).write_text(text + "\n")
                        fsync(tmp)
                    fsync(self.folder)
                    pause("earlier-run-listed")
                else:
                    marker.unlink(missing_ok=True)
            except Exception as e:  # noqa: BLE001 - raised again by settle
                error = disk_full(e, self.folder, EARLIER_RUN, 1 << 16)
        settle(accelerator, error)

    def _earlier_run(self) -> set:
        """The checkpoints :data:`EARLIER_RUN` lists, as ``(name, completed_ns)``."""
        try:
            listed = json.loads((self.folder / EARLIER_RUN).read_text()).get("checkpoints", [])
            return {(name, ns) for name, ns in listed}
        except (OSError, ValueError, TypeError, AttributeError):
            return set()

    def _forget_the_earlier_run(self) -> None:
        """:data:`EARLIER_RUN` removed once none of the checkpoints it lists is left, or this run went on from one."""
        (self.folder / EARLIER_RUN).unlink(missing_ok=True)

    def _remove(self, path: Path) -> None:
        """Out of the way in one rename (a half-deleted checkpoint is never found), then deleted."""
        trash = _trash_of(path)
        os.replace(path, trash)
        pause("checkpoint-pruning")
        shutil.rmtree(trash, ignore_errors=True)

    def _size(self, accelerator, previous: Path | None) -> int:
        """What the next checkpoint will take: the tensors of the models and optimizers, a little for
        the rest, and at least what the previous one took (its own files: the kept ones are links)."""
        n = sum(tensor_bytes(o.state_dict()) for o in
                list(getattr(accelerator, "_models", [])) + list(getattr(accelerator, "_optimizers", [])))
        n += (128 << 10) * accelerator.num_processes
        if previous is not None:
            kept = {f.name for f in self.files}
            n = max(n, sum(f.stat().st_size for f in previous.iterdir() if f.is_file() and f.name not in kept))
        return n

    def save(self, accelerator, step: int) -> Path:
        """``accelerator.save_state`` into ``folder/step_N``, complete or not at all.

        The state is written under a temporary name; the main process then adds the kept files and
        ``checkpoint.json``, syncs it all to disk and renames the folder. Only the newest ``keep``
        checkpoints stay; older ones are removed before the write (so the disk holds at most ``keep``,
        or 2 with ``keep=1``), the newest complete one never. The free space is checked first; a full
        disk ends the run with one line and leaves the checkpoints that were complete. Call it on every
        process; on several machines the folder must be one they share (as for ``save_state``).
        """
        the_run_has_started()
        final = self.folder / f"step_{step:08d}"
        tmp = self.folder / f".step_{step:08d}.tmp"
        what = f"checkpoint {final.name}"
        main = accelerator.is_main_process
        need, error = 0, None
        if main:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                remove_temporaries([self.folder], saves=True)  # what killed saves (and EARLIER_RUN writes) left
                others = [c for c in _checkpoints(self.folder) if c.name != final.name]
                for old in others[:len(others) - max(self.keep - 1, 1)]:
                    self._remove(old)
                need = self._size(accelerator, self.latest())
                require_free(self.folder, need, what)
                tmp.mkdir()
            except Exception as e:  # noqa: BLE001 - raised again by settle
                error = e
        settle(accelerator, error)
        pause("checkpoint-begin")
        try:
            accelerator.save_state(str(tmp))
        except Exception as e:  # noqa: BLE001
            error = disk_full(e, self.folder, what, need or (1 << 20))
        settle(accelerator, error, on_failure=lambda: shutil.rmtree(tmp, ignore_errors=True))
        if main:
            try:
                for f in self.files:
                    if f.is_file():
                        _link_or_copy(f, tmp / f.name)
                info = {"format": "wideann-checkpoint", "version": 1, "step": step,
                        "processes": accelerator.num_processes, "mixed_precision": str(accelerator.mixed_precision),
                        "files": [f.name for f in self.files],
                        "options": self.options, "data": self.data, "completed_ns": time.time_ns()}
                text = json.dumps(spell_fields(info, EXACT_NAMES), indent=1)  # (valid UTF-8 whatever the names)
                (tmp / CHECKPOINT_INFO).write_text(text + "\n")
                for f in tmp.iterdir():
                    fsync(f)
                fsync(tmp)
                pause("checkpoint-written")
                old = None
                if final.exists():  # the same step saved again (the end of an epoch): swapped for the new one
                    old = swap_folders(tmp, final)
                else:
                    os.replace(tmp, final)
                self._ours.add(_stamp(final, info))  # (complete from here: a Ctrl-C may name it)
                fsync(self.folder)
                if old is not None:
                    pause("checkpoint-swapped")
                    shutil.rmtree(old, ignore_errors=True)
                for old in _checkpoints(self.folder)[:-self.keep]:
                    self._remove(old)
                earlier = self._earlier_run()
                if earlier and not earlier & {_stamp(c) for c in _checkpoints(self.folder)}:
                    self._forget_the_earlier_run()
            except Exception as e:  # noqa: BLE001
                error = disk_full(e, self.folder, what, need)
        settle(accelerator, error, on_failure=lambda: shutil.rmtree(tmp, ignore_errors=True))
        return final

    def _check(self, info: dict, path: Path, accelerator) -> None:
        """Refuse, as wrong usage, a resume with other options, other data or another number of processes
        than the checkpoint's."""
        # the number of processes first: the options left out are chosen for it (the batch size, say), and a
        # line about those would send the user after options they never gave
        if info.get("processes") != accelerator.num_processes:
            raise UsageError(f"--resume: the checkpoint {shown(path)} was made by {info.get('processes')} process(es), "
                             f"this run has {accelerator.num_processes}: launch it as the interrupted run was")
        saved = info.get("options", {})
        differ = [k for k in sorted((set(saved) | set(self.options)) - RESUME_FREE_OPTIONS)
                  if saved.get(k) != self.options.get(k)]
        if differ:
            said = ", ".join(f"--{k.replace('_', '-')} {_option_text(saved.get(k))} (now: "
                             f"{_option_text(self.options.get(k))})" for k in differ)
            raise UsageError(f"--resume: the checkpoint {shown(path)} was made with other options: {said}; give the "
                             "options of the interrupted run")
        for option, files in (info.get("data") or {}).items():  # (checkpoints before 2026-11-27: none)
            now = self.data.get(option)
            if now is not None and now != files:
                odd = next((f"{shown(f)} is not the file it was made with (another size or content)" for f, a, b in
                            zip(self.data_files[option], now, files) if a != b), f"has {len(now)} files, it had "
                           f"{len(files)}")
                raise UsageError(f"--resume: the checkpoint {shown(path)} was made with other data: {option} {odd}; "
                                 "the resumed run would go on training on other rows, with other stats; give the data "
                                 "of the interrupted run, or start again without --resume")
        # the precision comes from the launcher and the device as well as --mixed-precision (left out: bf16 on a
        # GPU that has it, none on a CPU): a run resumed elsewhere would go on in another precision, and its
        # metrics.json say only the last one (checkpoints before 2026-11-28 do not record it)
        precision = info.get("mixed_precision")
        if precision is not None and precision != str(accelerator.mixed_precision):
            raise UsageError(f"--resume: the checkpoint {shown(path)} was trained in mixed precision {precision}, "
                             f"this run would train in {accelerator.mixed_precision} (another device, or another "
                             "launcher setting): resume it on the kind of device, and launched as, the interrupted "
                             "run was")

    def load(self, accelerator, which: str | None = "latest") -> Path:
        """``accelerator.load_state`` from ``which`` (a ``step_N`` folder, or "latest"), every file loaded
        weights-only; the kept files put back as they were then. Returns the checkpoint's path.

        Refused, in one line: no checkpoint, a folder that is not a complete checkpoint, a run with other
        options or another number of processes than the checkpoint's, a file that is not weights-only.
        """
        path = self.latest() if which in (None, "latest") else Path(which)
        if path is None:
            raise LessonError(f"--resume: no checkpoint in {shown(self.folder)} to continue from (a run saves one "
                              "every --checkpoint-every steps and after every epoch); run without --resume to start")
        info = _info(path)
        if info is None:
            raise LessonError(f"--resume {shown(path)}: not a complete checkpoint (no {CHECKPOINT_INFO} in it); "
                              f"give a step_N folder of {shown(self.folder)}, or --resume alone for the newest")
        if _DAMAGED in info:
            raise LessonError(f"--resume: {shown(path / CHECKPOINT_INFO)}: {info[_DAMAGED]} (edited since the run "
                              "wrote it?); resume from another checkpoint, or start again without --resume")
        if which in (None, "latest") and _stamp(path, info) in self._earlier_run():
            raise LessonError(f"--resume: the newest checkpoint in {shown(self.folder)}, {shown(path.name)}, is an "
                              "earlier run's: the run started here after it without --resume ended before it saved a "
                              "checkpoint of its own; run without --resume to start again (or, to go on with that "
                              f"earlier run, --resume {shell_path(path, stream=sys.stderr)})")
        error = None
        try:  # (each process checks its own data: on several machines, the main process says what one found)
            self._check(info, path, accelerator)
        except UsageError as e:
            error = e
        settle(accelerator, error)
        try:
            check_weights_only(path, accelerator.process_index)
            with _weights_only_loads(), _utf8_named(path) as folder:
                accelerator.load_state(str(folder))
        except Exception as e:  # noqa: BLE001 - raised again by settle
            error = e
        settle(accelerator, error)
        if accelerator.is_main_process:
            try:
                run = self.folder.parent
                for f in self.files:
                    kept = path / f.name
                    if not kept.is_file():  # written after the checkpoint: the resumed run writes it again
                        if f.exists():
                            clear_results(run)  # results of the model that goes
                        f.unlink(missing_ok=True)
                    elif not (f.is_file() and os.path.samefile(kept, f)):  # not already the same file
                        with atomic_path(f) as t:
                            os.unlink(t)
                            _link_or_copy(kept, Path(t))
                            clear_results(run)
                # what killed writes left here (saves, EARLIER_RUN; in the run folder and its data/, the run removed
                # it as it locked the folder: runlock.remove_what_killed_writes_left), once the kept files are back:
                # the checkpoint loaded may be one of them (--resume .step_N.tmp), and its files went with it
                remove_temporaries([self.folder], saves=True)
                # this run is the one that goes on, from here; from another folder's checkpoint, the earlier run's
                # checkpoints here stay listed: a bare --resume here must still refuse them
                if _same_folder(path.parent, self.folder):
                    self._forget_the_earlier_run()
            except Exception as e:  # noqa: BLE001
                error = e
        settle(accelerator, error)
        the_run_has_started()
        self._ours.add(_stamp(path, info))
        pause("resumed")
        return path
