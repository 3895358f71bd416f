"""The naive chunker: size limit, delimiters, overlap, headings, pages, giant sentences."""

from __future__ import annotations

import random
import re

import pytest

from rag.app.naive import (
    BUILTIN_EMBEDDING_CHUNK_TOKENS,
    DEFAULT_CHUNK_TOKENS,
    ChunkConfig,
    chunk,
    chunk_tokens_for_model,
    delimiter_pattern,
    document_title,
    parse_and_chunk,
)
from rag.app.parsers import ParseError, Section
from rag.utils.token_utils import num_tokens

SENTENCES = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(200)]


def words(text: str) -> list[str]:
    return text.split()


def random_sections(rng: random.Random) -> list[Section]:
    vocabulary = ["alpha", "beta", "délta", "数据", "検索", "🙂", "x" * 40, "naïve", "the", "and",
                  "\n", "; ", "! ", "? ", ". ", "。", "\n\n"]
    sections = []
    for _ in range(rng.randint(1, 5)):
        text = "".join(rng.choice(vocabulary) + rng.choice(["", " "]) for _ in range(rng.randint(1, 300)))
        path = tuple(rng.choice(["Intro", "Setup", "A rather long heading " * 3]) for _ in range(rng.randint(0, 2)))
        if text.strip():
            sections.append(Section(text.strip(), path, rng.choice([None, 1, 2])))
    return sections


@pytest.mark.parametrize("limit", [8, 16, 64, 128, 512])
@pytest.mark.parametrize("overlap", [0, 30, 90])
def test_every_chunk_is_within_the_limit_counted_exactly_and_not_empty(limit, overlap):
    rng = random.Random(limit * 100 + overlap)
    for _ in range(25):
        for piece in chunk(random_sections(rng), {"chunk_token_num": limit, "overlap": overlap}):
            assert piece.content and piece.content == piece.content.strip()
            assert piece.token_count == num_tokens(piece.content)
            assert piece.token_count <= limit


def test_without_overlap_the_chunks_hold_all_the_text_once_in_order():
    text = " ".join(SENTENCES)
    chunks = chunk([Section(text)], {"chunk_token_num": 50})
    assert len(chunks) > 5
    assert words(" ".join(c.content for c in chunks)) == words(text)
    assert max(c.token_count for c in chunks) <= 50
    # packed close to the limit, not sentence by sentence
    assert sum(c.token_count for c in chunks) / len(chunks) > 35


def test_chunks_end_at_delimiters():
    text = "".join(f"clause {i} of the contract;" for i in range(60))
    chunks = chunk([Section(text)], {"chunk_token_num": 30, "delimiter": ";"})
    assert len(chunks) > 3
    assert all(c.content.endswith(";") for c in chunks)
    assert "".join(c.content for c in chunks) == text


def test_newline_delimiter_keeps_lines_whole():
    lines = [f"line {i}: " + "word " * (i % 5 + 1) for i in range(80)]
    chunks = chunk([Section("\n".join(lines))], {"chunk_token_num": 40})
    for c in chunks:
        for line in c.content.split("\n"):
            assert line.strip() in {entry.strip() for entry in lines}


def test_multi_character_delimiter_in_backticks_and_literal_backslash_n():
    pattern = delimiter_pattern("`##`;")
    assert pattern.split("a##b;c#d") == ["a", "b", "c#d"]
    assert delimiter_pattern("\\n").fullmatch("\n\n")
    assert delimiter_pattern("") is None


def test_giant_sentence_without_delimiters_is_cut_by_tokens():
    for giant in ("x" * 20000, "検索エンジン" * 3000, "🙂🙃" * 2000):
        chunks = chunk([Section(giant)], {"chunk_token_num": 100})
        assert len(chunks) > 1
        assert "".join(c.content for c in chunks) == giant  # no character lost or broken
        assert all(c.token_count <= 100 for c in chunks)


def test_long_sentence_is_cut_at_words_before_tokens():
    sentence = " ".join(f"word{i}" for i in range(2000))
    chunks = chunk([Section(sentence)], {"chunk_token_num": 64, "delimiter": "\n"})
    assert all(re.fullmatch(r"(word\d+ ?)+", c.content) for c in chunks)
    assert words(" ".join(c.content for c in chunks)) == words(sentence)


@pytest.mark.parametrize("key", ["overlap", "overlapped_percent"])
def test_overlap_repeats_the_tail_of_the_previous_chunk(key):
    chunks = chunk([Section("\n".join(SENTENCES[:60]))], {"chunk_token_num": 100, key: 30})
    assert len(chunks) > 3
    for previous, current in zip(chunks, chunks[1:], strict=False):
        first_line = current.content.split("\n")[0]
        assert first_line in previous.content.split("\n")
        assert previous.content.split("\n")[-1] in current.content
        assert current.token_count <= 100
    carried = sum(num_tokens(c.content.split("\n")[0]) for c in chunks[1:]) / (len(chunks) - 1)
    assert 0 < carried <= 30


def test_no_overlap_repeats_nothing():
    chunks = chunk([Section("\n".join(SENTENCES[:60]))], {"chunk_token_num": 100, "overlap": 0})
    lines = [line for c in chunks for line in c.content.split("\n")]
    assert len(lines) == len(set(lines)) == 60


def test_overlap_smaller_than_the_last_piece_takes_its_token_tail():
    text = "\n".join(f"Line {i} " + "word " * 25 for i in range(20))
    chunks = chunk([Section(text)], {"chunk_token_num": 64, "overlap": 20})
    assert len(chunks) > 5
    for previous, current in zip(chunks, chunks[1:], strict=False):
        tail = current.content.split("\n")[0].strip()
        assert previous.content.endswith(tail)
        assert 1 <= num_tokens(tail) <= 12
        assert current.token_count <= 64


@pytest.mark.parametrize("config", [{"overlap": 95}, {"overlap": -1}, {"chunk_token_num": 0}])
def test_invalid_settings_are_refused(config):
    with pytest.raises(ValueError):
        ChunkConfig.from_parser_config(config)


def test_chunks_starting_under_a_heading_carry_the_heading_line():
    sections = [
        Section("Short intro.", ("Guide",)),
        Section("\n".join(SENTENCES[:40]), ("Guide", "Install")),
        Section("Run the tool.", ("Guide", "Use")),
    ]
    chunks = chunk(sections, {"chunk_token_num": 80})
    install = [c for c in chunks if "Sentence number" in c.content]
    assert len(install) > 3
    for piece in install[1:]:
        assert piece.content.startswith("Guide > Install\nSentence number")
        assert piece.heading == "Guide > Install"
    assert chunks[0].content.startswith("Guide\nShort intro.")
    assert chunks[-1].content.endswith("Guide > Use\nRun the tool.")


def test_a_chunk_never_ends_on_a_heading_whose_text_went_to_the_next_chunk():
    sections = [Section(SENTENCES[i], (f"Heading {i}",)) for i in range(30)]
    chunks = chunk(sections, {"chunk_token_num": 40})
    for piece in chunks:
        assert not piece.content.split("\n")[-1].startswith("Heading")
        assert piece.content.startswith("Heading")
    text_lines = [line for c in chunks for line in c.content.split("\n") if line.startswith("Sentence")]
    assert text_lines == SENTENCES[:30]


def test_page_of_a_chunk_is_the_page_it_starts_on():
    sections = [Section("\n".join(SENTENCES[p * 10 : p * 10 + 10]), page=p + 1) for p in range(3)]
    chunks = chunk(sections, {"chunk_token_num": 60})
    pages = [c.page for c in chunks]
    assert pages == sorted(pages) and set(pages) == {1, 2, 3}
    for piece in chunks:
        first_sentence = int(re.match(r"Sentence number (\d+)", piece.content).group(1))
        assert piece.page == first_sentence // 10 + 1


def test_defaults_and_model_fit():
    assert ChunkConfig.from_parser_config({}).chunk_tokens == DEFAULT_CHUNK_TOKENS == 512
    assert chunk_tokens_for_model(256) == BUILTIN_EMBEDDING_CHUNK_TOKENS == 218
    assert chunk_tokens_for_model(512, wordpieces_per_token=1.0) == 510
    long_text = "\n".join(SENTENCES)
    assert max(c.token_count for c in chunk([Section(long_text)], None)) <= 512
    assert chunk([], {}) == []


def test_parse_and_chunk_markdown_end_to_end():
    data = b"# Title\n\nIntro paragraph.\n\n## Part\n\n" + "\n".join(SENTENCES[:30]).encode()
    chunks = parse_and_chunk("doc.md", data, {"chunk_token_num": 64})
    assert chunks[0].content.startswith("Title\nIntro paragraph.")
    assert all(c.content.startswith("Title > Part\n") for c in chunks[1:])
    with pytest.raises(ParseError):
        parse_and_chunk("doc.md", b"", {})


def test_null_settings_mean_defaults():
    config = ChunkConfig.from_parser_config({"chunk_token_num": None, "delimiter": None, "overlap": None})
    assert config == ChunkConfig()


def test_a_plain_documents_title_line_goes_with_the_chunks_that_do_not_hold_it():
    body = "\n".join(SENTENCES[:40])
    chunks = parse_and_chunk("notes.txt", f"Okapi field notes\n\n{body}".encode(), {"chunk_token_num": 60})
    assert len(chunks) > 3
    assert chunks[0].content.startswith("Okapi field notes\n") and chunks[0].title is None
    assert all(piece.title == "Okapi field notes" and "Okapi" not in piece.content for piece in chunks[1:])
    assert [c.content for c in chunks] == [c.content for c in chunk([Section(f"Okapi field notes\n\n{body}")],
                                                                    {"chunk_token_num": 60})]


@pytest.mark.parametrize("text", [
    "\n".join(SENTENCES[:40]),                                   # no blank line after the first line
    "First line\nsecond line\n\n" + "\n".join(SENTENCES[:40]),  # the first paragraph is two lines
    " ".join(SENTENCES[:10]) + "\n\n" + "\n".join(SENTENCES[10:40]),  # a paragraph, not a title
    "Only a title line\n\n ",                                   # nothing below it
])
def test_text_without_a_standalone_short_first_line_has_no_title(text):
    assert document_title([Section(text)], 60) == ""
    assert all(piece.title is None for piece in chunk([Section(text)], {"chunk_token_num": 60}))


def test_a_document_with_headings_carries_them_in_its_text_not_as_a_title():
    data = b"# Title\n\nIntro paragraph.\n\n" + "\n".join(SENTENCES[:30]).encode()
    assert all(piece.title is None for piece in parse_and_chunk("doc.md", data, {"chunk_token_num": 64}))
    assert document_title([Section("Title line\n\nbody text", ("Guide",))], 64) == ""
