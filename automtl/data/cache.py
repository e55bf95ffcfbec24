"""The load cache: the first load of a dataset writes a columnar copy keyed by the source
content and the loader options; later loads memory-map it.

Cache root: ``$AUTOMTL_CACHE`` (``off`` disables caching), else ``~/.cache/automtl/cache``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from automtl.data.columnar import is_columnar, load_columnar, save_dataset
from automtl.data.schema import Dataset
from automtl.errors import DataError

# Bump when a loader's output for the same input changes, so old caches are not reused.
CACHE_VERSION = 1
_FULL_HASH_LIMIT = 256 << 20  # hash whole files up to this size; bigger: size+head+tail+mtime
_EDGE = 4 << 20


def cache_root() -> Path | None:
    """The cache folder, or None when caching is disabled (AUTOMTL_CACHE=off)."""
    env = os.environ.get("AUTOMTL_CACHE")
    if env and env.lower() in {"off", "0", "false", "no"}:
        return None
    return Path(env).expanduser() if env else Path.home() / ".cache" / "automtl" / "cache"


def fingerprint(path: Path) -> str:
    """A digest of a source file's content (whole file when small, else size+edges+mtime)."""
    h = hashlib.sha1()
    st = path.stat()
    h.update(f"{path.name}:{st.st_size}".encode())
    with path.open("rb") as fh:
        if st.st_size <= _FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(fh.read(_EDGE))
            fh.seek(-_EDGE, os.SEEK_END)
            h.update(fh.read(_EDGE))
            h.update(str(st.st_mtime_ns).encode())
    return h.hexdigest()


def cache_key(name: str, options: dict[str, Any], files: Iterable[Path] = ()) -> str:
    """Key of one (dataset, options, source content) combination."""
    parts = {
        "v": CACHE_VERSION,
        "name": name,
        "options": options,
        "files": [fingerprint(Path(f)) for f in files],
    }
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached(name: str, options: dict[str, Any], files: Iterable[Path],
           build: Callable[[], Dataset]) -> Dataset:
    """Load from the cache when present, else `build()` and write the cache (best effort)."""
    t0 = time.perf_counter()
    files = list(files)
    root = cache_root()
    if root is None:
        ds = build()
        ds.meta.setdefault("cache", "off")
        return ds
    key = cache_key(name, options, files)
    folder = root / f"{name}-{key}"
    damaged = False
    if is_columnar(folder):
        try:
            ds = load_columnar(folder)
        except DataError:  # a damaged cache entry is rebuilt, never a user error
            damaged = True
        else:
            ds.meta["cache"] = f"hit {folder}"
            ds.meta["load_seconds"] = time.perf_counter() - t0
            return ds
    ds = build()
    ds.meta["cache_key"] = key
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        # another process (a parallel search worker) may have written it meanwhile
        if is_columnar(folder) and not damaged:
            ds.meta["cache"] = f"present {folder}"
        else:
            save_dataset(ds, folder)
            ds.meta["cache"] = f"written {folder}"
    except OSError as exc:  # a read-only home must not stop a search; just skip the cache
        ds.meta["cache"] = f"not written ({exc.__class__.__name__}: {folder})"
    ds.meta["load_seconds"] = time.perf_counter() - t0
    return ds
