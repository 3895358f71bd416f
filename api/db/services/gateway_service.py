"""The LLM-gateway view of the chat pipeline: free conversations, generate, stream, messages.

Gateway clients name a model, a tone, a system prompt and datasets per request instead of
configuring a chat assistant. We build an unsaved ``Dialog`` from those options and hand it to
the same ``conversation_service.completion`` the RAGFlow routes use: one pipeline, two doors.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from peewee import IntegrityError

from api.db.models import Conversation, Dialog, Message
from api.db.services import chat_assistant_service, conversation_service, intent_service
from api.db.services.cache_service import CachePolicy
from api.db.services.common import require_all
from api.db.services.dialog_service import ChatEvent, DialogService
from api.errors import ApiError, RetCode, data_error
from rag.prompts import tone_instruction

if TYPE_CHECKING:
    from api.components import Components

GATEWAY_TOP_N = 6


@dataclass
class GenerateOptions:
    """What one gateway request may set; ``None`` falls back to the conversation's assistant."""

    knowledge_base_ids: list[str] = field(default_factory=list)
    tone: str | None = None
    system_prompt: str | None = None
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    cache: bool | None = None  # the response cache: None follows the conversation's assistant
    cache_sampled: bool = False  # also cache an answer sampled at temperature > 0 (implies ``cache``)
    route: bool = False  # intent routing: the tenant's routes pick the chat assistant that answers

    def cache_policy(self) -> CachePolicy | None:
        if self.cache is None and not self.cache_sampled:
            return None
        return CachePolicy(enabled=bool(self.cache) or self.cache_sampled, sampled=self.cache_sampled)


def conversation_to_api(conversation: Conversation, messages: list[Message] | None = None) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "dialog_id": conversation.dialog_id,
        "name": conversation.name,
        "system_prompt": conversation.system_prompt,
        "messages": [conversation_service.message_to_api(m) for m in messages or []],
        "created_at": formatdate(conversation.create_time / 1000, usegmt=True),
        "updated_at": formatdate(conversation.update_time / 1000, usegmt=True),
    }


def get_conversation(tenant_id: str, conversation_id: str) -> Conversation:
    conversation = Conversation.get_or_none((Conversation.id == conversation_id)
                                            & (Conversation.tenant_id == tenant_id))
    if conversation is None:
        raise data_error(f"The conversation {conversation_id} doesn't exist.")
    return conversation


def set_conversation(tenant_id: str, conversation_id: str | None, dialog_id: str | None, name: str | None,
                     system_prompt: str | None) -> dict[str, Any]:
    """Create a conversation, or change the name/system prompt of an existing one."""
    if dialog_id:
        chat_assistant_service.get_owned(tenant_id, dialog_id)
    if conversation_id:
        conversation = get_conversation(tenant_id, conversation_id)
        conversation.name = name if name is not None else conversation.name
        conversation.system_prompt = system_prompt if system_prompt is not None else conversation.system_prompt
        conversation.dialog_id = dialog_id or conversation.dialog_id
        conversation.save()
    else:
        conversation = Conversation.create(tenant_id=tenant_id, dialog_id=dialog_id, name=name or "New conversation",
                                           system_prompt=system_prompt)
    return conversation_to_api(conversation, conversation_service.messages_of(conversation.id))


def read_conversation(tenant_id: str, conversation_id: str) -> dict[str, Any]:
    conversation = get_conversation(tenant_id, conversation_id)
    return conversation_to_api(conversation, conversation_service.messages_of(conversation.id))


def list_conversations(tenant_id: str, dialog_id: str | None) -> list[dict[str, Any]]:
    query = Conversation.select().where(Conversation.tenant_id == tenant_id)
    if dialog_id:
        chat_assistant_service.get_owned(tenant_id, dialog_id)
        query = query.where(Conversation.dialog_id == dialog_id)
    return [conversation_to_api(c) for c in query.order_by(Conversation.update_time.desc())]


def remove_conversations(tenant_id: str, conversation_ids: list[str]) -> int:
    with Conversation._meta.database.atomic():
        found = [c.id for c in Conversation.select(Conversation.id).where(
            (Conversation.tenant_id == tenant_id) & Conversation.id.in_(conversation_ids))]
        require_all(conversation_ids, found, "These conversations don't exist")
        Message.delete().where(Message.conversation_id.in_(found)).execute()
        Conversation.delete().where(Conversation.id.in_(found)).execute()
    return len(found)


def open_conversation(tenant_id: str, conversation_id: str | None, name: str, *,
                      adopt_client_ids: bool = False) -> Conversation:
    """The conversation to continue, or a new one when no id is given.

    With ``adopt_client_ids`` (the WebSocket and in-process doors, whose clients name their own
    conversations), an id the tenant has no conversation under starts one kept under that id for
    this tenant alone; elsewhere an unknown id is the client's error."""
    if not conversation_id:
        return Conversation.create(tenant_id=tenant_id, name=name[:255] or "New conversation")
    if not adopt_client_ids:
        return get_conversation(tenant_id, conversation_id)
    found = _by_any_id(tenant_id, conversation_id)
    if found is not None:
        return found
    try:
        with Conversation._meta.database.atomic():
            return Conversation.create(tenant_id=tenant_id, client_id=conversation_id,
                                       name=name[:255] or "New conversation")
    except IntegrityError:  # a concurrent first message under the same id made it first
        return Conversation.get((Conversation.tenant_id == tenant_id) & (Conversation.client_id == conversation_id))


def _by_any_id(tenant_id: str, conversation_id: str) -> Conversation | None:
    """The tenant's conversation whose generated or client-chosen id is ``conversation_id``."""
    return Conversation.get_or_none(
        (Conversation.tenant_id == tenant_id)
        & ((Conversation.id == conversation_id) | (Conversation.client_id == conversation_id))
    )


def check_tone(tone: str | None) -> None:
    """An unknown tone is the client's error (400 listing the known ones), found before any work."""
    if tone:
        try:
            tone_instruction(tone)
        except ValueError as error:
            raise ApiError(RetCode.ARGUMENT_ERROR, str(error), 400) from None


def check_model(parts: Components, model: str) -> None:
    """A model the registry cannot route is a bad argument of this request (400), not a missing object."""
    try:
        parts.check_chat_model(model)
    except ApiError as error:
        raise ApiError(RetCode.ARGUMENT_ERROR, error.message, 400) from None


def check_references(tenant_id: str, conversation_id: str | None, knowledge_base_ids: list[str]) -> None:
    """The conversation and datasets a request names must exist and be the caller's (404 otherwise);
    a background job checks this at submission, so the client hears of it at once."""
    if conversation_id:
        get_conversation(tenant_id, conversation_id)
    chat_assistant_service.check_datasets(tenant_id, knowledge_base_ids)


def dialog_for(tenant_id: str, conversation: Conversation, options: GenerateOptions, default_model: str) -> Dialog:
    """The assistant answering this request: the conversation's own, or an unsaved one built
    from the request's options (model, datasets, system prompt)."""
    if options.knowledge_base_ids:
        chat_assistant_service.check_datasets(tenant_id, options.knowledge_base_ids)
    if conversation.dialog_id:
        dialog = chat_assistant_service.get_owned(tenant_id, conversation.dialog_id)
    else:
        dialog = Dialog(tenant_id=tenant_id, name="gateway", kb_ids=[], llm_id=default_model, llm_setting={},
                        prompt_config={"system": conversation.system_prompt or "", "parameters": [],
                                       "quote": True},
                        similarity_threshold=0.2, vector_similarity_weight=0.3, top_n=GATEWAY_TOP_N, top_k=1024)
    if options.knowledge_base_ids:
        dialog.kb_ids = list(options.knowledge_base_ids)
    if options.model:
        dialog.llm_id = options.model
    return dialog


def request_options(options: GenerateOptions) -> dict[str, Any]:
    """The per-request part of a ``ChatRequest`` (tone, system prompt, generation settings)."""
    gen_conf = {key: value for key, value in (("max_tokens", options.max_tokens),
                                              ("temperature", options.temperature)) if value is not None}
    return {"tone": options.tone, "system_prompt": options.system_prompt, "gen_conf": gen_conf,
            "cache": options.cache_policy()}


async def answer(parts: Components, tenant_id: str, conversation_id: str | None, user_message: str,
                 options: GenerateOptions, *, stream: bool,
                 adopt_client_ids: bool = False) -> tuple[Conversation, AsyncIterator[ChatEvent]]:
    """The conversation answered in and the pipeline's events for ``user_message``
    (``adopt_client_ids``: see ``open_conversation``). With ``options.route`` the message is
    classified first and the chat assistant of its intent answers (the fallback assistant, or
    the ordinary one, when none fits); the decision rides on every event."""
    check_tone(options.tone)
    if options.model:
        check_model(parts, options.model)
    decision = await intent_service.classify(parts, tenant_id, user_message) if options.route else None

    def prepare() -> tuple[Conversation, Dialog]:
        conversation = open_conversation(tenant_id, conversation_id, user_message, adopt_client_ids=adopt_client_ids)
        routed = intent_service.routed_dialog(tenant_id, decision) if decision is not None else None
        return conversation, routed or dialog_for(tenant_id, conversation, options, parts.default_chat_model)

    conversation, dialog = await parts.db.run(prepare)
    events = conversation_service.completion(parts, DialogService(parts), dialog, conversation.id, user_message,
                                             stream=stream, intent=decision.to_api() if decision else None,
                                             **request_options(options))
    return conversation, events


def usage_summary(parts: Components, event: ChatEvent) -> tuple[dict[str, int], dict[str, Any]]:
    """``tokens_used`` and ``cost`` (split into prompt and completion, USD; null when unknown).

    An answer from the response cache reports the tokens of the call that produced it and a
    cost of zero: nothing was spent on it."""
    result = event.result
    usage = result.usage if result is not None else None
    prompt = usage.prompt_tokens if usage else 0
    completion = usage.completion_tokens if usage else 0
    model = result.model if result is not None and result.model else parts.default_chat_model
    if result is not None and result.cached:
        prompt_cost, completion_cost = 0.0, 0.0
    else:
        prompt_cost = parts.registry.cost(model, prompt, 0) if usage else None
        completion_cost = parts.registry.cost(model, 0, completion) if usage else None
    total_cost = None if prompt_cost is None or completion_cost is None else prompt_cost + completion_cost
    return (
        {"prompt": prompt, "completion": completion, "total": prompt + completion},
        {"prompt": prompt_cost, "completion": completion_cost, "total": total_cost, "currency": "USD"},
    )


def answer_facts(event: ChatEvent) -> dict[str, Any]:
    """What every gateway door reports beside the text: whether the response cache answered,
    which arm served when the assistant runs an A/B test (null otherwise), and the routing
    decision when intent routing chose the assistant."""
    result = event.result
    facts = {"cached": bool(result is not None and result.cached), "arm": result.arm if result is not None else None}
    if event.intent is not None:
        facts["intent"] = event.intent
    return facts


def references_of(event: ChatEvent) -> list[dict[str, Any]]:
    return list((event.reference or {}).get("chunks") or [])


def start_with_history(tenant_id: str, prior: list[dict[str, str]], name: str) -> str:
    """A new conversation holding the turns a client sent before its question; returns its id."""
    with Conversation._meta.database.atomic():
        conversation = open_conversation(tenant_id, None, name)
        for turn in prior:
            if turn["role"] == "system":
                conversation.system_prompt = turn["content"]
                conversation.save()
            else:
                conversation_service.append_message(conversation, turn["role"], turn["content"])
    return conversation.id


async def final_event(events: AsyncIterator[ChatEvent]) -> ChatEvent:
    """The last event of a non-streamed answer; a model failure becomes an ``ApiError`` with the
    model layer's HTTP status (429, 502, 504...)."""
    final = None
    async with contextlib.aclosing(events):
        async for event in events:
            final = event
    if final is None:
        raise ApiError(RetCode.EXCEPTION_ERROR, "The answer ended without a result.", 502)
    if final.error is not None:
        raise ApiError(RetCode.EXCEPTION_ERROR, str(final.error), getattr(final.error, "http_status", 502))
    return final


async def with_deltas(events: AsyncIterator[ChatEvent]) -> AsyncIterator[tuple[ChatEvent, str]]:
    """Each event with the text it adds to the answer so far ("" when it adds none).

    Gateway clients want pieces, not the whole answer every time. The final event may
    rewrite text the pieces already carried (citations added mid-answer); its ``answer`` is the
    authoritative text. The pipeline is closed however the consumer stops, as soon as the
    consumer closes this generator (``contextlib.aclosing``): a bare ``async for`` that breaks
    out leaves the closing, and so the storing of the answer, to the garbage collector.
    """
    sent = ""
    async with contextlib.aclosing(events):
        async for event in events:
            delta = ""
            if event.error is None and event.answer.startswith(sent) and len(event.answer) > len(sent):
                delta, sent = event.answer[len(sent):], event.answer
            yield event, delta
