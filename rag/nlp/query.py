"""Question analysis for the full-text leg: which terms to match and over which fields.

Stopwords are dropped because in an OR query they match nearly every chunk: they add no ranking
signal and make BM25 score the whole index. What remains is capped so a pasted 10,000-character
question costs no more than a long paragraph.
"""

from __future__ import annotations

from dataclasses import dataclass

from rag.nlp import tokens
from rag.utils.doc_store_conn import MatchTextExpr

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when
    where which while who whom why will with would you your yours yourself yourselves""".split()
)
MAX_TERMS = 64

# Field boosts of the full-text leg. Keywords and questions a user attached to a chunk are
# deliberate signals, so they outweigh body text (RAGFlow weighs them the same way); the title
# is the file name, often an opaque id, so it counts like body text. SciFact exercises only
# the body (its chunks carry no keywords), so these are not tuned on it.
DEFAULT_FIELD_WEIGHTS: dict[str, float] = {
    "title_tks": 1.0,
    "important_tks": 3.0,
    "question_tks": 2.0,
    "content_ltks": 1.0,
}


@dataclass(frozen=True)
class QueryTerms:
    """The terms of a question, in question order, stopwords removed, de-duplicated."""

    terms: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.terms)


def question_terms(question: str, max_terms: int = MAX_TERMS) -> QueryTerms:
    """Terms to match for ``question``; all of them when every word is a stopword."""
    words = tokens(question)
    kept = [w for w in words if w not in STOPWORDS] or words
    return QueryTerms(tuple(dict.fromkeys(kept))[:max_terms])


class FulltextQueryer:
    """Builds the full-text match expression of a question."""

    def __init__(self, field_weights: dict[str, float] | None = None) -> None:
        self.field_weights = dict(field_weights or DEFAULT_FIELD_WEIGHTS)

    def fields(self) -> tuple[str, ...]:
        return tuple(f"{name}^{weight:g}" for name, weight in self.field_weights.items())

    def question(self, text: str, topn: int) -> tuple[MatchTextExpr | None, QueryTerms]:
        """The match expression (None when the question has no word at all) and its terms."""
        terms = question_terms(text)
        if not terms.terms:
            return None, terms
        return MatchTextExpr(self.fields(), terms.text, topn), terms
