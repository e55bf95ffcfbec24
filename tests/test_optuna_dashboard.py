"""Optuna's own dashboard (optuna-dashboard, from the test extra) opens an automtl study.

The real `optuna-dashboard` command serves a study made by `automtl search` (SQLite) on
127.0.0.1 with a free port, in a subprocess; its JSON API must show the study, its directions,
the objective names automtl stores with `Study.set_metric_names`, the trials with their values
and automtl's user attributes, and the Pareto front.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def _wait_for(url: str, proc: subprocess.Popen, seconds: float = 90.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return _get(url)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"optuna-dashboard did not answer on {url} "
                                     f"(exit code {proc.poll()})") from None
            time.sleep(0.3)


def test_optuna_dashboard_serves_an_automtl_study(searched_study) -> None:
    s = searched_study  # a real `automtl search` study: 2 trials, objectives ctr_auc, cvr_auc
    study = s.study()
    assert study.metric_names == ["ctr_auc", "cvr_auc"]  # automtl names them on creation
    port = _free_port()
    exe = Path(sys.executable).with_name("optuna-dashboard")
    proc = subprocess.Popen([str(exe), s.url, "--host", "127.0.0.1", "--port", str(port),
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        summaries = _wait_for(f"{base}/api/studies", proc)["study_summaries"]
        (summary,) = [x for x in summaries if x["study_name"] == s.name]
        assert summary["directions"] == ["maximize", "maximize"]
        detail = _get(f"{base}/api/studies/{summary['study_id']}")
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    assert proc.returncode is not None  # stopped

    assert detail["name"] == s.name
    assert detail["directions"] == ["maximize", "maximize"]
    assert detail["objective_names"] == ["ctr_auc", "cvr_auc"]
    attrs = {a["key"]: a["value"] for a in detail["user_attrs"]}
    assert json.loads(attrs["objectives"]) == ["ctr_auc", "cvr_auc"]
    stored = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert len(detail["trials"]) == len(stored) == 2
    for t in detail["trials"]:
        frozen = stored[t["number"]]
        assert t["state"].upper() == frozen.state.name
        if frozen.state == optuna.trial.TrialState.COMPLETE:
            assert t["values"] == frozen.values
        keys = {a["key"] for a in t["user_attrs"]}
        assert {"config", "arch", "val_metrics"} <= keys  # automtl's per-trial record
        assert {p["name"] for p in t["params"]} == set(frozen.params)
    front = {t["number"] for t in detail["best_trials"]}
    assert front and front <= set(stored)
    assert {"model.arch", "train.lr"} <= {p["name"] for p in detail["union_search_space"]}
