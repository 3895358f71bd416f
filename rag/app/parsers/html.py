"""HTML: visible text in document order, ``<h1>``–``<h6>`` as the title path.

Scripts, styles, navigation and other chrome are dropped: they repeat on every page of a site
and would crowd the real content out of retrieval. Block elements end a line so paragraphs and
table rows stay apart; inline whitespace is collapsed as a browser would.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Comment, Declaration, Doctype, NavigableString, ProcessingInstruction, Tag

from rag.app.parsers.base import ParseError, Section, SectionBuilder
from rag.app.parsers.txt import decode_text

_DROPPED = ("script", "style", "nav", "noscript", "template", "iframe", "svg", "head", "form")
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_BLOCKS = frozenset(
    "address article aside blockquote br dd div dl dt figcaption figure footer header hr li main "
    "ol p pre section table tbody thead tfoot tr ul".split()
)
_CELLS = frozenset(("td", "th"))
_NON_TEXT = (Comment, Declaration, Doctype, ProcessingInstruction)


def parse(data: bytes) -> list[Section]:
    soup = BeautifulSoup(decode_text(data), "lxml")
    for tag in soup.find_all(_DROPPED):
        tag.decompose()
    root = soup.body or soup
    builder = SectionBuilder()
    for node in root.descendants:
        if isinstance(node, Tag):
            _visit_tag(node, builder)
        elif isinstance(node, NavigableString) and not isinstance(node, _NON_TEXT):
            if node.find_parent(list(_HEADINGS)) is None:
                builder.add_text(re.sub(r"\s+", " ", str(node)))
    sections = [_strip_lines(section) for section in builder.sections()]
    if not sections:
        raise ParseError("The HTML page has no visible text.")
    return sections


def _visit_tag(tag: Tag, builder: SectionBuilder) -> None:
    if tag.name in _HEADINGS:
        builder.add_heading(_HEADINGS[tag.name], tag.get_text(" ", strip=True))
    elif tag.name in _BLOCKS:
        builder.add_text("\n")
    elif tag.name in _CELLS and tag.find_previous_sibling(_CELLS) is not None:
        builder.add_text(" | ")


def _strip_lines(section: Section) -> Section:
    """Indentation in HTML source is markup layout, not content."""
    text = "\n".join(line.strip() for line in section.text.split("\n"))
    return Section(text, section.title_path, section.page)
