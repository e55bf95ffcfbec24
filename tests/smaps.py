"""Resident memory of one file's mappings in this process, for the tests of mapped splits."""

from __future__ import annotations

from pathlib import Path


def resident_kb(path: Path) -> int:
    """Resident kB of this process's mappings of `path` (/proc/self/smaps; Linux only)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            inside = len(head) > 5 and head[5] == str(path)
        elif inside and line.startswith("Rss:"):
            total += int(head[1])
    return total
