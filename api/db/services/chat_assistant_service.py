"""Chat assistants (RAGFlow's "chats", stored as ``Dialog`` rows): create, list, update, delete.

The API speaks in ``keywords_similarity_weight`` (the weight of the term side) while retrieval
takes the vector weight; the row stores the vector weight (``1 - keywords_similarity_weight``)
and the API shape converts back, so a client reads what it wrote.
"""

from __future__ import annotations

from typing import Any

from peewee import fn

from api.db.models import Conversation, Dialog, Message
from api.db.services.common import http_date, ordered_page, require_all
from api.db.services.knowledgebase_service import owned_with_one_model
from api.errors import data_error
from rag.prompts import PromptVariableError, check_prompt_variables

DEFAULT_SYSTEM_PROMPT = (
    "You are an intelligent assistant. Please summarize the content of the knowledge base to answer the "
    "question. Please list the data in the knowledge base and answer in detail. When all knowledge base "
    "content is irrelevant to the question, your answer must include the sentence 'The answer you are looking "
    "for is not found in the knowledge base!' Answers need to consider chat history.\n"
    "Here is the knowledge base:\n{knowledge}\nThe above is the knowledge base."
)
DEFAULT_LLM_SETTING: dict[str, Any] = {
    "temperature": 0.1, "top_p": 0.3, "presence_penalty": 0.4, "frequency_penalty": 0.7, "max_tokens": 512,
}
DEFAULT_PROMPT_CONFIG: dict[str, Any] = {
    "system": DEFAULT_SYSTEM_PROMPT,
    "parameters": [{"key": "knowledge", "optional": True}],
    "empty_response": "",
    "prologue": "Hi! I'm your assistant. What can I do for you?",
    "quote": True,
    "refine_multiturn": False,
    "keyword": False,
    "tone": None,
}
# API name in "prompt" → key in the stored prompt_config.
PROMPT_KEYS = {"prompt": "system", "variables": "parameters", "opener": "prologue", "show_quote": "quote",
               "empty_response": "empty_response", "refine_multiturn": "refine_multiturn", "keyword": "keyword",
               "tone": "tone"}


def to_api(dialog: Dialog) -> dict[str, Any]:
    config = {**DEFAULT_PROMPT_CONFIG, **dialog.prompt_config}
    prompt = {api_key: config.get(stored_key) for api_key, stored_key in PROMPT_KEYS.items()}
    prompt.update(
        similarity_threshold=dialog.similarity_threshold,
        keywords_similarity_weight=round(1 - dialog.vector_similarity_weight, 6),
        top_n=dialog.top_n,
        top_k=dialog.top_k,
        rerank_model=dialog.rerank_id or "",
    )
    return {
        "id": dialog.id,
        "name": dialog.name,
        "avatar": dialog.avatar or "",
        "description": dialog.description,
        "dataset_ids": list(dialog.kb_ids),
        "llm": {"model_name": dialog.llm_id, **{**DEFAULT_LLM_SETTING, **dialog.llm_setting}},
        "prompt": prompt,
        "tenant_id": dialog.tenant_id,
        "status": "1",
        "create_time": dialog.create_time,
        "create_date": http_date(dialog.create_time),
        "update_time": dialog.update_time,
        "update_date": http_date(dialog.update_time),
    }


def missing_variables(dialog: Dialog, variables: dict[str, Any]) -> list[str]:
    """Required prompt variables (``knowledge`` aside: retrieval fills it) without a value."""
    parameters = {**DEFAULT_PROMPT_CONFIG, **dialog.prompt_config}.get("parameters") or []
    return [str(p["key"]) for p in parameters
            if p.get("key") and p["key"] != "knowledge" and not p.get("optional", False) and p["key"] not in variables]


def get_owned(tenant_id: str, chat_id: str) -> Dialog:
    dialog = Dialog.get_or_none((Dialog.id == chat_id) & (Dialog.tenant_id == tenant_id))
    if dialog is None:
        raise data_error(f"You don't own the chat {chat_id}.")
    return dialog


def check_datasets(tenant_id: str, kb_ids: list[str]) -> None:
    """The datasets must all be the caller's and share one embedding model (102 otherwise)."""
    if kb_ids:
        owned_with_one_model(tenant_id, kb_ids)


def _name_taken(tenant_id: str, name: str, except_id: str | None = None) -> bool:
    query = Dialog.select().where((Dialog.tenant_id == tenant_id) & (fn.LOWER(Dialog.name) == name.lower()))
    if except_id:
        query = query.where(Dialog.id != except_id)
    return query.exists()


def _apply(dialog: Dialog, changes: dict[str, Any]) -> None:
    """Write API-shaped ``changes`` (name, avatar, dataset_ids, llm, prompt) onto the row."""
    for key in ("name", "avatar", "description"):
        if key in changes:
            setattr(dialog, key, changes[key])
    if "dataset_ids" in changes:
        dialog.kb_ids = list(dict.fromkeys(changes["dataset_ids"]))
    llm = dict(changes.get("llm") or {})
    if "model_name" in llm:
        dialog.llm_id = llm.pop("model_name")
    dialog.llm_setting = {**(dialog.llm_setting or {}), **llm}
    prompt = dict(changes.get("prompt") or {})
    for api_key, column in (("similarity_threshold", "similarity_threshold"), ("top_n", "top_n"),
                            ("top_k", "top_k")):
        if api_key in prompt:
            setattr(dialog, column, prompt.pop(api_key))
    if "keywords_similarity_weight" in prompt:
        dialog.vector_similarity_weight = 1 - prompt.pop("keywords_similarity_weight")
    if "rerank_model" in prompt:
        dialog.rerank_id = prompt.pop("rerank_model") or None
    config = dict(dialog.prompt_config or {})
    for api_key, value in prompt.items():
        config[PROMPT_KEYS[api_key]] = value
    try:
        check_prompt_variables(config.get("system") or "", config.get("parameters") or [])
    except PromptVariableError as error:
        raise data_error(str(error)) from None
    dialog.prompt_config = config


def create(tenant_id: str, fields: dict[str, Any], default_llm: str) -> dict[str, Any]:
    with Dialog._meta.database.atomic():
        if _name_taken(tenant_id, fields["name"]):
            raise data_error(f"Duplicated chat name: {fields['name']}.")
        check_datasets(tenant_id, fields.get("dataset_ids") or [])
        dialog = Dialog(tenant_id=tenant_id, name=fields["name"], kb_ids=[], llm_id=default_llm,
                        llm_setting=dict(DEFAULT_LLM_SETTING), prompt_config=dict(DEFAULT_PROMPT_CONFIG),
                        similarity_threshold=0.2, vector_similarity_weight=0.3, top_n=6, top_k=1024)
        _apply(dialog, fields)
        dialog.llm_id = dialog.llm_id or default_llm
        dialog.save(force_insert=True)
    return to_api(dialog)


def list_page(tenant_id: str, *, page: int, page_size: int, orderby: str, desc: bool,
              chat_id: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
    query = Dialog.select().where(Dialog.tenant_id == tenant_id)
    if chat_id is not None:
        query = query.where(Dialog.id == chat_id)
    if name is not None:
        query = query.where(fn.LOWER(Dialog.name) == name.lower())
    if (chat_id is not None or name is not None) and not query.exists():
        raise data_error(f"The chat {chat_id or name} doesn't exist.")
    return [to_api(d) for d in ordered_page(query, Dialog, orderby, desc, page, page_size)]


def update(tenant_id: str, chat_id: str, changes: dict[str, Any], default_llm: str) -> dict[str, Any]:
    with Dialog._meta.database.atomic():
        dialog = get_owned(tenant_id, chat_id)
        if "name" in changes and _name_taken(tenant_id, changes["name"], except_id=chat_id):
            raise data_error(f"Duplicated chat name: {changes['name']}.")
        if "dataset_ids" in changes:
            check_datasets(tenant_id, changes["dataset_ids"] or [])
        _apply(dialog, changes)
        dialog.llm_id = dialog.llm_id or default_llm
        dialog.save()
    return to_api(dialog)


def delete_many(tenant_id: str, chat_ids: list[str] | None) -> int:
    """Delete chats (every one of the tenant's when ``chat_ids`` is None) with their sessions."""
    with Dialog._meta.database.atomic():
        query = Dialog.select(Dialog.id).where(Dialog.tenant_id == tenant_id)
        if chat_ids is not None:
            query = query.where(Dialog.id.in_(chat_ids))
        found = [d.id for d in query]
        require_all(chat_ids, found, "You don't own the chat(s)")
        if not found:
            return 0
        sessions = [c.id for c in Conversation.select(Conversation.id).where(Conversation.dialog_id.in_(found))]
        if sessions:
            Message.delete().where(Message.conversation_id.in_(sessions)).execute()
            Conversation.delete().where(Conversation.id.in_(sessions)).execute()
        Dialog.delete().where(Dialog.id.in_(found)).execute()
    return len(found)
