"""Database URLs: the one masking function for printing them, their SQLite file, and the
``grpc://host:port`` address of an automtl storage proxy (`automtl.search.proxy`).

`mask_url` is what every message, table title and JSON document shows instead of a storage URL;
`scrub` cleans any other text (a driver's error message) of the URL's secrets. Both work on
URLs SQLAlchemy cannot parse, for every dialect: a password in the user-info part (even one
containing ``@``, ``/`` or ``?``), in the query string (``?password=``, ``sslpassword=``,
``token=`` ...) or percent-encoded.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

MASK = "***"

# Query-string keys whose values are secrets (libpq, MySQL, MSSQL, Oracle, cloud drivers).
_SECRET_KEY = re.compile(r"(?i)(pass(word|wd)?|pwd|secret|token|credential|api[_-]?key"
                         r"|access[_-]?key|auth)")
_QUERY_PAIR = re.compile(r"([?&;])([^=&;?#]+)=([^&;#]*)")


def _userinfo_span(url: str) -> tuple[int, int] | None:
    """Start/end of the password in `scheme://user:password@host...` (None when there is none).

    The password ends at the last ``@`` before the query string, so ``u:pa@ss@host`` masks
    ``pa@ss``; a ``?`` inside the password is covered when the text after it has no ``=``.
    """
    start = url.find("://")
    if start < 0:
        start = -3  # "user:pw@host" without a scheme
    rest_at = start + 3
    q = url.find("?", rest_at)
    while q >= 0 and "@" in url[q:] and "=" not in url[q:url.rfind("@")]:
        q = url.find("?", q + 1)  # that '?' belongs to the password, not to a query string
    head_end = q if q >= 0 else len(url)
    at = url.rfind("@", rest_at, head_end)
    if at < 0:
        return None
    colon = url.find(":", rest_at, at)
    if colon < 0:
        return None  # a user name only
    return colon + 1, at


def url_secrets(url: str) -> list[str]:
    """The secret substrings of `url` (raw and percent-decoded), longest first."""
    found: list[str] = []
    span = _userinfo_span(url)
    if span and span[1] > span[0]:
        password = url[span[0]:span[1]]
        # a driver splitting at the first '@' prints the rest of the password as a host name
        found += [password, *re.split(r"[@/?:]", password)]
    for _sep, key, value in _QUERY_PAIR.findall(url):
        if _SECRET_KEY.search(key) and value:
            found.append(value)
    try:  # what the driver will receive (SQLAlchemy's own parse of the password)
        import sqlalchemy as sa

        parsed = sa.engine.make_url(url).password
        if parsed:
            found.append(str(parsed))
    except Exception:  # noqa: BLE001 - any unparsable URL: the structural spans above suffice
        pass
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def mask_url(url: str) -> str:
    """`url` with every password and secret query value replaced by ``***`` (safe to print)."""
    text = str(url)
    span = _userinfo_span(text)
    if span and span[1] > span[0]:
        text = text[:span[0]] + MASK + text[span[1]:]
    text = _QUERY_PAIR.sub(
        lambda m: f"{m[1]}{m[2]}={MASK}" if _SECRET_KEY.search(m[2]) and m[3] else m[0], text)
    return scrub(text, url, mask_url_first=False)


def scrub(text: str, url: str, *, mask_url_first: bool = True) -> str:
    """`text` (e.g. a driver's error message) with `url` masked and its secrets removed."""
    out = str(text)
    if mask_url_first and url:
        out = out.replace(url, mask_url(url))
    for secret in url_secrets(url):
        if len(secret) >= 3:  # shorter ones would mangle the text; the structural mask has them
            out = out.replace(secret, MASK)
    return out


PROXY_SCHEME = "grpc://"
PROXY_PORT = 13000  # Optuna's default for its gRPC storage proxy


def is_proxy_url(url: str) -> bool:
    """Whether `url` names an automtl storage proxy (``grpc://host:port``) instead of a database."""
    return str(url).strip().lower().startswith(PROXY_SCHEME)


def proxy_address(url: str) -> tuple[str, int] | None:
    """(host, port) of a ``grpc://host[:port]`` URL; None when it is malformed."""
    rest = str(url).strip()[len(PROXY_SCHEME):].rstrip("/")
    match = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?", rest)
    if match is None:
        return None
    port = int(match[2]) if match[2] else PROXY_PORT
    return (match[1].strip("[]"), port) if 0 < port < 65536 else None


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other backends or in-memory)."""
    import sqlalchemy as sa

    try:
        u = sa.engine.make_url(url)
    except Exception:  # noqa: BLE001 - malformed: not a SQLite file URL
        return None
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    db = u.database
    if db.startswith("file:"):  # SQLite URI filename (mode=ro&uri=true)
        db = unquote(db[5:].split("?", 1)[0])
    return Path(db)


__all__ = ["MASK", "PROXY_PORT", "PROXY_SCHEME", "is_proxy_url", "mask_url", "proxy_address", "scrub",
           "sqlite_path", "url_secrets"]
