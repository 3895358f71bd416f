"""``chunk_method`` tag: a tag set, one chunk per (description, tags) row.

A tag set is a dataset other datasets' chunks are tagged from (their ``parser_config``'s
``tag_kb_ids``, see ``rag.app.tagging``). Rows come from .xlsx/.xls/.csv/.txt: as in RAGFlow,
the first column is the description (example text) and the second its tags, comma-separated;
a header row naming a ``tag``/``tags`` column picks that column for the tags instead (so
``tag, description`` sheets work too). Each chunk's content is the description, its
``tag_kwd`` the tags, and the tags are also its ``important_kwd`` so a search for a tag finds
its rows.
"""

from __future__ import annotations

import re

from rag.app.naive import ChunkText
from rag.app.parsers import ParseError
from rag.app.parsers.limits import ReadLimits
from rag.app.parsers.sheets import Sheet, cell_text
from rag.app.sheet_files import read_sheet_file
from rag.utils.token_utils import num_tokens

TAG_HEADERS = {"tag", "tags", "标签"}
_SPLIT = re.compile(r"[,;，；、]")


def chunk_file(filename: str, data: bytes, parser_config: dict | None, limits: ReadLimits) -> list[ChunkText]:
    chunks = [chunk for sheet in read_sheet_file("tag", filename, data, limits) for chunk in sheet_chunks(sheet)]
    if not chunks:
        raise ParseError("No tag rows found: the tag method wants two columns, a description and its "
                         "comma-separated tags.")
    return chunks


def sheet_chunks(sheet: Sheet) -> list[ChunkText]:
    rows = [[cell_text(cell) for cell in row] for row in sheet.rows]
    text_column, tag_column = 0, 1
    if rows and any(cell.lower() in TAG_HEADERS for cell in rows[0]):
        tag_column = next(index for index, cell in enumerate(rows[0]) if cell.lower() in TAG_HEADERS)
        text_column = 1 if tag_column == 0 else 0
        rows = rows[1:]
    chunks = []
    for row in rows:
        text = row[text_column] if text_column < len(row) else ""
        tags = tuple(dict.fromkeys(tag.strip() for tag in _SPLIT.split(row[tag_column] if tag_column < len(row) else "")
                                   if tag.strip()))
        if text and tags:
            chunks.append(ChunkText(text, num_tokens(text), tags=tags, keywords=tags))
    return chunks
