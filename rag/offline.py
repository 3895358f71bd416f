"""Environment that keeps model libraries from reaching the network.

It must run before ``litellm``, ``tiktoken`` or ``huggingface_hub`` are imported, because they
read these variables at import time; ``rag/__init__.py`` calls it first thing.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def _litellm_tokenizer_dir() -> str | None:
    """The tiktoken encodings LiteLLM ships, found without importing LiteLLM."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    return str(path) if path.is_dir() else None


def configure_offline_environment() -> None:
    """Set the offline switches, leaving any value the operator chose in place."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    tokenizer_dir = _litellm_tokenizer_dir()
    if tokenizer_dir:
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", tokenizer_dir)
