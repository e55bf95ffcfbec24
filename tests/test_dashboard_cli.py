"""`automtl dashboard` as a user runs it: a real process, bound to 127.0.0.1, stopped by Ctrl+C."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
from report_study import TRIALS, make_study


def _json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def test_cli_serves_on_localhost_and_stops(tmp_path: Path) -> None:
    url, _ = make_study(tmp_path / "s.db")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-c", "import sys; from automtl.cli import main; sys.exit(main())",
           "dashboard", "--study", "known", "--storage", url, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                state = _json(f"http://127.0.0.1:{port}/api/state")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "dashboard did not start"
                time.sleep(0.3)
        assert state["trials"] == len(TRIALS)
        # bound to the loopback interface only
        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN]
        assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", port)]
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in output
