"""The value parsers return, the errors they raise, and the heading bookkeeping they share.

Every format ends up as a list of ``Section``: a run of text under one heading path, with its
page when the format has pages. The chunker needs nothing else, so formats stay independent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADING_SEPARATOR = " > "


class IngestError(Exception):
    """A file that cannot become chunks; the message is shown to the user as the reason."""


class UnsupportedFormatError(IngestError):
    """The file's extension is not one Ragline parses."""

    def __init__(self, extension: str, supported: tuple[str, ...]) -> None:
        self.extension = extension
        shown = f"'{extension}'" if extension else "(no extension)"
        self.supported = supported
        super().__init__(f"Unsupported file type {shown}; supported: {', '.join(supported)}")

    def __reduce__(self) -> tuple:
        """Rebuilt from its own arguments: it travels back from a parse child process."""
        return type(self), (self.extension, self.supported)


class ParseError(IngestError):
    """The file has a supported extension but its content cannot be read as that format."""


@dataclass(frozen=True)
class Section:
    """Text under one heading path (outermost heading first); ``page`` is 1-based when known."""

    text: str
    title_path: tuple[str, ...] = ()
    page: int | None = None

    @property
    def heading(self) -> str:
        """The heading path as one line, the form chunks carry it in."""
        return HEADING_SEPARATOR.join(self.title_path)

    @property
    def level(self) -> int:
        return len(self.title_path)


def tidy_text(text: str) -> str:
    """Unify line ends, drop trailing spaces and runs of blank lines: noise for chunking."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t\f\v]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


class SectionBuilder:
    """Collects text and headings in document order into sections.

    Headings form a stack: a heading of level n replaces the open heading of level n and
    closes every deeper one, so each section knows its full path (``Guide > Install``).
    """

    def __init__(self) -> None:
        self._titles: list[tuple[int, str]] = []
        self._buffer: list[str] = []
        self._sections: list[Section] = []

    def add_heading(self, level: int, title: str) -> None:
        title = " ".join(title.split())
        if not title:
            return
        self._close()
        self._titles = [(lvl, t) for lvl, t in self._titles if lvl < level]
        self._titles.append((level, title))

    def add_text(self, text: str) -> None:
        self._buffer.append(text)

    def sections(self) -> list[Section]:
        self._close()
        return self._sections

    def _close(self) -> None:
        text = tidy_text("".join(self._buffer))
        self._buffer = []
        if text:
            self._sections.append(Section(text, tuple(t for _, t in self._titles)))
