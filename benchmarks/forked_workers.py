"""Start many `automtl worker` processes by fork from one warm process (`workers_scale.py --start
fork`), so that 64 of them fit on a small box next to other jobs.

Measured (issue 19, /proc/PID/smaps_rollup of a worker after a trial): nearly all of a worker's
private memory is its imports — Python objects of torch, torch._dynamo + sympy (which torch's
optimizers import at their first step), numpy, optuna, SQLAlchemy and automtl — not its data or
model. A process started with exec builds its own copy; a process forked from a parent that
imported them already shares those pages copy-on-write (the parent calls `gc.freeze()` so the
collector does not touch, and so copy, them). Each forked worker is still a real, independent
worker: its own PID, database connections, heartbeat thread and study lock, and a SIGKILL kills
only it. What it does not measure is a cluster's per-machine start-up (import) time.

The fork server has no threads and never opens a database (forking a process with either is
unsafe); it reaps its children on SIGCHLD and reports "pid N" / "exit N RC" lines on stdout.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

SERVER = r"""
import gc, json, os, signal, sys, traceback
import torch, torch._dynamo  # what a trial imports anyway (optimizers import torch._dynamo)
import automtl.cli, automtl.data, automtl.models, automtl.search.distributed, automtl.train.loop
from automtl.cli import main

def reap(signum, frame):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        os.write(1, f"exit {pid} {os.waitstatus_to_exitcode(status)}\n".encode())

gc.collect()
gc.freeze()
signal.signal(signal.SIGCHLD, reap)
os.write(1, b"ready\n")
for line in sys.stdin:
    cmd = json.loads(line)
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.environ.update(cmd["env"])
        sys.argv = ["automtl", *cmd["argv"]]
        fd = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        rc = 1
        try:
            rc = main(cmd["argv"]) or 0
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(rc)
    os.write(1, f"pid {pid}\n".encode())
"""


class ForkServer:
    """The warm parent: `spawn` forks one worker from it (its imports already done)."""

    def __init__(self, env: dict[str, str], cwd: Path, timeout: float = 300) -> None:
        self._proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, cwd=cwd, env=env, text=True)
        self._pids: queue.Queue[int] = queue.Queue()
        self.exits: dict[int, int] = {}
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(timeout):
            self.close()
            raise RuntimeError("fork server did not start")

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            word, *rest = line.split()
            if word == "ready":
                self._ready.set()
            elif word == "pid":
                self._pids.put(int(rest[0]))
            elif word == "exit":
                self.exits[int(rest[0])] = int(rest[1])

    @property
    def pid(self) -> int:
        return self._proc.pid

    def spawn(self, argv: list[str], log: Path, env: dict[str, str]) -> ForkedWorker:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"argv": argv, "log": str(log), "env": env}) + "\n")
        self._proc.stdin.flush()
        return ForkedWorker(self, self._pids.get(timeout=120))

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class ForkedWorker:
    """A forked worker with the part of `subprocess.Popen` the chaos driver uses."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server, self.pid = server, pid

    @property
    def returncode(self) -> int | None:
        return self.server.exits.get(self.pid)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.05)
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


__all__ = ["ForkServer", "ForkedWorker"]
