"""The live dashboard: a small read-only Starlette app over one study.

Routes (all GET): ``/`` the page, ``/static/plotly.js`` (served locally, works offline),
``/api/state`` (fingerprint + running flag; the page polls it and redraws when it changes),
``/api/summary``, ``/api/figures``, ``/api/trials`` and ``/api/trial/{number}`` (config YAML and
export command). Strings are escaped server-side in HTML and figures; the page inserts every
other value with ``textContent``.
"""

from __future__ import annotations

import contextlib
import html
import math
import shlex
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from automtl.errors import AutomtlError
from automtl.report._page import PAGE
from automtl.report.figures import build_figures, figure_json, param_importances
from automtl.report.html import dataset_label
from automtl.report.snapshot import StudyReader, StudySnapshot, TrialRow
from automtl.search.dburl import mask_url
from automtl.search.defaults import DEFAULT_STORAGE
from automtl.search.meta import DETAIL_FIELDS, POINT_FIELDS, TrialMeta
from automtl.yamlio import dump_yaml


def _clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become null (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def export_command(study_name: str, number: int, storage_url: str = DEFAULT_STORAGE,
                   weights: dict[str, float] | None = None) -> str:
    """The shell command that writes trial `number`'s config as YAML (password masked); with
    `weights`, the point of a conditioned trial served at that task-weight vector."""
    cmd = ["automtl", "export", "--study", study_name, "--trial", str(number),
           "--format", "yaml", "-o", f"trial_{number}.yaml"]
    if weights:
        cmd[6:6] = ["--weights", ",".join(f"{k}={v:.6g}" for k, v in weights.items())]
    if storage_url != DEFAULT_STORAGE:
        cmd[2:2] = ["--storage", mask_url(storage_url)]
    return shlex.join(cmd)


def trial_yaml(t: TrialRow) -> str:
    """The trial's full TrialConfig as YAML (its params when search recorded no config)."""
    if t.config is not None:
        return dump_yaml(t.config)
    return "# no TrialConfig recorded for this trial; its Optuna params:\n" + dump_yaml(
        {"params": t.params})


def summary_json(snap: StudySnapshot) -> dict[str, Any]:
    """Summary shown above the figures: dataset, trials by state, best per objective, front."""
    best = {o: {"trial": t.number, "value": t.values[snap.objectives.index(o)],  # type: ignore
                "arch": t.arch} for o, t in snap.best().items()}
    return _clean({
        "study": snap.name, "storage": snap.storage, "dataset": dataset_label(snap),
        "objectives": snap.objectives, "directions": snap.directions,
        "states": snap.state_counts(), "best": best, "front": snap.front,
        "running": snap.running, "space": snap.meta.space,
        # with conditioned trials: which trial and task-weight vector each front point is
        "point_front": [{"trial": n, "weights": (snap.sweep_point(n, p).weights  # type: ignore
                                                 if p is not None else None)}
                        for n, p in snap.point_front],
        "stale": {str(k): v for k, v in snap.stale.items()},
    })


def trials_json(snap: StudySnapshot) -> dict[str, Any]:
    """The trials table: column names and one row per trial (params as columns)."""
    params = sorted({p for t in snap.trials for p in t.params})
    fixed = ["trial", "state", *snap.objectives, "front", "arch", "epochs", "n_params", "seconds"]
    columns = fixed + [f"{p} (param)" if p in fixed else p for p in params]
    front = snap.front_set
    rows = []
    for t in snap.trials:
        values = t.values if t.values is not None else [None] * len(snap.objectives)
        meta = t.meta
        epochs = meta.epochs_run if meta.epochs_run is not None else \
            len(snap.histories.get(t.number, []))
        rows.append([t.number, t.state.lower(), *values, "yes" if t.number in front else "",
                     t.arch, epochs, meta.n_params,
                     None if t.duration_s is None else round(t.duration_s, 1),
                     *[t.params.get(p) for p in params]])
    return _clean({"columns": columns, "rows": rows})


def trial_json(snap: StudySnapshot, number: int,
               point: int | None = None) -> dict[str, Any] | None:
    """One trial's detail: YAML config, export command, values and reasons; with `point`, the
    sweep point of a conditioned trial (its task weights, metrics and export command)."""
    t = snap.trial(number)
    if t is None:
        return None
    sp = snap.sweep_point(number, point) if point is not None else None
    if sp is not None:
        return _clean({
            "number": t.number, "state": t.state.lower(), "point": sp.point,
            "weights": sp.weights, "on_front": (number, sp.point) in set(snap.point_front),
            "values": {o: sp.val.get(o) for o in snap.objectives}, "test": sp.test,
            "attrs": TrialMeta.pick(t.user_attrs, POINT_FIELDS),
            "yaml": trial_yaml(t),
            "export": export_command(snap.name, t.number, snap.storage, sp.weights),
        })
    attrs = TrialMeta.pick(t.user_attrs, DETAIL_FIELDS)
    return _clean({
        "number": t.number, "state": t.state.lower(), "on_front": t.number in snap.front_set,
        "values": dict(zip(snap.objectives, t.values or [])),
        "test": t.meta.test_metrics, "attrs": attrs,
        "yaml": trial_yaml(t), "export": export_command(snap.name, t.number, snap.storage),
    })


class DashboardData:
    """Thread-safe cache of a study's snapshot and figures, rebuilt when the study changes."""

    def __init__(self, storage_url: str, study_name: str) -> None:
        self.reader = StudyReader(storage_url, study_name)
        self._lock = threading.Lock()
        self._version: str | None = None
        self._snap: StudySnapshot | None = None
        self._figures: dict[str, Any] | None = None
        # importance only changes when a trial completes, not with every epoch record
        self._importance_key: tuple[int, ...] | None = None
        self._importances: dict[str, dict[str, float]] | str | None = None

    def current(self) -> tuple[str, StudySnapshot]:
        """(fingerprint, snapshot), re-read from the database only when something changed."""
        with self._lock:
            version = self.reader.fingerprint()
            if version != self._version or self._snap is None:
                self._snap = self.reader.snapshot()
                self._figures = None
                self._version = version
            return self._version, self._snap

    def figures(self) -> dict[str, Any]:
        """Figure JSON by name (FIGURES order), built once per study version."""
        version, snap = self.current()
        with self._lock:
            if self._figures is None or self._version != version:
                key = tuple(t.number for t in snap.complete)
                if key != self._importance_key:
                    self._importances = param_importances(snap)
                    self._importance_key = key
                figs = build_figures(snap, self._importances)
                self._figures = {n: figure_json(f) for n, f in figs.items()}
            return self._figures

    def close(self) -> None:
        """Release database connections."""
        self.reader.close()


def create_app(storage_url: str, study_name: str, refresh_s: float = 5.0,
               host: str | None = None) -> Any:
    """The Starlette application for one study (raises AutomtlError if it cannot be opened).

    `host`: the address the server binds; requests naming another host are refused (400).
    """
    try:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import HTMLResponse, JSONResponse, Response
        from starlette.routing import Route
    except ModuleNotFoundError:
        raise AutomtlError("the dashboard needs starlette and uvicorn; pip install "
                           "'automtl[dashboard]'") from None
    from plotly.offline import get_plotlyjs

    data = DashboardData(storage_url, study_name)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        data.close()

    plotly_js = get_plotlyjs()

    def page(request: Request) -> HTMLResponse:
        # the study name goes in last, so text inside it is never taken for a placeholder
        body = PAGE.replace("{{REFRESH_MS}}", str(int(refresh_s * 1000))).replace(
            "{{TITLE}}", html.escape(study_name, quote=True))
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})

    def plotly(request: Request) -> Response:
        return Response(plotly_js, media_type="application/javascript",
                        headers={"Cache-Control": "max-age=86400"})

    def state(request: Request) -> JSONResponse:
        version, snap = data.current()
        return JSONResponse({"version": version, "running": snap.running,
                             "trials": len(snap.trials),
                             "stale": {str(k): v for k, v in snap.stale.items()}})

    def summary(request: Request) -> JSONResponse:
        return JSONResponse(summary_json(data.current()[1]))

    def figures(request: Request) -> JSONResponse:
        figs = data.figures()
        return JSONResponse({"order": list(figs), "figures": figs})

    def trials(request: Request) -> JSONResponse:
        return JSONResponse(trials_json(data.current()[1]))

    def trial(request: Request) -> JSONResponse:
        try:
            number = int(request.path_params["number"])
        except ValueError:
            return JSONResponse({"error": "trial number must be an integer"}, status_code=400)
        point = request.query_params.get("point")
        detail = trial_json(data.current()[1], number,
                            int(point) if point and point.lstrip("-").isdigit() else None)
        if detail is None:
            return JSONResponse({"error": f"no trial {number}"}, status_code=404)
        return JSONResponse(detail)

    app = Starlette(routes=[
        Route("/", page),
        Route("/static/plotly.js", plotly),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/api/state", state),
        Route("/api/summary", summary),
        Route("/api/figures", figures),
        Route("/api/trials", trials),
        Route("/api/trial/{number}", trial),
    ], lifespan=lifespan)
    allowed = allowed_hosts(host) if host is not None else None
    return HostCheck(app, allowed) if allowed is not None else app


_ANY_HOST = ("0.0.0.0", "::", "")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def allowed_hosts(host: str) -> set[str] | None:
    """Host-header names accepted for a server bound to `host` (None: any, for 0.0.0.0/::).

    A loopback bind accepts only loopback names: a page on another site whose DNS name is
    re-bound to 127.0.0.1 sends its own name and is refused (DNS rebinding).
    """
    if host in _ANY_HOST:
        return None
    names = {host.strip("[]").lower()}
    if names & set(_LOOPBACK):
        names |= set(_LOOPBACK)
    return names


def _host_name(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8080
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class HostCheck:
    """ASGI middleware: 400 for a request whose Host header names another host."""

    def __init__(self, app: Any, allowed: set[str]) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers") or [])
            name = _host_name(headers.get(b"host", b"").decode("latin-1"))
            if name not in self.allowed:
                from starlette.responses import PlainTextResponse

                await PlainTextResponse("invalid Host header", status_code=400)(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)


def listen(host: str, port: int) -> Any:
    """A bound socket on host:port (port 0: a free one), or a one-line error."""
    import socket

    sock = None
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host or None, port,
                                                          type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)  # connections wait in the backlog until the server accepts them
    except OSError as exc:
        if sock is not None:
            sock.close()
        reason = exc.strerror or str(exc)
        raise AutomtlError(f"--host {host} --port {port}: cannot listen ({reason}); pick "
                           "another --port (0 = any free port) or --host") from None
    return sock


def serve(storage_url: str, study_name: str, host: str = "127.0.0.1", port: int = 8080,
          refresh_s: float = 5.0, announce: Callable[[str], None] | None = None) -> None:
    """Run the dashboard until interrupted; `announce` gets the URL (with the real port, also
    for port 0) once the study is open and the port is bound."""
    app = create_app(storage_url, study_name, refresh_s, host=host)
    import uvicorn

    sock = listen(host, port)
    real_port = sock.getsockname()[1]
    if announce is not None:
        shown = f"[{host}]" if ":" in host else host
        announce(f"http://{shown}:{real_port}/")
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=real_port, log_level="warning"))
    server.run(sockets=[sock])


__all__ = ["DashboardData", "HostCheck", "allowed_hosts", "create_app", "export_command", "listen",
           "serve", "summary_json", "trial_json", "trial_yaml", "trials_json"]
