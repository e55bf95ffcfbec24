"""What travels between automtl and its storage proxy besides Optuna's own service: the method
names of automtl's gRPC service, its JSON messages (no generated code: grpc's generic handlers
carry bytes), and the one-line errors a client shows."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from automtl.errors import AutomtlError
from automtl.search.dburl import is_proxy_url, proxy_address

SERVICE = "automtl.StorageProxy"
CALL = "Call"  # unary: {"op": name, "args": {...}} -> {"result": ...}
HOLD = "Hold"  # unary -> stream: one message once the study lock is held; cancel to release
CALL_PATH = f"/{SERVICE}/{CALL}"
HOLD_PATH = f"/{SERVICE}/{HOLD}"
# Seconds a client waits for the proxy's first answer before calling it unreachable.
CONNECT_TIMEOUT_S = 10.0
START_HINT = "start it with `automtl storage-proxy --storage DATABASE_URL --port PORT`"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot send {type(value).__name__} to the storage proxy")


def encode(value: Any) -> bytes:
    """JSON bytes (NaN and infinities allowed: both ends are Python)."""
    return json.dumps(value, default=_plain).encode()


def decode(data: bytes) -> Any:
    return json.loads(data.decode()) if data else None


def address(url: str) -> tuple[str, int]:
    """(host, port) of a ``grpc://`` storage URL, or a one-line error."""
    addr = proxy_address(url) if is_proxy_url(url) else None
    if addr is None:
        raise AutomtlError(f"--storage {url}: malformed storage proxy address; use "
                           "grpc://HOST:PORT (the address `automtl storage-proxy` prints)")
    return addr


def require_grpc(url: str) -> Any:
    """The grpc module, or a one-line error naming the extra to install."""
    try:
        import grpc
    except ImportError:
        raise AutomtlError(f"--storage {url}: the gRPC storage proxy needs grpcio and protobuf; "
                           "pip install 'automtl[grpc]'") from None
    return grpc


def rpc_error(url: str, exc: Exception) -> AutomtlError:
    """One line for a failed call to the proxy at `url` (its details are already masked)."""
    import grpc

    code = exc.code() if isinstance(exc, grpc.RpcError) else None  # type: ignore[attr-defined]
    details = (exc.details() if isinstance(exc, grpc.RpcError) else str(exc)) or ""  # type: ignore[attr-defined]
    first = details.strip().splitlines()[0] if details.strip() else str(code)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return AutomtlError(f"--storage {url}: cannot reach the automtl storage proxy "
                            f"({first}); {START_HINT} on that host, or check the address")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return AutomtlError(f"--storage {url}: this gRPC server is not an automtl storage proxy "
                            "(a plain Optuna proxy cannot hold automtl's tables and study lock); "
                            f"{START_HINT}")
    if code == grpc.StatusCode.FAILED_PRECONDITION:  # the proxy's own one-line AutomtlError
        return AutomtlError(f"storage proxy {url}: {first}")
    return AutomtlError(f"--storage {url}: the storage proxy failed ({code}: {first}); see its "
                        "output")


__all__ = ["CALL", "CALL_PATH", "CONNECT_TIMEOUT_S", "HOLD", "HOLD_PATH", "SERVICE", "address",
           "decode", "encode", "require_grpc", "rpc_error"]
