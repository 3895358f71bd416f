"""Model specs from LiteLLM's map and models.yaml, validation, providers, the reasoning splitter."""

from __future__ import annotations

import itertools

import pytest

from rag.llm.errors import RateLimitError, UnsupportedProviderError, ValidationError
from rag.llm.providers import ProviderSettings, provider_for, split_model_name
from rag.llm.rate_limit import TenantRateLimiter
from rag.llm.reasoning import ThinkSplitter, split_reasoning
from rag.llm.registry import ModelRegistry


@pytest.fixture(scope="module")
def shipped() -> ModelRegistry:
    """The registry as shipped: conf/models.yaml, no provider configured."""
    return ModelRegistry.from_config()


def test_specs_come_from_litellm_map(shipped: ModelRegistry) -> None:
    spec = shipped.spec("gpt-4o-mini@OpenAI")
    assert (spec.context_window, spec.max_output_tokens, spec.vision, spec.reasoning) == (128000, 16384, True, False)
    assert shipped.cost("gpt-4o-mini@OpenAI", 1000, 1000) == pytest.approx(1000 * 1.5e-7 + 1000 * 6e-7)
    assert shipped.spec("o3-mini@OpenAI").reasoning


def test_models_yaml_fills_what_the_map_lacks(shipped: ModelRegistry) -> None:
    qwen = shipped.spec("qwen3@Ollama")
    assert qwen.reasoning and qwen.context_window == 40960 and shipped.cost("qwen3@Ollama", 10, 10) == 0.0
    assert shipped.spec("some-model@Ollama").input_cost_per_token == 0.0  # "*@Ollama"
    assert shipped.spec("extractive@Builtin").extractive


def test_unknown_price_is_none(shipped: ModelRegistry) -> None:
    assert shipped.cost("my-finetune@OpenAI-API-Compatible", 10, 10) is None


def test_validation(shipped: ModelRegistry) -> None:
    assert shipped.validate("gpt-4o-mini@OpenAI", {"temperature": 0.3, "max_tokens": 10**6, "top_p": None}) == {
        "temperature": 0.3,
        "max_tokens": 16384,
    }
    with pytest.raises(ValidationError, match="temperature=2.5"):
        shipped.validate("gpt-4o-mini@OpenAI", {"temperature": 2.5})
    with pytest.raises(ValidationError, match="temperature=1.5"):
        shipped.validate("claude-3-5-haiku-latest@Anthropic", {"temperature": 1.5})
    with pytest.raises(ValidationError, match="top_p"):
        shipped.validate("gpt-4o-mini@OpenAI", {"top_p": 1.2})
    with pytest.raises(ValidationError, match="reasoning_effort"):
        shipped.validate("gpt-4o-mini@OpenAI", {"reasoning_effort": "low"})
    assert shipped.validate("o3-mini@OpenAI", {"reasoning_effort": "low"}) == {"reasoning_effort": "low"}


def test_providers_map_names_to_litellm_routes() -> None:
    settings = ProviderSettings(api_base="http://h/v1", openai_api_key="k", ollama_base_url="http://o:11434")
    assert provider_for("OpenAI").call_params("gpt-4o", settings) == {
        "model": "openai/gpt-4o",
        "api_key": "k",
        "api_base": "http://h/v1",
    }
    assert provider_for("OpenAI").call_params("gpt-4o", ProviderSettings()) == {"model": "openai/gpt-4o"}
    assert provider_for("ollama").call_params("llama3.1", settings) == {
        "model": "ollama_chat/llama3.1",
        "api_base": "http://o:11434",
    }
    assert provider_for("OpenAI-API-Compatible").call_params("x", settings)["api_base"] == "http://h/v1"
    assert provider_for("Anthropic").call_params("claude", settings) == {"model": "anthropic/claude"}
    assert provider_for("LiteLLM").call_params("bedrock/titan", settings) == {"model": "bedrock/titan"}
    assert split_model_name("org/model@v2@OpenAI") == ("org/model@v2", "OpenAI")


def test_unsupported_factories_and_names() -> None:
    with pytest.raises(UnsupportedProviderError, match="known factories"):
        provider_for("Nowhere")
    with pytest.raises(UnsupportedProviderError, match="name@factory"):
        split_model_name("gpt-4o")
    with pytest.raises(UnsupportedProviderError, match="LLM_API_BASE"):
        ModelRegistry.from_config().chat_model("x@OpenAI-API-Compatible")


def test_tenant_rate_limiter_window() -> None:
    now = [0.0]
    limiter = TenantRateLimiter(2, clock=lambda: now[0])
    limiter.admit("a", "m")
    limiter.admit("a", "m")
    limiter.admit("b", "m")
    with pytest.raises(RateLimitError) as caught:
        limiter.admit("a", "m")
    assert caught.value.retry_after == pytest.approx(60)
    now[0] = 60.0
    limiter.admit("a", "m")


def test_split_reasoning_forms() -> None:
    assert split_reasoning("<think>plan</think>\n\nAnswer") == ("Answer", "plan")
    assert split_reasoning("plan only</think>Answer") == ("Answer", "plan only")
    assert split_reasoning("3 < 4 and <b>bold</b>") == ("3 < 4 and <b>bold</b>", "")


def test_splitter_handles_tags_cut_anywhere() -> None:
    content = "<think>step one, step two</think>The answer is 42 <think>x"
    for cut_a, cut_b in itertools.combinations(range(1, len(content)), 2):
        splitter = ThinkSplitter()
        parts = [splitter.feed(p) for p in (content[:cut_a], content[cut_a:cut_b], content[cut_b:])]
        parts.append(splitter.flush())
        answer = "".join(a for a, _ in parts)
        reasoning = "".join(r for _, r in parts)
        assert (answer, reasoning) == ("The answer is 42 ", "step one, step twox"), (cut_a, cut_b)
