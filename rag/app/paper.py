"""``chunk_method`` paper: scientific papers, split on their sections, the abstract kept whole.

``Abstract``, ``Introduction``, ``Related Work``, ``Methods``, ``Results``, ``Discussion``,
``Conclusion``, ``References`` (alone on a line, optionally numbered ``1`` or ``I.``) and
numbered titles (``3.1 Datasets``) are headings. The abstract is one chunk whatever its size:
it is what a question about the paper most often should find, and cutting it loses that.
Other sections are chunked on their own, each chunk starting with its heading path.
"""

from __future__ import annotations

import re

from rag.app.naive import ChunkText
from rag.app.parsers import Section, parse
from rag.app.parsers.limits import ReadLimits
from rag.app.structure import chunk_by_heading, numbered, restructure, rule

_NAMED = (r"abstract|introduction|related work|background|preliminaries|methods?|methodology|approach|"
          r"experiments?|experimental setup|evaluation|results|discussion|conclusions?|limitations|"
          r"future work|acknowledge?ments?|references|bibliography|appendix(?:\s+[a-z])?")
RULES = [
    rule(rf"(?P<label>(?:(?:\d{{1,2}}|[ivx]{{1,4}})\.?\s+)?(?:{_NAMED}))\s*:?$", 1),
    numbered(1),
]
_ABSTRACT = re.compile(r"^(?:abstract|summary)\b", re.IGNORECASE)


def chunk_file(filename: str, data: bytes, parser_config: dict | None, limits: ReadLimits) -> list[ChunkText]:
    sections = parse(filename, data, limits.package, limits.formats)
    return chunk_by_heading(restructure(sections, RULES), parser_config, whole=_is_abstract)


def _is_abstract(section: Section) -> bool:
    return bool(section.title_path) and bool(_ABSTRACT.match(section.title_path[-1]))
