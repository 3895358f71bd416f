"""Citation markers: repair of malformed ones, ids, stripping invalid ones, streaming prefixes."""

from __future__ import annotations

import pytest

from rag.prompts import (
    citation_ids,
    citation_prompt,
    repair_citations,
    split_partial_citation,
    strip_invalid_citations,
)


def test_citation_prompt_asks_for_the_canonical_marker() -> None:
    prompt = citation_prompt()
    assert "[ID:n]" in prompt
    assert "{" not in prompt


@pytest.mark.parametrize(
    ("written", "repaired"),
    [
        ("Paris [ID: 3].", "Paris [ID:3]."),
        ("Paris (ID:3).", "Paris [ID:3]."),
        ("Paris (ID: 3 ).", "Paris [ID:3]."),
        ("巴黎【ID:3】。", "巴黎[ID:3]。"),
        ("巴黎（ID：3）。", "巴黎[ID:3]。"),
        ("Paris [id:3].", "Paris [ID:3]."),
        ("Paris [ID:3, ID:4].", "Paris [ID:3][ID:4]."),
        ("Paris [ID:3,4].", "Paris [ID:3][ID:4]."),
        ("Paris [ID: 3; 4, 12].", "Paris [ID:3][ID:4][ID:12]."),
        ("Paris [ID:03].", "Paris [ID:3]."),
        ("Paris [ID:3][ID:4].", "Paris [ID:3][ID:4]."),
    ],
)
def test_malformed_markers_are_repaired(written: str, repaired: str) -> None:
    assert repair_citations(written) == repaired


@pytest.mark.parametrize(
    "text",
    [
        "See [1] and (2), or ref 3.",
        "Bring your ID card (ID required).",
        "arr[i:3] and a dict {\"ID\": 3}",
        "ID: 3 is the block label, not a citation.",
        "[ID:] and [ID:x]",
        "",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert repair_citations(text) == text


def test_citation_ids_in_first_cited_order_each_once_including_malformed() -> None:
    assert citation_ids("A [ID:2]. B (ID: 0) and [ID:2,5]. C [1].") == [2, 0, 5]
    assert citation_ids("no citations") == []


def test_strip_invalid_citations_removes_markers_beyond_the_chunks() -> None:
    text = "A [ID:0]. B [ID:3][ID:1]. C [ID:7]."
    assert strip_invalid_citations(text, 2) == "A [ID:0]. B[ID:1]. C."
    assert strip_invalid_citations(text, 8) == text
    assert strip_invalid_citations(text, 0) == "A. B. C."


@pytest.mark.parametrize("tail", ["[", "[I", "[ID", "[ID:", "[ID: 3", "[ID:3,", "[ID:3, ID:", "(ID:3", "【ID"])
def test_half_marker_at_the_end_of_a_prefix_is_left_for_later(tail: str) -> None:
    prefix = "Paris is the capital [ID:0]. It is large " + tail
    repaired = repair_citations(prefix)
    assert repaired == prefix
    ready, pending = split_partial_citation(repaired)
    assert pending == tail
    assert ready + pending == repaired


def test_text_that_cannot_become_a_marker_is_ready() -> None:
    assert split_partial_citation("see [1") == ("see [1", "")
    assert split_partial_citation("(hello") == ("(hello", "")
    assert split_partial_citation("done [ID:2]") == ("done [ID:2]", "")


def test_streamed_answer_only_grows_and_ends_repaired() -> None:
    answer = "Water boils at 100 °C (ID: 1). At altitude less [ID:2, 3], see [4] too【ID:0】."
    shown_before = ""
    for end in range(1, len(answer) + 1):
        ready, _pending = split_partial_citation(repair_citations(answer[:end]))
        assert ready.startswith(shown_before), (end, ready, shown_before)
        shown_before = ready
    final = repair_citations(answer)
    assert final == "Water boils at 100 °C [ID:1]. At altitude less [ID:2][ID:3], see [4] too[ID:0]."
    assert final.startswith(shown_before)


def test_pathological_inputs_are_handled_in_linear_time() -> None:
    """Regression: an optional separator let a digit run be split exponentially many ways (a
    30-digit run stalled the regex engine for minutes); blanks before markers were rescanned."""
    digits = "[ID:" + "1" * 5000 + " x"
    assert repair_citations(digits) == digits
    assert split_partial_citation(digits) == (digits, "")
    blanks = "a" + " " * 200_000 + "b [ID:9]"
    assert strip_invalid_citations(blanks, 1) == "a" + " " * 200_000 + "b"
