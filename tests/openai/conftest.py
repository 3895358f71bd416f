"""A live server whose LLM is the stub, with a chat assistant over a small dataset of facts."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

STUB_MODEL = "stub-chat@OpenAI-API-Compatible"
FACTS = [
    "The Eiffel Tower is in Paris and was completed in 1889.",
    "Mount Fuji is the highest mountain in Japan at 3,776 metres.",
    "The Amazon river flows through Brazil, Peru and Colombia.",
]


@pytest.fixture
def settings(make_settings, stub_llm):
    """Settings whose default chat model is the stub, reached through LiteLLM like a provider."""
    return make_settings(llm_model=STUB_MODEL, llm_api_base=stub_llm.api_base, llm_timeout=10, llm_max_retries=0)


@dataclass
class ChatSetup:
    url: str
    key: str
    chat_id: str
    dataset_id: str

    @property
    def openai_base(self) -> str:
        return f"{self.url}/api/v1/chats_openai/{self.chat_id}"


def call(client: httpx.Client, method: str, path: str, **kwargs) -> dict:
    body = client.request(method, path, **kwargs).json()
    assert body["code"] == 0, body
    return body["data"]


def make_chat(url: str, key: str, name: str = "geo", facts: list[str] = FACTS) -> ChatSetup:
    """Dataset → document → chunks (embedded on add) → chat assistant, through the HTTP API."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        dataset = call(client, "POST", "/api/v1/datasets", json={"name": f"{name}-facts"})
        files = {"file": ("facts.txt", b"placeholder", "text/plain")}
        document = call(client, "POST", f"/api/v1/datasets/{dataset['id']}/documents", files=files)[0]
        for fact in facts:
            call(client, "POST", f"/api/v1/datasets/{dataset['id']}/documents/{document['id']}/chunks",
                 json={"content": fact})
        chat = call(client, "POST", "/api/v1/chats", json={"name": name, "dataset_ids": [dataset["id"]]})
    return ChatSetup(url, key, chat["id"], dataset["id"])


@pytest.fixture
def geo_chat(live_server) -> ChatSetup:
    return make_chat(live_server.url, live_server.key("acme"))
