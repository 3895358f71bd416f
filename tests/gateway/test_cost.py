"""Cost of a priced model (gpt-4o-mini from LiteLLM's bundled map), answered by the stub."""

from __future__ import annotations

import pytest

from api.db.models import Usage
from tests.gateway.conftest import STUB_MODEL
from tests.gateway.helpers import post, stream

PRICED = "gpt-4o-mini@OpenAI"


@pytest.fixture
def settings(make_settings, stub_llm):
    """The stub also stands in for OpenAI (the provider base URL applies to every factory)."""
    return make_settings(llm_model=STUB_MODEL, llm_api_base=stub_llm.api_base, llm_timeout=5, llm_max_retries=0,
                         openai_api_key="sk-test")


def test_generate_and_stream_report_the_priced_cost_and_record_it(live_server, stub_llm) -> None:
    spec = live_server.parts.registry.spec(PRICED)
    assert spec.input_cost_per_token and spec.output_cost_per_token
    body = post(live_server, "/api/v1/llm/generate", {"user_message": "hi", "model": PRICED}).json()
    _, events = stream(live_server, {"user_message": "hi", "model": PRICED})
    done = events[-1][1]
    assert events[-1][0] == "done"
    for shown in (body, done):
        tokens, cost = shown["tokens_used"], shown["cost"]
        assert cost["prompt"] == pytest.approx(tokens["prompt"] * spec.input_cost_per_token)
        assert cost["completion"] == pytest.approx(tokens["completion"] * spec.output_cost_per_token)
        assert cost["total"] == pytest.approx(cost["prompt"] + cost["completion"]) and cost["total"] > 0
    assert stub_llm.chat_requests[-1].body["model"] == "gpt-4o-mini"
    usage = live_server.parts.db.call(
        lambda: Usage.get_or_none(Usage.message_id == body["message_id"]))
    assert usage is not None and usage.model == PRICED
    assert usage.prompt_tokens == body["tokens_used"]["prompt"]
    assert usage.cost == pytest.approx(body["cost"]["total"])


def test_unpriced_model_reports_null_cost(live_server, stub_llm) -> None:
    body = post(live_server, "/api/v1/llm/generate", {"user_message": "hi"}).json()
    assert body["cost"] == {"prompt": None, "completion": None, "total": None, "currency": "USD"}
    assert body["tokens_used"]["total"] > 0
