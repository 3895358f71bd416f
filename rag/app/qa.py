"""``chunk_method`` qa: question/answer pairs, one chunk each, found by the question.

Sources, as in RAGFlow:
- .xlsx/.xls/.csv: the first column is the question, the second the answer; a first row
  naming the columns (``Question``/``Answer``, ``Q``/``A``, ``问题``/``答案``) is skipped;
- .txt: one pair per line, question and answer split by a tab (or a comma when the line has no
  tab); a line without a separator continues the previous answer;
- .md, .docx, .html and other formats with headings: each heading is a question and the text
  under it its answer.

A chunk's content is ``Question: q<TAB>Answer: a`` (what a retrieval returns and a chat reads),
while its full-text terms, its embedding and its ``question_kwd`` are the question alone: a
user's question is matched against the questions, not against the answers' wording.
"""

from __future__ import annotations

from rag.app.naive import ChunkText
from rag.app.parsers import ParseError, file_extension, parse
from rag.app.parsers.limits import ReadLimits
from rag.app.parsers.sheets import SHEET_EXTENSIONS, Sheet, cell_text
from rag.app.sheet_files import read_sheet_file
from rag.utils.token_utils import num_tokens

HEADER_WORDS = {"question", "questions", "q", "问题", "answer", "answers", "a", "答案", "回答"}


def chunk_file(filename: str, data: bytes, parser_config: dict | None, limits: ReadLimits) -> list[ChunkText]:
    if file_extension(filename) in SHEET_EXTENSIONS:
        pairs = sheet_pairs(read_sheet_file("qa", filename, data, limits), file_extension(filename) == ".txt")
    else:
        sections = parse(filename, data, limits.package, limits.formats)
        pairs = [(section.title_path[-1], section.text) for section in sections if section.title_path]
    chunks = [qa_chunk(question, answer) for question, answer in pairs if question and answer]
    if not chunks:
        raise ParseError("No question/answer pairs found: the qa method wants two columns (question, answer) "
                         "in a sheet or a tab-separated .txt, or headings as questions in other files.")
    return chunks


def sheet_pairs(sheets: list[Sheet], continued_lines: bool) -> list[tuple[str, str]]:
    """(question, answer) per row; with ``continued_lines`` a one-cell row extends the last answer."""
    pairs: list[tuple[str, str]] = []
    for sheet in sheets:
        rows = [[cell_text(cell) for cell in row] for row in sheet.rows]
        if rows and _is_header(rows[0]):
            rows = rows[1:]
        for row in rows:
            cells = [cell for cell in row if cell]
            if len(row) >= 2 and row[0] and row[1]:
                pairs.append((row[0], row[1]))
            elif continued_lines and pairs and len(cells) == 1:
                question, answer = pairs[-1]
                pairs[-1] = (question, f"{answer}\n{cells[0]}")
    return pairs


def _is_header(row: list[str]) -> bool:
    return len(row) >= 2 and row[0].lower() in HEADER_WORDS and row[1].lower() in HEADER_WORDS


def qa_chunk(question: str, answer: str) -> ChunkText:
    content = f"Question: {question}\tAnswer: {answer}"
    return ChunkText(content, num_tokens(content), match_text=question, embed_text=question, questions=(question,))
