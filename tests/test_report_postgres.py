"""Report and dashboard data from a study on a real PostgreSQL server, read-only."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from pg import PG_PASSWORD
from report_study import FRONT, make_study

from automtl.report import load_snapshot, write_report

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_report_from_postgres_is_read_only_and_masks_password(pg_url: str,
                                                               tmp_path: Path) -> None:
    url, _ = make_study(pg_url, n_objectives=2)
    snap = load_snapshot(url, "known")
    assert set(snap.front) == FRONT[2] and len(snap.histories[0]) == 3
    assert snap.reeval[0]["test/ctr_auc"]["n"] == 3
    assert snap.study is not None
    with pytest.raises(Exception) as info:
        snap.study.set_user_attr("x", 1)  # the connection refuses writes
    chain = []
    exc: BaseException | None = info.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    assert any("read-only transaction" in text for text in chain), chain
    out = write_report(url, "known", tmp_path / "pg.html")
    html = out.read_text(encoding="utf-8")
    assert PG_PASSWORD not in html and "***" in html
    assert 'id="fig-pareto"' in html
