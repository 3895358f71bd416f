"""Chat assistants as RAGFlow v0.22 and v0.27 clients see them: fields, list shapes, messages,
routes, deletes and the chat's metadata filter. ``X-RAGFlow-API`` pins each request's line."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.db.services.chat_assistant_service import DEFAULT_EMPTY_RESPONSE, DEFAULT_SYSTEM_PROMPT
from tests.chat.conftest import STUB_MODEL
from tests.chat.helpers import dialog_row, sdk, seed_dataset


def call(server: Any, method: str, path: str, body: Any = None, *, line: str = "0.22", params: Any = None,
         tenant: str = "acme") -> dict[str, Any]:
    response = httpx.request(method, server.url + path, json=body, params=params, timeout=30,
                             headers={"Authorization": f"Bearer {server.key(tenant)}", "X-RAGFlow-API": line})
    assert response.status_code == 200, response.text
    return response.json()


def ok(reply: dict[str, Any]) -> Any:
    assert reply["code"] == 0, reply
    return reply["data"]


def test_v027_body_is_stored_and_both_shapes_come_back(live_server, stub_llm) -> None:
    dataset = seed_dataset(sdk(live_server))
    chat = ok(call(live_server, "POST", "/api/v1/chats", {
        "name": "new-line", "icon": "icon.png", "dataset_ids": [dataset.id], "llm_id": STUB_MODEL,
        "llm_setting": {"temperature": 0.5, "max_tokens": 64},
        "prompt_config": {"system": "Be brief. {knowledge}", "prologue": "Hello!", "empty_response": "Nothing.",
                          "quote": False, "tts": False},
        "similarity_threshold": 0.3, "vector_similarity_weight": 0.6, "top_n": 4, "top_k": 512,
        "meta_data_filter": {"method": "manual", "manual": [{"key": "author", "op": "is", "value": "ada"}]},
    }, line="0.27"))

    assert (chat["llm_id"], chat["llm_setting"]["temperature"], chat["llm_setting"]["max_tokens"]) == (
        STUB_MODEL, 0.5, 64)
    config = chat["prompt_config"]
    assert (config["system"], config["prologue"], config["empty_response"], config["quote"], config["tts"]) == (
        "Be brief. {knowledge}", "Hello!", "Nothing.", False, False)
    assert (chat["similarity_threshold"], chat["vector_similarity_weight"], chat["top_n"], chat["top_k"]) == (
        0.3, 0.6, 4, 512)
    assert chat["icon"] == chat["avatar"] == "icon.png"
    assert chat["meta_data_filter"]["manual"][0]["key"] == "author"
    # the same chat in v0.22's nested names
    assert (chat["llm"]["model_name"], chat["llm"]["temperature"]) == (STUB_MODEL, 0.5)
    assert (chat["prompt"]["prompt"], chat["prompt"]["opener"], chat["prompt"]["show_quote"]) == (
        "Be brief. {knowledge}", "Hello!", False)
    assert chat["prompt"]["keywords_similarity_weight"] == pytest.approx(0.4)
    assert (chat["prompt"]["top_n"], chat["prompt"]["similarity_threshold"]) == (4, 0.3)
    assert dialog_row(live_server, chat["id"]).meta_data_filter["method"] == "manual"

    fetched = ok(call(live_server, "GET", f"/api/v1/chats/{chat['id']}", line="0.27"))
    assert fetched == chat
    unknown = call(live_server, "GET", f"/api/v1/chats/{'0' * 32}", line="0.27")
    assert (unknown["code"], unknown["message"]) == (109, "No authorization.")


def test_v022_body_fills_the_v027_fields(live_server, stub_llm) -> None:
    chat = ok(call(live_server, "POST", "/api/v1/chats", {
        "name": "old-line", "avatar": "a.png", "llm": {"model_name": STUB_MODEL, "temperature": 0.2},
        "prompt": {"prompt": "Hi {knowledge}", "opener": "Yo", "keywords_similarity_weight": 0.25, "top_n": 3,
                   "rerank_model": ""},
    }))
    assert (chat["llm_id"], chat["llm_setting"]["temperature"], chat["icon"]) == (STUB_MODEL, 0.2, "a.png")
    assert (chat["prompt_config"]["system"], chat["prompt_config"]["prologue"]) == ("Hi {knowledge}", "Yo")
    # The term side's weight: stored as the vector weight 1 - it, and read back as given.
    assert (chat["vector_similarity_weight"], chat["top_n"], chat["rerank_id"]) == (0.75, 3, "")
    assert chat["prompt"]["keywords_similarity_weight"] == pytest.approx(0.25)


def test_patch_and_put_merge_settings(live_server, stub_llm) -> None:
    chat = ok(call(live_server, "POST", "/api/v1/chats", {"name": "merge", "prompt_config": {"prologue": "One"}},
                   line="0.27"))
    patched = ok(call(live_server, "PATCH", f"/api/v1/chats/{chat['id']}",
                      {"prompt_config": {"empty_response": "None found."}, "llm_setting": {"top_p": 0.9}}))
    assert (patched["prompt_config"]["prologue"], patched["prompt_config"]["empty_response"]) == (
        "One", "None found.")
    assert (patched["llm_setting"]["top_p"], patched["llm_setting"]["temperature"]) == (0.9, 0.1)
    put = ok(call(live_server, "PUT", f"/api/v1/chats/{chat['id']}", {"name": "merged", "prompt": {"opener": "Two"}}))
    assert (put["name"], put["prompt_config"]["prologue"], put["prompt_config"]["empty_response"]) == (
        "merged", "Two", "None found.")
    assert call(live_server, "PATCH", f"/api/v1/chats/{chat['id']}", {"name": ""})["message"] == (
        "`name` cannot be empty.")


@pytest.mark.parametrize(("line", "required", "duplicate", "not_a_list"), [
    ("0.22", "`name` is required.", "Duplicated chat name in creating chat.", "You don't own the dataset n"),
    ("0.27", "`name` is required", "duplicated chat name in creating chat", "`dataset_ids` should be a list."),
])
def test_create_messages_of_each_line(live_server, stub_llm, line, required, duplicate, not_a_list) -> None:
    assert call(live_server, "POST", "/api/v1/chats", {"name": "", "dataset_ids": []}, line=line) == {
        "code": 102, "message": required}
    ok(call(live_server, "POST", "/api/v1/chats", {"name": "Twice", "dataset_ids": []}, line=line))
    assert call(live_server, "POST", "/api/v1/chats", {"name": "twice"}, line=line)["message"] == duplicate
    unknown = call(live_server, "POST", "/api/v1/chats", {"name": "x", "dataset_ids": ["nope"]}, line=line)
    assert (unknown["code"], unknown["message"]) == (102, "You don't own the dataset nope")
    not_list = call(live_server, "POST", "/api/v1/chats", {"name": "x", "dataset_ids": "nope"}, line=line)
    assert (not_list["code"], not_list["message"]) == (102, not_a_list)  # v0.22 walks the string
    tenant = call(live_server, "POST", "/api/v1/chats", {"name": "x", "tenant_id": "t"}, line=line)
    assert tenant["code"] == 102 and "`tenant_id` must not be provided" in tenant["message"]
    model = call(live_server, "POST", "/api/v1/chats", {"name": "x", "llm_id": "nope@Nowhere"}, line=line)
    assert model["code"] == 102 and model["message"].startswith("`llm_id` nope@Nowhere doesn't exist")


def _five_chats(server: Any) -> list[str]:
    return [ok(call(server, "POST", "/api/v1/chats", {"name": f"test_chat_assistant_{i}", "dataset_ids": []}))["id"]
            for i in range(5)]


def test_list_shape_and_paging_of_each_line(live_server, stub_llm) -> None:
    ids = _five_chats(live_server)
    old = ok(call(live_server, "GET", "/api/v1/chats", params={"page_size": 2}))
    assert [c["id"] for c in old] == [ids[4], ids[3]]  # a bare list, newest first
    assert ok(call(live_server, "GET", "/api/v1/chats", params={"page": 0, "page_size": 2}))[0]["id"] == ids[4]
    assert ok(call(live_server, "GET", "/api/v1/chats", params={"page_size": 0})) == []
    missing = call(live_server, "GET", "/api/v1/chats", params={"name": "unknown"})
    assert missing == {"code": 102, "message": "The chat doesn't exist"}

    new = ok(call(live_server, "GET", "/api/v1/chats", params={"page_size": 2}, line="0.27"))
    assert new["total"] == 5 and len(new["chats"]) == 5  # v0.27 pages only when both numbers are given
    page = ok(call(live_server, "GET", "/api/v1/chats", params={"page": 3, "page_size": 2}, line="0.27"))
    assert ([c["id"] for c in page["chats"]], page["total"]) == ([ids[0]], 5)
    found = ok(call(live_server, "GET", "/api/v1/chats", params={"keywords": "assistant_1"}, line="0.27"))
    assert [c["name"] for c in found["chats"]] == ["test_chat_assistant_1"]
    assert ok(call(live_server, "GET", "/api/v1/chats", params={"keywords": "unknown"}, line="0.27")) == {
        "chats": [], "total": 0}
    assert ok(call(live_server, "GET", "/api/v1/chats", params={"name": "unknown"}, line="0.27"))["total"] == 0
    tenant_id = dialog_row(live_server, ids[0]).tenant_id
    mine = ok(call(live_server, "GET", "/api/v1/chats", params={"owner_ids": tenant_id}, line="0.27"))
    assert mine["total"] == 5
    assert ok(call(live_server, "GET", "/api/v1/chats", params={"owner_ids": "someone"}, line="0.27"))["total"] == 0


@pytest.mark.parametrize(("line", "not_found", "duplicate"), [
    ("0.22", "Assistant(invalid_id) not found.", "Duplicate assistant ids"),
    ("0.27", "Chat(invalid_id) not found.", "Duplicate chat ids"),
])
def test_deletes_are_partial_and_follow_delete_all(live_server, stub_llm, line, not_found, duplicate) -> None:
    ids = _five_chats(live_server)
    reply = call(live_server, "DELETE", "/api/v1/chats", {"ids": ids[:1] + ["invalid_id"] + ids[1:3] + ids[:1]},
                 line=line)
    assert reply["code"] == 0
    assert reply["data"]["success_count"] == 3
    assert reply["data"]["errors"][0] == not_found and duplicate in reply["data"]["errors"][1]
    only_unknown = call(live_server, "DELETE", "/api/v1/chats", {"ids": ["invalid_id"]}, line=line)
    assert (only_unknown["code"], only_unknown["message"]) == (102, not_found)

    assert ok(call(live_server, "DELETE", "/api/v1/chats", {"ids": [], "delete_all": False}))["success_count"] == 0
    assert ok(call(live_server, "DELETE", "/api/v1/chats", {"ids": None, "delete_all": False}))["success_count"] == 0
    assert len(ok(call(live_server, "GET", "/api/v1/chats"))) == 2
    assert ok(call(live_server, "DELETE", "/api/v1/chats", {"delete_all": True}))["success_count"] == 2
    assert ok(call(live_server, "GET", "/api/v1/chats")) == []


def test_single_delete_route(live_server, stub_llm) -> None:
    chat_id = _five_chats(live_server)[0]
    assert ok(call(live_server, "DELETE", f"/api/v1/chats/{chat_id}", line="0.27")) is True
    again = call(live_server, "DELETE", f"/api/v1/chats/{chat_id}", line="0.27")
    assert (again["code"], again["message"]) == (109, "No authorization.")
    assert len(ok(call(live_server, "GET", "/api/v1/chats", line="0.27"))["chats"]) == 4


def _seed_two_authors(server: Any) -> tuple[Any, str, str]:
    """A dataset whose two documents (by ada and by bob) each hold one fact about the Eiffel Tower."""
    client = sdk(server)
    dataset = client.create_dataset(name="authors")
    docs = dataset.upload_documents([{"display_name": "ada.txt", "blob": b"x"}, {"display_name": "bob.txt", "blob": b"y"}])
    by_name = {doc.name: doc for doc in docs}
    by_name["ada.txt"].add_chunk(content="The Eiffel Tower was completed in 1889 in Paris.")
    by_name["bob.txt"].add_chunk(content="The Eiffel Tower is repainted every seven years.")
    for name, author in (("ada.txt", "ada"), ("bob.txt", "bob")):
        ok(call(server, "PUT", f"/api/v1/datasets/{dataset.id}/documents/{by_name[name].id}",
                {"meta_fields": {"author": author}}))
    return dataset, by_name["ada.txt"].id, by_name["bob.txt"].id


def _cited_documents(server: Any, chat_id: str, **extra: Any) -> set[str]:
    reply = ok(call(server, "POST", f"/api/v1/chats/{chat_id}/completions",
                    {"question": "Tell me about the Eiffel Tower", "stream": False, **extra}, line="0.27"))
    return {chunk["document_id"] for chunk in reply["reference"]["chunks"]}


def test_chat_metadata_filter_restricts_retrieval(live_server, stub_llm) -> None:
    stub_llm.configure(reply="It is in Paris [ID:0].")
    dataset, ada, bob = _seed_two_authors(live_server)
    plain = ok(call(live_server, "POST", "/api/v1/chats", {"name": "all", "dataset_ids": [dataset.id],
                                                           "similarity_threshold": 0.0}, line="0.27"))
    assert _cited_documents(live_server, plain["id"]) == {ada, bob}

    only_bob = ok(call(live_server, "POST", "/api/v1/chats", {
        "name": "bob-only", "dataset_ids": [dataset.id], "similarity_threshold": 0.0,
        "meta_data_filter": {"method": "manual", "logic": "and",
                             "manual": [{"key": "author", "op": "=", "value": "bob"}]}}, line="0.27"))
    assert _cited_documents(live_server, only_bob["id"]) == {bob}
    condition = {"logic": "and", "conditions": [{"name": "author", "comparison_operator": "is", "value": "ada"}]}
    assert _cited_documents(live_server, plain["id"], metadata_condition=condition) == {ada}
    # both filters apply: no document is by bob and by ada, so nothing is retrieved
    assert _cited_documents(live_server, only_bob["id"], metadata_condition=condition) == set()

    bad = call(live_server, "POST", "/api/v1/chats", {"name": "bad", "meta_data_filter": {
        "method": "manual", "manual": [{"key": "author", "op": "sounds like", "value": "x"}]}}, line="0.27")
    assert bad["code"] == 101 and "comparison_operator" in bad["message"]
    not_object = call(live_server, "POST", f"/api/v1/chats/{plain['id']}/completions",
                      {"question": "hi", "stream": False, "metadata_condition": "invalid"})
    assert not_object["code"] == 102 and "metadata_condition" in not_object["message"]


def test_defaults_of_a_new_chat_in_each_line(live_server, stub_llm) -> None:
    dataset = seed_dataset(sdk(live_server))
    old = ok(call(live_server, "POST", "/api/v1/chats", {"name": "old", "dataset_ids": [dataset.id]}))
    assert old["prompt"]["similarity_threshold"] == 0.2
    assert old["prompt"]["variables"] == [{"key": "knowledge", "optional": False}]
    assert old["prompt"]["empty_response"] == DEFAULT_EMPTY_RESPONSE
    assert old["prompt"]["prompt"] == DEFAULT_SYSTEM_PROMPT
    assert DEFAULT_SYSTEM_PROMPT.startswith("You are an intelligent assistant. Please summarize the content of the "
                                            "dataset") and "\n      {knowledge}\n" in DEFAULT_SYSTEM_PROMPT
    new = ok(call(live_server, "POST", "/api/v1/chats", {"name": "new", "dataset_ids": [dataset.id]}, line="0.27"))
    assert (new["similarity_threshold"], new["vector_similarity_weight"], new["top_n"], new["rerank_id"]) == (
        0.1, 0.3, 6, "")

    # v0.27 declares {knowledge} for a chat with datasets that declares nothing; v0.22 keeps the empty list
    empty = {"dataset_ids": [dataset.id], "prompt_config": {"parameters": []}}
    declared = ok(call(live_server, "POST", "/api/v1/chats", {"name": "declared", **empty}, line="0.27"))
    assert declared["prompt_config"]["parameters"] == [{"key": "knowledge", "optional": False}]
    kept = ok(call(live_server, "POST", "/api/v1/chats", {"name": "kept", "dataset_ids": [dataset.id],
                                                          "prompt": {"variables": []}}))
    assert kept["prompt"]["variables"] == []


def test_the_knowledge_placeholder_is_required_in_v022_only(live_server, stub_llm) -> None:
    refused = call(live_server, "POST", "/api/v1/chats", {"name": "a", "prompt": {"prompt": "Hello World"}})
    assert refused == {"code": 102, "message": "Parameter 'knowledge' is not used"}
    ok(call(live_server, "POST", "/api/v1/chats", {"name": "b", "prompt": {"prompt": "Hello World", "variables": []}}))
    chat = ok(call(live_server, "POST", "/api/v1/chats", {"name": "c", "prompt_config": {"system": "Hello World"}},
                   line="0.27"))
    patched = ok(call(live_server, "PATCH", f"/api/v1/chats/{chat['id']}", {"prompt_config": {
        "system": "No placeholder", "parameters": [{"key": "knowledge", "optional": False}]}}, line="0.27"))
    assert patched["prompt_config"]["system"] == "No placeholder"
    other = call(live_server, "POST", "/api/v1/chats", {"name": "d", "prompt_config": {
        "system": "Hi", "parameters": [{"key": "city", "optional": False}]}}, line="0.27")
    assert other == {"code": 102, "message": "Parameter 'city' is not used"}  # only {knowledge} is exempt


def test_a_dataset_without_parsed_chunks_is_refused(live_server, stub_llm) -> None:
    empty = sdk(live_server).create_dataset(name="empty")
    refused = call(live_server, "POST", "/api/v1/chats", {"name": "x", "dataset_ids": [empty.id]}, line="0.27")
    assert refused == {"code": 102, "message": f"The dataset {empty.id} doesn't own parsed file"}
    chat = ok(call(live_server, "POST", "/api/v1/chats", {"name": "y", "dataset_ids": []}, line="0.27"))
    patched = call(live_server, "PATCH", f"/api/v1/chats/{chat['id']}", {"dataset_ids": [empty.id]}, line="0.27")
    assert patched == {"code": 102, "message": f"The dataset {empty.id} doesn't own parsed file"}


def test_models_settings_and_bounds_in_ragflow_words(live_server, stub_llm) -> None:
    cases = [({"llm_id": "unknown"}, "0.27", "`llm_id` unknown doesn't exist"),
             ({"llm": {"model_name": "unknown"}}, "0.22", "`model_name` unknown doesn't exist"),
             ({"rerank_id": "nope"}, "0.27", "`rerank_id` nope doesn't exist"),
             ({"prompt": {"rerank_model": "nope"}}, "0.22", "`rerank_model` nope doesn't exist")]
    for body, line, message in cases:
        assert call(live_server, "POST", "/api/v1/chats", {"name": "m", **body}, line=line) == {
            "code": 102, "message": message}
    chat = ok(call(live_server, "POST", "/api/v1/chats", {"name": "m", "top_n": 0, "llm_setting": {"max_token": 7}},
                   line="0.27"))
    assert (chat["top_n"], chat["llm_setting"]["max_token"], chat["llm"]["max_token"]) == (0, 7, 7)
    assert ok(call(live_server, "POST", "/api/v1/chats", {"name": "n", "top_n": 1000}, line="0.27"))["top_n"] == 1000


@pytest.mark.parametrize(("method", "line", "code", "message"), [
    ("PUT", "0.22", 102, "You do not own the chat"),
    ("PATCH", "0.27", 109, "No authorization."),
])
def test_updating_a_chat_one_does_not_own(live_server, stub_llm, method, line, code, message) -> None:
    theirs = ok(call(live_server, "POST", "/api/v1/chats", {"name": "theirs"}, tenant="other"))
    for chat_id in (theirs["id"], "invalid-chat-id"):
        # refused before the body is read, as RAGFlow: an invalid body does not change the answer
        reply = call(live_server, method, f"/api/v1/chats/{chat_id}", {"name": ""}, line=line)
        assert (reply["code"], reply["message"]) == (code, message)
