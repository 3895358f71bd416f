"""Plain values the model layer hands upward: results, stream pieces, token counts.

They carry no behaviour beyond arithmetic so that models, the bundle and the services above
can exchange them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TokenUsage:
    """Tokens of one call. ``exact`` is False when we counted with tiktoken ourselves."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    exact: bool = True

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class ChatDelta:
    """One piece of a streamed answer; the last piece of a stream carries usage when known."""

    text: str = ""
    reasoning: str = ""
    usage: TokenUsage | None = None
    finish_reason: str | None = None
    attempts: int | None = None
    arm: str | None = None  # the A/B arm (a ``name@factory``) serving the stream


@dataclass
class ChatResult:
    """A whole answer. ``reasoning`` is the model's thinking, never part of ``text``.

    The model fills text/reasoning/usage (None when the provider gave none)/finish_reason; the
    bundle fills in missing usage and adds the accounting (cost, latency, time to first token).
    """

    text: str = ""
    reasoning: str = ""
    usage: TokenUsage | None = None
    finish_reason: str | None = None
    model: str = ""
    attempts: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
    cost: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    outcome: str = "ok"
    cache: str | None = None  # the response cache's part: None (off), "hit", "miss" or "bypass"
    arm: str | None = None  # the A/B arm (a ``name@factory``) that answered, when the model is an A/B group

    @property
    def cached(self) -> bool:
        """True when the answer came from the response cache (no model was called)."""
        return self.cache == "hit"
