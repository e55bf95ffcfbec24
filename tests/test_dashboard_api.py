"""Dashboard JSON endpoints over a real uvicorn server and a real SQLite study (no browser)."""

from __future__ import annotations

import hashlib
import inspect
import json
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from report_study import EVIL, FRONT, TRIALS, make_study, serve_in_thread

from automtl.cli.dashboard import dashboard
from automtl.config import TrialConfig, from_dict
from automtl.errors import AutomtlError
from automtl.report.dashboard import create_app, export_command

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _get(url: str, method: str = "GET") -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("content-type", "")


def _json(url: str) -> dict:
    status, body, ctype = _get(url)
    assert status == 200 and ctype.startswith("application/json"), (url, status)
    return json.loads(body)


def test_endpoints_read_only(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    url, _ = make_study(db, running=True)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with serve_in_thread(create_app(url, "known")) as base:
        summary = _json(base + "api/summary")
        assert summary["study"] == "known" and summary["front"] == sorted(FRONT[2])
        assert summary["states"]["COMPLETE"] == 6 and summary["running"] is True
        assert summary["best"]["ctr_auc"]["trial"] == 1
        assert summary["dataset"].startswith("synthetic")

        trials = _json(base + "api/trials")
        assert len(trials["rows"]) == len(TRIALS) + 1
        cols = trials["columns"]
        assert cols[:4] == ["trial", "state", "ctr_auc", "cvr_auc"]
        assert "arch (param)" in cols and "lr" in cols
        by_number = {r[0]: dict(zip(cols, r)) for r in trials["rows"]}
        assert by_number[5]["state"] == "pruned" and by_number[5]["ctr_auc"] is None
        assert by_number[3]["epochs"] == 2 and by_number[3]["front"] == "yes"

        detail = _json(base + "api/trial/1")
        cfg = from_dict(TrialConfig, yaml.safe_load(detail["yaml"]))  # full, loadable config
        assert cfg.model.arch == "ple" and cfg.model.n_experts == 8 and cfg.train.lr == 0.003
        assert detail["export"] == export_command("known", 1, url)
        assert detail["on_front"] is True and detail["test"]["ctr_auc"] == pytest.approx(0.71)

        figs = _json(base + "api/figures")
        assert figs["order"][:2] == ["pareto", "history"]
        assert {t["name"] for t in figs["figures"]["pareto"]["data"]} == {"dominated",
                                                                           "Pareto front"}
        state = _json(base + "api/state")
        assert state["running"] is True and state["trials"] == len(TRIALS) + 1

        assert _get(base + "api/trial/99")[0] == 404
        assert _get(base + "api/trial/abc")[0] == 400
        assert _get(base + "api/state", method="POST")[0] == 405  # nothing writes
        status, js, ctype = _get(base + "static/plotly.js")
        assert status == 200 and "javascript" in ctype and len(js) > 1_000_000
        status, page, _ = _get(base)
        assert status == 200 and b'<script src="static/plotly.js">' in page
        assert b'src="http' not in page
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # database untouched


def test_names_escaped_server_side(tmp_path: Path) -> None:
    url, _ = make_study(tmp_path / "evil.db", name=EVIL, evil=True)
    with serve_in_thread(create_app(url, EVIL)) as base:
        _, page, _ = _get(base)
        assert b"<script>window" not in page
        assert b"&lt;script&gt;window.__xss = 1&lt;/script&gt;" in page
        _, figs, _ = _get(base + "api/figures")
        assert b"<script" not in figs and b"<img" not in figs
        detail = _json(base + "api/trial/0")
        assert "--study '<script>window.__xss = 1</script>'" in detail["export"]  # shell-quoted


def test_export_command_masks_password_and_default_storage() -> None:
    assert export_command("s", 3) == (
        "automtl export --study s --trial 3 --format yaml -o trial_3.yaml")
    cmd = export_command("s", 3, "postgresql+psycopg://u:secret@db/x")
    assert "secret" not in cmd and "--storage" in cmd and "***" in cmd


def test_missing_study_is_one_line_error(tmp_path: Path) -> None:
    url, _ = make_study(tmp_path / "s.db")
    with pytest.raises(AutomtlError, match="available: known"):
        create_app(url, "other")


def test_cli_binds_localhost_by_default() -> None:
    defaults = {n: p.default for n, p in inspect.signature(dashboard).parameters.items()}
    assert defaults["host"].default == "127.0.0.1"
    assert defaults["port"].default == 8080

