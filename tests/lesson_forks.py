"""Run many lesson invocations as real processes after one interpreter start-up.

Started as ``python tests/lesson_forks.py JOBS``, it imports what the lessons import (torch, accelerate,
wideann, matplotlib) once, then reads one JSON object a line on stdin, ``{"id", "script", "args",
"cwd", "env"}``, and for each forks a child that runs the script as ``python script args...`` would
(``runpy`` with ``__name__ == "__main__"``, ``sys.argv`` set, stdout and stderr on their own files).
The child's exit status is the one Python itself would give: 0 at the end of the script,
``SystemExit``'s code (a message printed to stderr and status 1 when the code is not a number), and 1
after printing the traceback of any other exception. For each child it writes one JSON line,
``{"id", "code", "stdout", "stderr"}``, with the status ``waitpid`` reported; up to JOBS children run at
once. Starting Python, torch and accelerate takes seconds; a fork of this process takes milliseconds.
"""
import json
import os
import runpy
import sys
import tempfile
import traceback

os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402,F401
import numpy  # noqa: E402,F401
import torch  # noqa: E402,F401
from accelerate import Accelerator  # noqa: E402,F401

import wideann  # noqa: E402,F401
from wideann import course, data, metrics, plots  # noqa: E402,F401

# (imported once, before the forks, for what every lesson imports; named here so that linters see them used)
PRELOADED = (matplotlib.pyplot, numpy, torch, Accelerator, wideann, course, data, metrics, plots)


def _exit_status(e: SystemExit) -> int:
    """What the interpreter makes of an uncaught SystemExit."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code & 0xFF
    print(e.code, file=sys.stderr)
    return 1


def _child(job: dict, out: str, err: str) -> None:
    code = 1
    try:
        os.chdir(job["cwd"])
        os.environ.update(job.get("env", {}))
        for fd, path in ((1, out), (2, err)):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(f, fd)
            os.close(f)
        script = job["script"]
        sys.argv = [script, *job["args"]]
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as e:
            code = _exit_status(e)
        except BaseException:  # noqa: BLE001 - the interpreter's own handling of an uncaught exception
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main() -> None:
    jobs_at_once = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    tmp = tempfile.mkdtemp(prefix="lesson-forks-")
    running = {}  # pid -> (job id, stdout file, stderr file)
    started = 0

    def reap_one() -> None:
        pid, status = os.wait()
        job_id, out, err = running.pop(pid)
        result = {"id": job_id, "code": os.waitstatus_to_exitcode(status)}
        for key, path in (("stdout", out), ("stderr", err)):
            with open(path, errors="replace") as f:
                result[key] = f.read()
            os.unlink(path)
        print(json.dumps(result), flush=True)

    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        if job.get("wait"):  # a barrier: later jobs need what the earlier ones made
            while running:
                reap_one()
            continue
        while len(running) >= jobs_at_once:
            reap_one()
        started += 1
        out, err = (os.path.join(tmp, f"{started}.{s}") for s in ("out", "err"))
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(job, out, err)
        running[pid] = (job["id"], out, err)
    while running:
        reap_one()
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
