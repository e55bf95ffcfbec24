"""A real SQLite study with known trials for the report and dashboard tests.

Written the way `automtl search` writes one: Optuna trials with automtl's user attributes, the
per-epoch metrics and the Pareto front in automtl's tables (`Store`), seed re-evaluations.

Known facts (maximise every objective):
- 8 trials: 6 complete (0, 1, 2, 3, 4, 7), 1 pruned (5), 1 failed (6); one running if asked.
- 2 objectives: front = {0, 1, 3}; 3 objectives: front = {0, 1, 3, 7}.
- epochs recorded: 3 for complete trials except trial 3 (2, early stop); pruned 1, failed 2.
- trial 0 has 3 re-evaluation seeds.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from automtl.config import (
    LossConfig,
    ModelConfig,
    PWiseRConfig,
    TrainConfig,
    TrialConfig,
    to_dict,
)
from automtl.search.store import Store

OBJECTIVES = ["ctr_auc", "cvr_auc", "ctcvr_auc"]
EVIL = "<script>window.__xss = 1</script>"
EVIL_VALUE = "<img src=x onerror=\"window.__xss = 2\">"

# number: (state, values, arch, lr, n_experts, pwiser, epochs)
TRIALS = [
    ("COMPLETE", (0.70, 0.60, 0.50), "mmoe", 1e-3, 4, False, 3),
    ("COMPLETE", (0.72, 0.58, 0.49), "ple", 3e-3, 8, True, 3),
    ("COMPLETE", (0.68, 0.55, 0.45), "mmoe", 5e-4, 2, False, 3),
    ("COMPLETE", (0.65, 0.65, 0.40), "shared_bottom", 2e-3, 4, True, 2),
    ("COMPLETE", (0.69, 0.59, 0.48), "ple", 1e-4, 6, False, 3),
    ("PRUNED", None, "mmoe", 8e-3, 2, False, 1),
    ("FAIL", None, "ple", 9e-3, 8, False, 2),
    ("COMPLETE", (0.71, 0.50, 0.55), "mmoe", 7e-4, 4, False, 3),
]
FRONT = {2: {0, 1, 3}, 3: {0, 1, 3, 7}}
N_COMPLETE = 6


def make_study(db: Path | str, name: str = "known", n_objectives: int = 2, evil: bool = False,
               running: bool = False) -> tuple[str, optuna.Study]:
    """Create the known study in SQLite file `db` (or at storage URL `db`); returns (storage
    URL, study)."""
    url = db if isinstance(db, str) else f"sqlite:///{db}"
    objectives = OBJECTIVES[:n_objectives]
    study = optuna.create_study(study_name=name, storage=url,
                                directions=["maximize"] * n_objectives)
    study.set_user_attr("objectives", objectives)
    study.set_user_attr("dataset", {"name": "synthetic", "data_dir": None,
                                    "options": {"rows": 4000, "n_tasks": n_objectives}})
    study.set_user_attr("space", "default")
    study.set_user_attr("automtl_version", "0.1.0")
    store = Store(url)
    archs = ["mmoe", "ple", "shared_bottom"]
    dists = {
        "arch": CategoricalDistribution(archs),
        "lr": FloatDistribution(1e-4, 1e-2, log=True),
        "n_experts": IntDistribution(2, 8),
    }
    if evil:
        dists["note"] = CategoricalDistribution([EVIL_VALUE, "plain"])
    for number, (state, vals, arch, lr, n_experts, pwiser, epochs) in enumerate(TRIALS):
        cfg = TrialConfig(
            model=ModelConfig(arch=arch, n_experts=n_experts),  # type: ignore[arg-type]
            loss=LossConfig(pwiser=PWiseRConfig() if pwiser else None),
            train=TrainConfig(lr=lr, epochs=3),
        )
        params = {"arch": arch, "lr": lr, "n_experts": n_experts}
        if evil:
            params["note"] = EVIL_VALUE
        values = list(vals[:n_objectives]) if vals else None
        attrs = {"config": to_dict(cfg), "arch": arch, "bottom": "shared",
                 "n_params": 1000 * n_experts, "epochs_run": epochs, "samples_per_s": 1e5}
        if values:
            attrs["val_metrics"] = dict(zip(objectives, values))
            attrs["test_metrics"] = {m: v - 0.01 for m, v in zip(objectives, values)}
        if state == "FAIL":
            attrs["fail_reason"] = "loss became NaN at step 3 (term bce)"
        if state == "PRUNED":
            attrs["pruned_rung"] = 1
        study.add_trial(create_trial(state=TrialState[state], values=values, params=params,
                                     distributions=dists, user_attrs=attrs))
        base = vals or (0.6, 0.5, 0.4)
        for epoch in range(1, epochs + 1):
            store.record_epoch(name, number, epoch, {
                m: base[i] - 0.02 * (epochs - epoch) for i, m in enumerate(objectives)})
    store.refresh_front(study)
    for seed in (1, 2, 3):
        store.record_reeval(name, 0, seed, {m: 0.69 + 0.01 * seed for m in objectives},
                            {m: 0.68 + 0.01 * seed for m in objectives})
    if running:
        study.ask()  # a trial left RUNNING, as during a search
    store.dispose()
    return url, study


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 and a free port; yields its base URL and
    stops the server afterwards."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("dashboard server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive(), "dashboard server did not stop"
