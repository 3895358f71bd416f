"""Chat assistants (RAGFlow's "chats", stored as ``Dialog`` rows): create, list, read, update, delete.

Two API lines describe a chat. v0.22 nests the settings (``llm: {model_name, temperature, ...}``,
``prompt: {prompt, opener, variables, keywords_similarity_weight, ...}``, ``avatar``); v0.27 uses
the row's own names (``llm_id``, ``llm_setting``, ``prompt_config: {system, prologue, parameters,
...}``, ``similarity_threshold``, ``vector_similarity_weight``, ``top_n``, ``rerank_id``, ``icon``,
``meta_data_filter``). ``normalize`` turns either (or a mix) into the row's names; ``to_api``
answers with both, so either SDK's ``Chat`` object fills.

``keywords_similarity_weight`` (v0.22's nested name) is the weight of the term side, as API.md
and RAGFlow's own documentation define it: the row stores ``vector_similarity_weight = 1 - it``
and the nested shape reads it back as given (the SDK's default 0.7 retrieves at w = 0.3).
RAGFlow v0.22's code stored it unchanged and read back ``1 - it`` (an inversion its own tests
pinned and newer RAGFlow normalises away); Ragline keeps the documented meaning.

Where the two lines disagree on behaviour rather than shape (a few messages, two defaults, the
check that ``{knowledge}`` is used), ``ChatLine`` says what each does; the route picks the
request's line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from peewee import fn

from api.db.models import Conversation, Dialog, Knowledgebase, Message
from api.db.services.common import http_date
from api.db.services.knowledgebase_service import owned_with_one_model
from api.db.services.metadata_service import parse_condition
from api.errors import ApiError, RetCode, data_error
from rag.prompts import PromptVariableError, check_prompt_variables

# RAGFlow's default chat prompt word for word (both lines' API tests compare it whole).
DEFAULT_SYSTEM_PROMPT = (
    "You are an intelligent assistant. Please summarize the content of the dataset to answer the question. "
    "Please list the data in the dataset and answer in detail. When all dataset content is irrelevant to the "
    'question, your answer must include the sentence "The answer you are looking for is not found in the dataset!" '
    "Answers need to consider chat history.\n"
    "      Here is the knowledge base:\n"
    "      {knowledge}\n"
    "      The above is the knowledge base."
)
DEFAULT_EMPTY_RESPONSE = "Sorry! No relevant content was found in the knowledge base!"
KNOWLEDGE_PARAMETER = {"key": "knowledge", "optional": False}
DEFAULT_LLM_SETTING: dict[str, Any] = {
    "temperature": 0.1, "top_p": 0.3, "presence_penalty": 0.4, "frequency_penalty": 0.7, "max_tokens": 512,
}
DEFAULT_PROMPT_CONFIG: dict[str, Any] = {
    "system": DEFAULT_SYSTEM_PROMPT,
    "parameters": [dict(KNOWLEDGE_PARAMETER)],
    "empty_response": DEFAULT_EMPTY_RESPONSE,
    "prologue": "Hi! I'm your assistant. What can I do for you?",
    "quote": True,
    "refine_multiturn": False,
    "keyword": False,
    "tone": None,
}
# API name in v0.22's "prompt" → key in the stored prompt_config (v0.27's names).
PROMPT_KEYS = {"prompt": "system", "variables": "parameters", "opener": "prologue", "show_quote": "quote",
               "empty_response": "empty_response", "refine_multiturn": "refine_multiturn", "keyword": "keyword",
               "tone": "tone"}
# Settings v0.22 nests in "prompt" and v0.27 sends at the top level, under the row's names.
RETRIEVAL_COLUMNS = ("similarity_threshold", "vector_similarity_weight", "top_n", "top_k")
PLAIN_COLUMNS = ("name", "description", *RETRIEVAL_COLUMNS, "meta_data_filter")


@dataclass(frozen=True)
class ChatLine:
    """What differs between RAGFlow's two lines for chats: messages whose exact words their API
    tests assert, and the few rules one line has and the other not."""

    name_required: str
    duplicate_on_create: str
    duplicate_on_update: str
    not_found: str  # a chat named in a delete that is not the caller's; ``{id}`` is filled in
    noun: str  # in "Duplicate <noun> ids: ..."
    no_such_chat: str  # a list filtered by an id or name that matches nothing (v0.22 refuses it)
    similarity_threshold: float  # the default of a new chat
    knowledge_must_be_used: bool  # v0.22 refuses a prompt without {knowledge} while it is required
    knowledge_parameter_by_default: bool  # v0.27 declares {knowledge} when a chat with datasets has none


CHAT_LINES: dict[str, ChatLine] = {
    "0.22": ChatLine("`name` is required.", "Duplicated chat name in creating chat.",
                     "Duplicated chat name in updating chat.", "Assistant({id}) not found.", "assistant",
                     "The chat doesn't exist", similarity_threshold=0.2, knowledge_must_be_used=True,
                     knowledge_parameter_by_default=False),
    "0.27": ChatLine("`name` is required", "duplicated chat name in creating chat", "Duplicated chat name.",
                     "Chat({id}) not found.", "chat", "", similarity_threshold=0.1, knowledge_must_be_used=False,
                     knowledge_parameter_by_default=True),
}


@dataclass(frozen=True)
class ChatListing:
    """One page request of ``GET /chats``. ``page_size`` None means every chat (v0.27's 0)."""

    page: int = 1
    page_size: int | None = 30
    orderby: str = "create_time"
    desc: bool = True
    chat_id: str | None = None
    name: str | None = None
    keywords: str | None = None
    owner_ids: list[str] | None = None


def to_api(dialog: Dialog) -> dict[str, Any]:
    """Both lines' chat object: v0.22's nested ``llm``/``prompt``/``avatar`` and v0.27's flat fields."""
    config = {**DEFAULT_PROMPT_CONFIG, **(dialog.prompt_config or {})}
    prompt = {api_key: config.get(stored_key) for api_key, stored_key in PROMPT_KEYS.items()}
    prompt.update(
        similarity_threshold=dialog.similarity_threshold,
        keywords_similarity_weight=round(1 - dialog.vector_similarity_weight, 6),
        top_n=dialog.top_n,
        top_k=dialog.top_k,
        rerank_model=dialog.rerank_id or "",
    )
    llm_setting = {**DEFAULT_LLM_SETTING, **(dialog.llm_setting or {})}
    return {
        "id": dialog.id,
        "name": dialog.name,
        "avatar": dialog.avatar or "",
        "icon": dialog.avatar or "",
        "description": dialog.description,
        "dataset_ids": list(dialog.kb_ids),
        "llm": {"model_name": dialog.llm_id, **llm_setting},
        "prompt": prompt,
        "llm_id": dialog.llm_id,
        "llm_setting": llm_setting,
        "prompt_config": config,
        "similarity_threshold": dialog.similarity_threshold,
        "vector_similarity_weight": dialog.vector_similarity_weight,
        "top_n": dialog.top_n,
        "top_k": dialog.top_k,
        "rerank_id": dialog.rerank_id or "",
        "meta_data_filter": dialog.meta_data_filter or {},
        "tenant_id": dialog.tenant_id,
        "status": "1",
        "create_time": dialog.create_time,
        "create_date": http_date(dialog.create_time),
        "update_time": dialog.update_time,
        "update_date": http_date(dialog.update_time),
    }


def opener(dialog: Dialog) -> str:
    """The chat's opening message (``prologue``), put first in every new session."""
    return str({**DEFAULT_PROMPT_CONFIG, **(dialog.prompt_config or {})}.get("prologue") or "")


def normalize(given: dict[str, Any]) -> dict[str, Any]:
    """A chat body of either line (or a mix) in the row's names.

    v0.27's top-level fields win over the same setting nested in v0.22's ``prompt``/``llm``.
    """
    flat = {key: given[key] for key in PLAIN_COLUMNS if key in given}
    if "icon" in given or "avatar" in given:
        flat["avatar"] = given.get("icon", given.get("avatar"))
    if "dataset_ids" in given:
        flat["kb_ids"] = list(dict.fromkeys(given["dataset_ids"]))
    llm = dict(given.get("llm") or {})
    if "model_name" in llm:
        flat["llm_id"] = llm.pop("model_name")
    if "llm_id" in given:
        flat["llm_id"] = given["llm_id"]
    setting = {**llm, **(given.get("llm_setting") or {})}
    if setting:
        flat["llm_setting"] = setting
    prompt = dict(given.get("prompt") or {})
    for column in RETRIEVAL_COLUMNS:
        if column in prompt:
            flat.setdefault(column, prompt[column])
    if prompt.get("keywords_similarity_weight") is not None:  # the term side's weight (module doc)
        flat.setdefault("vector_similarity_weight", round(1 - prompt["keywords_similarity_weight"], 6))
    if "rerank_model" in prompt:
        flat["rerank_id"] = prompt["rerank_model"]
    if "rerank_id" in given:
        flat["rerank_id"] = given["rerank_id"]
    config = {PROMPT_KEYS[key]: value for key, value in prompt.items() if key in PROMPT_KEYS}
    config.update(given.get("prompt_config") or {})
    if "meta_data_filter" in config:  # also accepted inside the prompt config
        flat.setdefault("meta_data_filter", config.pop("meta_data_filter"))
    if config:
        flat["prompt_config"] = config
    return flat


def metadata_condition_of(meta_data_filter: dict[str, Any] | None) -> dict[str, Any] | None:
    """A chat's ``meta_data_filter`` as a retrieval ``metadata_condition`` (``{logic, conditions:
    [{name, comparison_operator, value}]}``), or None when it restricts nothing.

    RAGFlow's ``method: "manual"`` lists ``manual: [{key, op, value}]``; a ``conditions`` list (the
    ``/retrieval`` shape, or ``{key, op, value}`` items) is taken as it is. ``"auto"`` and
    ``"semi_auto"`` have an LLM write the filter from each question, which Ragline does not do, so
    they, like ``"disabled"``, restrict nothing.
    """
    if not isinstance(meta_data_filter, dict) or not meta_data_filter:
        return None
    method = meta_data_filter.get("method", "manual")
    conditions = meta_data_filter.get("conditions")
    if conditions is None and method == "manual":
        conditions = meta_data_filter.get("manual")
    if method not in ("manual", None) or not isinstance(conditions, list) or not conditions:
        return None
    return {
        "logic": meta_data_filter.get("logic") or "and",
        "conditions": [{"name": c.get("name", c.get("key")), "comparison_operator": c.get("comparison_operator",
                        c.get("op")), "value": c.get("value")} for c in conditions if isinstance(c, dict)],
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


def is_owned(tenant_id: str, chat_id: str) -> bool:
    return Dialog.select().where((Dialog.id == chat_id) & (Dialog.tenant_id == tenant_id)).exists()


def get_one(tenant_id: str, chat_id: str) -> dict[str, Any]:
    """``GET /chats/<id>``: RAGFlow v0.27 answers 109 "No authorization." for a chat not the caller's."""
    dialog = Dialog.get_or_none((Dialog.id == chat_id) & (Dialog.tenant_id == tenant_id))
    if dialog is None:
        raise ApiError(RetCode.AUTHENTICATION_ERROR, "No authorization.")
    return to_api(dialog)


def check_datasets(tenant_id: str, kb_ids: list[str]) -> None:
    """The datasets must all be the caller's, hold parsed chunks, and share one embedding model
    (102 otherwise, in RAGFlow's words: a chat on a dataset with nothing parsed answers nothing)."""
    if not kb_ids:
        return
    chunks = {kb.id: kb.chunk_num for kb in Knowledgebase.select(Knowledgebase.id, Knowledgebase.chunk_num).where(
        (Knowledgebase.tenant_id == tenant_id) & Knowledgebase.id.in_(kb_ids))}
    for kb_id in kb_ids:
        if kb_id not in chunks:
            raise data_error(f"You don't own the dataset {kb_id}")
        if not chunks[kb_id]:
            raise data_error(f"The dataset {kb_id} doesn't own parsed file")
    owned_with_one_model(tenant_id, kb_ids)


def _name_taken(tenant_id: str, name: str, except_id: str | None = None) -> bool:
    query = Dialog.select().where((Dialog.tenant_id == tenant_id) & (fn.LOWER(Dialog.name) == name.lower()))
    if except_id:
        query = query.where(Dialog.id != except_id)
    return query.exists()


def _apply(dialog: Dialog, flat: dict[str, Any], line: ChatLine) -> None:
    """Write ``normalize``d changes onto the row; settings merge into what is stored."""
    for column in (*PLAIN_COLUMNS, "avatar", "kb_ids", "llm_id"):
        if column in flat:
            setattr(dialog, column, flat[column])
    if "rerank_id" in flat:
        dialog.rerank_id = flat["rerank_id"] or None
    if "meta_data_filter" in flat:
        parse_condition(metadata_condition_of(flat["meta_data_filter"]))  # a bad filter is refused when stored
    dialog.llm_setting = {**(dialog.llm_setting or {}), **flat.get("llm_setting", {})}
    config = {**(dialog.prompt_config or {}), **flat.get("prompt_config", {})}
    merged = {**DEFAULT_PROMPT_CONFIG, **config}
    parameters = [p for p in merged.get("parameters") or []
                  if line.knowledge_must_be_used or p.get("key") != KNOWLEDGE_PARAMETER["key"]]
    try:
        check_prompt_variables(str(merged.get("system") or ""), parameters)
    except PromptVariableError as error:
        unused = getattr(error, "names", None) or ["?"]
        raise data_error(f"Parameter '{unused[0]}' is not used") from None
    dialog.prompt_config = config


def _declare_knowledge(flat: dict[str, Any]) -> None:
    """v0.27: a chat with datasets whose prompt uses ``{knowledge}`` but declares no parameters
    gets the ``knowledge`` parameter, as RAGFlow v0.27 adds it on create."""
    config = flat.get("prompt_config") or {}
    system = config.get("system") or DEFAULT_SYSTEM_PROMPT
    if flat.get("kb_ids") and "parameters" in config and not config["parameters"] and "{knowledge}" in system:
        flat["prompt_config"] = {**config, "parameters": [dict(KNOWLEDGE_PARAMETER)]}


def create(tenant_id: str, given: dict[str, Any], default_llm: str,
           line: ChatLine = CHAT_LINES["0.22"]) -> dict[str, Any]:
    flat = normalize(given)
    if line.knowledge_parameter_by_default:
        _declare_knowledge(flat)
    with Dialog._meta.database.atomic():
        if _name_taken(tenant_id, flat["name"]):
            raise data_error(line.duplicate_on_create)
        check_datasets(tenant_id, flat.get("kb_ids") or [])
        dialog = Dialog(tenant_id=tenant_id, name=flat["name"], kb_ids=[], llm_id=default_llm,
                        llm_setting=dict(DEFAULT_LLM_SETTING), prompt_config=dict(DEFAULT_PROMPT_CONFIG),
                        similarity_threshold=line.similarity_threshold, vector_similarity_weight=0.3, top_n=6,
                        top_k=1024)
        _apply(dialog, flat, line)
        dialog.llm_id = dialog.llm_id or default_llm
        dialog.save(force_insert=True)
    return to_api(dialog)


def list_page(tenant_id: str, listing: ChatListing) -> tuple[list[dict[str, Any]], int]:
    """One page of the tenant's chats and how many match in all."""
    query = Dialog.select().where(Dialog.tenant_id == tenant_id)
    if listing.owner_ids is not None and tenant_id not in listing.owner_ids:
        return [], 0  # a key sees only its own tenant's chats
    if listing.chat_id is not None:
        query = query.where(Dialog.id == listing.chat_id)
    if listing.name is not None:
        query = query.where(fn.LOWER(Dialog.name) == listing.name.lower())
    elif listing.keywords:
        query = query.where(fn.LOWER(Dialog.name).contains(listing.keywords.lower()))
    total = query.count()
    if listing.page_size == 0:
        return [], total
    column = getattr(Dialog, listing.orderby)
    query = query.order_by(*((column.desc(), Dialog.id.desc()) if listing.desc else (column.asc(), Dialog.id.asc())))
    if listing.page_size is not None:
        query = query.paginate(listing.page, listing.page_size)
    return [to_api(d) for d in query], total


def update(tenant_id: str, chat_id: str, given: dict[str, Any], default_llm: str,
           line: ChatLine = CHAT_LINES["0.22"]) -> dict[str, Any]:
    flat = normalize(given)
    with Dialog._meta.database.atomic():
        dialog = get_owned(tenant_id, chat_id)
        if "name" in flat and _name_taken(tenant_id, flat["name"], except_id=chat_id):
            raise data_error(line.duplicate_on_update)
        if "kb_ids" in flat:
            check_datasets(tenant_id, flat["kb_ids"] or [])
        _apply(dialog, flat, line)
        dialog.llm_id = dialog.llm_id or default_llm
        dialog.save()
    return to_api(dialog)


@dataclass(frozen=True)
class Deletion:
    """What a bulk delete did: ids deleted, and one message per id it could not (RAGFlow's
    ``{"success_count", "errors"}``: the valid ids are deleted even when others are not)."""

    deleted: list[str]
    errors: list[str]


def duplicate_errors(ids: list[str], noun: str) -> list[str]:
    repeated = [item for item, count in Counter(ids).items() if count > 1]
    return [f"Duplicate {noun} ids: {', '.join(repeated)}"] if repeated else []


def delete_many(tenant_id: str, chat_ids: list[str] | None, line: ChatLine = CHAT_LINES["0.22"]) -> Deletion:
    """Delete chats (every one of the tenant's when ``chat_ids`` is None) with their sessions.

    Ids that are not the caller's chats are reported, the others deleted; when none can be
    deleted and some were named, it is a 102 listing them.
    """
    with Dialog._meta.database.atomic():
        query = Dialog.select(Dialog.id).where(Dialog.tenant_id == tenant_id)
        if chat_ids is not None:
            query = query.where(Dialog.id.in_(list(set(chat_ids))))
        found = [d.id for d in query]
        asked, present = (list(dict.fromkeys(chat_ids)) if chat_ids is not None else found), set(found)
        errors = [line.not_found.format(id=chat_id) for chat_id in asked if chat_id not in present]
        errors += duplicate_errors(chat_ids or [], line.noun)
        if found:
            sessions = [c.id for c in Conversation.select(Conversation.id).where(Conversation.dialog_id.in_(found))]
            if sessions:
                Message.delete().where(Message.conversation_id.in_(sessions)).execute()
                Conversation.delete().where(Conversation.id.in_(sessions)).execute()
            Dialog.delete().where(Dialog.id.in_(found)).execute()
    if errors and not found:
        raise data_error("; ".join(errors))
    return Deletion(found, errors)
