"""Benchmarks write their results between markers of docs/benchmarks.md, leaving the rest as it is."""

from __future__ import annotations

from pathlib import Path


def write_section(doc: Path, begin: str, end: str, text: str) -> None:
    """Replace the text between ``begin`` and ``end`` in ``doc`` (appended at the end if missing)."""
    current = doc.read_text() if doc.exists() else "# Benchmarks\n"
    section = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + section + rest.split(end, 1)[1]
    else:
        current = current.rstrip() + "\n\n" + section + "\n"
    doc.write_text(current)
