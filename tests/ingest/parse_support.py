"""Helpers the parse-limit and parse-cancel tests share: child process state, slow documents."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from tests.ingest.documents import docx_of_empty_paragraphs


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a killed child not yet reaped, a zombie, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def address_space_mb(pid: int) -> int:
    """The process's current address space (VmSize), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) // 1024
    raise AssertionError(f"no VmSize for {pid}")


def slow_docx(paragraphs: int = 1_500_000) -> bytes:
    """A .docx that takes python-docx tens of seconds (about 13 µs an element), in ~60 KB;
    parse it with the element limit raised above ``paragraphs``."""
    return docx_of_empty_paragraphs(paragraphs)


async def eventually(predicate: Callable[[], object], seconds: float, what: str) -> float:
    """Seconds until ``predicate()`` is true; fails after ``seconds`` (a bound, not a speed claim)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if predicate():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")
