"""`automtl storage-proxy` and `--storage grpc://host:port`: a real proxy process in front of the
test PostgreSQL server (tests/pg.py) or a SQLite file, real `automtl worker` processes through it.

Checked in the database itself (the test's own direct connection): trial counts and numbers,
a SIGKILLed worker's trial failed by heartbeat and retried once, automtl's Pareto table written
on the proxy host and equal to a brute-force filter of Optuna's values, which `automtl pareto
--storage grpc://...` prints too; and the refusals (unreachable proxy, plain Optuna proxy,
foreign database, a study automtl did not make) as one line with exit code 2.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from pg import PG_PASSWORD
from test_distributed import ENTRY, automtl, write_study

from automtl.cli import main
from automtl.report.snapshot import StudyReader
from automtl.search.meta import TrialMeta
from automtl.search.store import Store

pytestmark = pytest.mark.timeout(900)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proxy:
    """`automtl storage-proxy` in a subprocess (the database URL from the environment, so the
    password is not on its command line); `url` is the grpc:// address it printed. `entry`:
    the Python code that runs the CLI (a probe may wrap it)."""

    def __init__(self, db_url: str, cwd: Path, entry: str = ENTRY) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", entry, "storage-proxy", "--port", "0"], cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=_env(AUTOMTL_STORAGE=db_url))
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout or ()),
                         daemon=True).start()
        deadline = time.monotonic() + 120
        while not any(line.startswith("workers:") for line in self.lines):
            assert self.proc.poll() is None, f"proxy exited: {self.output}"
            assert time.monotonic() < deadline, f"proxy did not start: {self.output}"
            time.sleep(0.1)
        self.banner = self.output
        self.url = self.banner.split()[3]
        assert self.url.startswith("grpc://127.0.0.1:")

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)
        time.sleep(0.2)  # the reader thread drains the pipe
        return self.output


def _worker(url: str, study: str, log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen([sys.executable, "-c", ENTRY, "worker", "--study", study,
                                 "--storage", url], cwd=cwd, stdout=fh,
                                stderr=subprocess.STDOUT, env=_env())


def _brute_front(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    done = {t.number: t.values for t in trials if t.state == TrialState.COMPLETE}

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return {n for n, v in done.items()
            if not any(dominates(w, v) for m, w in done.items() if m != n)}


def test_two_workers_and_a_killed_one_through_the_proxy_on_postgres(pg_url: str,
                                                                    tmp_path: Path) -> None:
    proxy = Proxy(pg_url, tmp_path)
    try:
        assert "automtl:***@127.0.0.1" in proxy.banner and PG_PASSWORD not in proxy.banner
        made = automtl("study", "create", "--study-config", str(write_study(tmp_path, "px", 10)),
                       "--storage", proxy.url, "--heartbeat-interval", "1",
                       "--grace-period", "4", cwd=tmp_path)
        assert made.returncode == 0, made.stdout + made.stderr
        assert "target 10 trials" in made.stdout
        logs = [tmp_path / f"w{i}.log" for i in range(3)]
        workers = [_worker(proxy.url, "px", log, tmp_path) for log in logs]
        names = {f"{socket.gethostname()}:{w.pid}": w for w in workers}
        direct = optuna.load_study(study_name="px", storage=pg_url)  # the test's own view
        deadline, victim, killed = time.monotonic() + 300, None, None
        while victim is None and time.monotonic() < deadline:
            for t in direct.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                killed = names.get(str(TrialMeta.read(t).worker))
                if killed is not None:  # SIGKILL mid-trial: no clean-up, its lock call dropped
                    killed.kill()
                    victim = t.number
                    break
            time.sleep(0.05)
        assert victim is not None and killed is not None, logs[0].read_text()[-1500:]
        survivors = [w for w in workers if w is not killed]
        codes = [w.wait(timeout=600) for w in survivors]
        killed.wait()
        text = "".join(log.read_text() for log, w in zip(logs, workers) if w is not killed)
        assert codes == [0, 0], text[-2000:]
        assert "Traceback" not in text and PG_PASSWORD not in text

        trials = optuna.load_study(study_name="px", storage=pg_url).get_trials()
        assert sorted(t.number for t in trials) == list(range(len(trials)))
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len(complete) == 10 and len(trials) == 11  # 10 slots + the killed attempt
        dead = next(t for t in trials if t.number == victim)
        assert dead.state == TrialState.FAIL  # failed through the proxy's heartbeat ages ...
        retries = [t for t in trials if t.system_attrs.get("retry_history") == [victim]]
        assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE  # ... retried once
        assert {TrialMeta.read(t).worker for t in complete} == {
            f"{socket.gethostname()}:{w.pid}" for w in survivors}  # both shared the work

        brute = _brute_front(trials)
        pareto = automtl("pareto", "--study", "px", "--storage", proxy.url, "--format", "json",
                         cwd=tmp_path)
        assert pareto.returncode == 0, pareto.stderr
        doc = json.loads(pareto.stdout)
        assert {r["trial_number"] for r in doc["front"]} == brute and doc["storage"] == proxy.url
        # the front table and epoch metrics were written by the proxy host into PostgreSQL
        assert {r.trial_number for r in Store(pg_url).front("px")} == brute
        assert set(Store(pg_url).epoch_history("px")) >= {t.number for t in complete}

        studies = automtl("studies", "--storage", proxy.url, "--format", "json", cwd=tmp_path)
        assert studies.returncode == 0, studies.stderr
        (row,) = json.loads(studies.stdout)
        assert row["study"] == "px" and row["states"]["COMPLETE"] == 10
        assert row["front"] == len(brute)
        reader = StudyReader(proxy.url, "px")  # what the dashboard and the report read
        snap = reader.snapshot()
        assert sorted(snap.front or []) == sorted(brute) and reader.fingerprint()
        reader.close()
        report = automtl("report", "--study", "px", "--storage", proxy.url, "-o",
                         str(tmp_path / "r.html"), cwd=tmp_path)
        assert report.returncode == 0, report.stderr
        assert (tmp_path / "r.html").stat().st_size > 10_000
        exported = automtl("export", "--study", "px", "--storage", proxy.url, "--format", "yaml",
                           "--pick", "knee", "-o", str(tmp_path / "knee.yaml"), cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
        assert "model:" in (tmp_path / "knee.yaml").read_text()
    finally:
        out = proxy.stop()
    assert proxy.proc.returncode == 0 and "storage proxy stopped" in out, out[-2000:]
    assert PG_PASSWORD not in out


def test_search_with_two_local_workers_through_a_sqlite_proxy(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    proxy = Proxy(f"sqlite:///{db}", tmp_path)
    try:
        run = automtl("search", "--study-config", str(write_study(tmp_path, "lite", 5)),
                      "--storage", proxy.url, "--workers", "2", "--no-report", cwd=tmp_path)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert "Pareto front of 'lite'" in run.stdout
        trials = optuna.load_study(study_name="lite", storage=f"sqlite:///{db}").get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
        assert {r.trial_number for r in Store(f"sqlite:///{db}").front("lite")} == \
            _brute_front(trials)
    finally:
        proxy.stop()


def _one_line_error(capsys: pytest.CaptureFixture[str], args: list[str], *needles: str) -> None:
    """`automtl ARGS` (in this process) exits 2 with one error line containing `needles`."""
    capsys.readouterr()
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_proxy_refusals_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nobody = f"grpc://127.0.0.1:{_free_port()}"
    for args in (["pareto", "--study", "x"], ["worker", "--study", "x"], ["studies"]):
        _one_line_error(capsys, [*args, "--storage", nobody],
                        "cannot reach the automtl storage proxy", "automtl storage-proxy")
    _one_line_error(capsys, ["studies", "--storage", "grpc://127.0.0.1:99999"],
                    "malformed storage proxy address")
    # a foreign database: refused before the proxy serves or writes anything
    import sqlite3

    foreign = tmp_path / "shop.db"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    before = foreign.read_bytes()
    _one_line_error(capsys, ["storage-proxy", "--storage", f"sqlite:///{foreign}", "--port", "0"],
                    "another application's tables")
    assert foreign.read_bytes() == before
    # a study automtl did not make, reached through automtl's proxy (a real process): never
    # written, by a worker or by a search
    db = tmp_path / "plain.db"
    optuna.create_study(study_name="plain", storage=f"sqlite:///{db}",
                        directions=["maximize", "maximize"])
    proxy = Proxy(f"sqlite:///{db}", tmp_path)
    try:
        _one_line_error(capsys, ["worker", "--study", "plain", "--storage", proxy.url,
                                 "--n-trials", "1"], "was not made by automtl")
        preset = write_study(tmp_path, "plain", 2)
        _one_line_error(capsys, ["search", "--study-config", str(preset), "--storage",
                                 proxy.url, "--no-report"], "not made by automtl")
    finally:
        proxy.stop()
    assert optuna.load_study(study_name="plain", storage=f"sqlite:///{db}").trials == []
    # a plain Optuna proxy lacks automtl's tables and lock: refused, not half-used
    port = _free_port()
    plain = subprocess.Popen([sys.executable, "-c", (
        "import optuna, sys; optuna.storages.run_grpc_proxy_server("
        f"optuna.storages.get_storage('sqlite:///{db}'), host='127.0.0.1', port={port})")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import grpc

        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=120)
        _one_line_error(capsys, ["studies", "--storage", f"grpc://127.0.0.1:{port}"],
                        "not an automtl storage proxy")
    finally:
        plain.kill()
        plain.wait()


def test_the_proxy_process_imports_neither_torch_nor_sklearn(pg_url: str,
                                                             tmp_path: Path) -> None:
    """`automtl storage-proxy` serves Optuna's service, automtl's tables, the front refresh,
    heartbeats and the study lock without the training stack (its process's `sys.modules` at
    exit, after every kind of operation went through it)."""
    from test_cli_light import PROBE

    from automtl.search.locks import study_lock
    from automtl.search.storage import make_storage

    proxy = Proxy(pg_url, tmp_path, entry=PROBE)
    try:
        storage = make_storage(proxy.url)
        study = optuna.create_study(storage=storage, study_name="light",
                                    directions=["maximize", "maximize"])
        study.set_user_attr("objectives", ["ctr_auc", "cvr_auc"])
        store = Store(proxy.url)
        study_id = storage.get_study_id_from_name("light")
        for values in ([0.7, 0.6], [0.6, 0.7], [0.5, 0.5]):
            trial = study.ask()
            trial.suggest_float("x", 0.0, 1.0)
            storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(
                study_id, trial.number))
            store.record_epoch("light", trial.number, 0, dict(zip(["ctr_auc", "cvr_auc"],
                                                                  values)))
            study.tell(trial, values)
        assert set(storage.heartbeat_ages("light", [0, 1, 2])) == {0, 1, 2}
        assert store.running_epochs("light", [0, 1, 2]) == {0: 0, 1: 0, 2: 0}
        assert [r.trial_number for r in store.refresh_front(study)] == [0, 1]
        lock = study_lock(proxy.url, "light")
        lock.acquire()
        lock.release()
        lock.close()
    finally:
        out = proxy.stop()
    line = [x for x in out.splitlines() if x.startswith("PROBE")][-1]
    result = json.loads(line[len("PROBE"):])
    assert result["rc"] in (0, None) and result["heavy"] == [], out[-2000:]
