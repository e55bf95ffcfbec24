"""Exception types of automtl.

`AutomtlError` is the one exception type for problems a user can cause (bad file, bad YAML,
unknown name, empty split ...). Its message is one line naming the file/key and the fix; the CLI
prints it without a traceback and exits with code 2. Bugs raise ordinary Python exceptions.
"""

from __future__ import annotations


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
