"""Token counting with tiktoken, from the encodings LiteLLM ships (no download).

One encoder per process, loaded on first use: counting must be cheap enough for chunking
and prompt fitting, and the encoding is immutable so sharing it across threads is safe.
"""

from __future__ import annotations

import functools

import tiktoken

DEFAULT_ENCODING = "cl100k_base"


@functools.cache
def encoder(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    return tiktoken.get_encoding(name)


def num_tokens(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    """Tokens in ``text``; special-token markers in user text count as plain text."""
    if not text:
        return 0
    return len(encoder(encoding).encode(text, disallowed_special=()))


def truncate(text: str, max_tokens: int, encoding: str = DEFAULT_ENCODING) -> str:
    """The longest prefix of ``text`` that fits in ``max_tokens`` tokens."""
    tokens = encoder(encoding).encode(text, disallowed_special=())
    if len(tokens) <= max_tokens:
        return text
    return encoder(encoding).decode(tokens[: max(max_tokens, 0)])
