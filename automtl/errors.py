"""Exception types of automtl.

`AutomtlError` is the one exception type for problems a user can cause (bad file, bad YAML,
unknown name, empty split ...). Its message is one line naming the file/key and the fix; the CLI
prints it without a traceback and exits with code 2. Bugs raise ordinary Python exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class AutomtlError(Exception):
    """A user-caused problem: one-line message naming what is wrong and how to fix it."""

    exit_code: int = 2


class ConfigError(AutomtlError):
    """A configuration file or value is invalid (message names the YAML path)."""


class DataError(AutomtlError):
    """A data file is missing, unreadable or malformed (message names file, row/column)."""


class TrialFailedError(RuntimeError):
    """A trial could not finish (NaN/inf loss, out of memory, invalid combination).

    Search records the trial as FAIL with this message as the reason and goes on.
    """


@contextmanager
def config_file(path: str | Path, *, unless: tuple[str, ...] = (),
                data_too: bool = False) -> Iterator[None]:
    """Name the config file `path` in a `ConfigError` raised inside (a problem found only once
    the data or the model exists, e.g. an unknown task name), and with `data_too` in a
    `DataError` (generated data: only the file's options can be wrong). Messages already naming
    the file, or starting with one of `unless` (keys a command-line option set), are kept."""
    try:
        yield
    except (ConfigError, DataError) as exc:
        text = str(exc)
        if text.startswith((f"{path}:", *unless)) or not (isinstance(exc, ConfigError)
                                                           or data_too):
            raise
        raise ConfigError(f"{path}: {text}") from None


__all__ = ["AutomtlError", "ConfigError", "DataError", "TrialFailedError", "config_file"]
