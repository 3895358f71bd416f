"""``chunk_method`` laws: statutes and contracts, one chunk per article or clause.

Parts, chapters, sections, articles (``Article 5``, ``Art. 5``, ``§ 5``, ``第五条``) and
numbered clauses (``1.``, ``2.1``) are headings; each clause is chunked on its own (split only
when it is larger than ``chunk_token_num``) and starts with its full path
(``Chapter 2 > Article 14``), so a retrieved clause says where it stands.
"""

from __future__ import annotations

from rag.app.naive import ChunkText
from rag.app.parsers import parse
from rag.app.parsers.limits import ReadLimits
from rag.app.structure import CJK_NUMBER, chunk_by_heading, numbered, restructure, rule

RULES = [
    rule(r"(?P<label>(?:part|book|title)\s+[ivxlc\d]+)\b", 1),
    rule(rf"(?P<label>chapter\s+[ivxlc\d]+\b|第{CJK_NUMBER}章)", 2),
    rule(rf"(?P<label>section\s+\d+[a-z]?\b|第{CJK_NUMBER}节)", 3),
    rule(rf"(?P<label>(?:article|art\.)\s*\d+[a-z]?\b|第{CJK_NUMBER}条|§\s*\d+[a-z]?\b)", 4),
    numbered(5, title_only=False),
]


def chunk_file(filename: str, data: bytes, parser_config: dict | None, limits: ReadLimits) -> list[ChunkText]:
    sections = parse(filename, data, limits.package, limits.formats)
    return chunk_by_heading(restructure(sections, RULES), parser_config)
