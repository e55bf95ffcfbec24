"""A Ctrl-C that cannot be lost.

Python raises KeyboardInterrupt wherever the main thread happens to be. When that is a
finalizer or a weakref callback (the garbage collector runs them at arbitrary points), the
exception is printed as "Exception ignored in ..." and swallowed: a worker Ctrl-C'd at that
instant finished its trial and later exited 0 instead of stopping with 130. The handler below
also records the request; the search checks it after each trial's training (`check`) and
between trials (`requested`), so a swallowed interrupt still stops the run.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_requested = threading.Event()


def _handler(signum: int, frame: FrameType | None) -> None:
    _requested.set()
    raise KeyboardInterrupt


def install() -> None:
    """Use the recording handler for SIGINT (main thread only; elsewhere Python refuses)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)


def requested() -> bool:
    """Whether a Ctrl-C arrived since `install`, raised or swallowed."""
    return _requested.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C arrived (even one a finalizer swallowed)."""
    if _requested.is_set():
        raise KeyboardInterrupt
