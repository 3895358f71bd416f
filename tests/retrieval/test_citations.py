"""insert_citations: [ID:n] after supported sentences, only when the answer cites nothing."""

from __future__ import annotations

import numpy as np

from rag.nlp.search import insert_citations, split_sentences

CHUNKS = [
    {"content_with_weight": "Aspirin lowers the risk of heart attacks in adults over fifty."},
    {"content_with_weight": "Volcanic eruptions release sulfur dioxide into the stratosphere."},
]


def test_supported_sentences_get_their_chunk():
    answer = "Aspirin lowers heart attack risk in adults. Volcanic eruptions release sulfur dioxide. Hello there!"
    decorated, cited = insert_citations(answer, CHUNKS)
    assert decorated == ("Aspirin lowers heart attack risk in adults. [ID:0] "
                         "Volcanic eruptions release sulfur dioxide. [ID:1] Hello there!")
    assert cited == {0, 1}


def test_answer_with_citations_is_left_alone():
    answer = "Aspirin lowers heart attack risk [ID:1]."
    assert insert_citations(answer, CHUNKS) == (answer, set())


def test_nothing_to_cite():
    assert insert_citations("", CHUNKS) == ("", set())
    assert insert_citations("Aspirin lowers heart attack risk.", []) == ("Aspirin lowers heart attack risk.", set())
    unrelated = "The weather in Paris is mild in spring."
    assert insert_citations(unrelated, CHUNKS) == (unrelated, set())


def test_code_blocks_are_never_split_or_cited():
    answer = "Aspirin lowers heart attack risk in adults.\n```\nprint('aspirin heart attack')\n```\n"
    decorated, _ = insert_citations(answer, CHUNKS)
    assert "```\nprint('aspirin heart attack')\n```" in decorated
    assert decorated.startswith("Aspirin lowers heart attack risk in adults. [ID:0]")
    assert "".join(split_sentences(answer)) == answer


def test_embeddings_decide_when_given():
    class Encoder:
        def encode(self, texts):
            return np.array([[0.0, 1.0] for _ in texts], dtype=np.float32), 1

    answer = "Aspirin lowers heart attack risk in adults."
    vectors = [[1.0, 0.0], [0.0, 1.0]]  # the second chunk is semantically closest
    decorated, cited = insert_citations(answer, CHUNKS, embd_mdl=Encoder(), chunk_vectors=vectors)
    assert cited == {1} and decorated.endswith("[ID:1]")
