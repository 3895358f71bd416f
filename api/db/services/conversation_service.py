"""Sessions (conversations) and their messages: storage and the API shapes.

A message is a row of its own, appended with the next ``seq``: storing a turn never rewrites
the history, and two writers can't lose each other's turns (``(conversation_id, seq)`` is
unique, so a collision fails loudly instead of silently overwriting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peewee import IntegrityError, SqliteDatabase, fn

from api.db.compiled import insert_new, select_by_id, select_rows, update_by_id
from api.db.models import Conversation, Dialog, Message, bound_database, new_id
from api.db.services.chat_assistant_service import Deletion, duplicate_errors
from api.db.services.common import http_date, ordered_page
from api.db.services.dialog_service import ChatEvent, ChatRequest, ChatState, DialogService, retrieval_filters
from api.errors import data_error

if TYPE_CHECKING:
    from api.components import Components

logger = logging.getLogger(__name__)

STATUS_COMPLETE, STATUS_INTERRUPTED, STATUS_ERROR = "complete", "interrupted", "error"
SESSION_NOT_FOUND = "Session not found!"
APPEND_ATTEMPTS = 5


def message_to_api(message: Message) -> dict[str, Any]:
    shaped: dict[str, Any] = {"id": message.id, "role": message.role, "content": message.content}
    if message.role == "assistant" and message.reference is not None:
        shaped["reference"] = message.reference
    if message.intent is not None:
        shaped["intent"] = {"intent": message.intent, "confidence": message.intent_confidence}
    if message.status != STATUS_COMPLETE:
        shaped["status"] = message.status
    return shaped


def session_to_api(conversation: Conversation, messages: list[Message]) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "chat_id": conversation.dialog_id,
        "name": conversation.name,
        "user_id": conversation.user_id or "",
        "messages": [message_to_api(m) for m in messages],
        "create_time": conversation.create_time,
        "create_date": http_date(conversation.create_time),
        "update_time": conversation.update_time,
        "update_date": http_date(conversation.update_time),
    }


def messages_of(conversation_id: str) -> list[Message]:
    return list(Message.select().where(Message.conversation_id == conversation_id).order_by(Message.seq))


def turns_of(conversation_id: str) -> list[dict[str, str]]:
    """The conversation's turns as a model reads them: role and text only.

    Not ``messages_of``: every stored answer carries its references (the cited chunks' text,
    several KB of JSON), and decoding them for each new question was the largest share of the
    database threads' CPU under chat load.
    """
    return _as_turns(_turn_rows(conversation_id))


def _as_turns(rows: list[tuple[str, str, int]]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content, _ in rows]


def _turn_rows(conversation_id: str) -> list[tuple[str, str, int]]:
    """(role, content, seq) of every turn, in order."""
    return select_rows("turn_rows", Message, [Message.conversation_id.db_value(conversation_id)],
                       lambda: Message.select(Message.role, Message.content, Message.seq)
                       .where(Message.conversation_id == conversation_id).order_by(Message.seq))


def append_message(conversation: Conversation, role: str, content: str, *, reference: Any = None,
                   status: str = STATUS_COMPLETE, error: str | None = None, message_id: str | None = None,
                   intent: dict[str, Any] | None = None, seq: int | None = None) -> Message:
    """Store one turn at the end of the conversation (its own transaction).

    Two writers that read the same last ``seq`` (MySQL, PostgreSQL) collide on the unique
    ``(conversation_id, seq)``; the loser reads again and takes the next one. ``seq`` is the
    caller's own knowledge of the next position (it has just read or written the one before),
    which saves reading it; a caller that guessed wrong collides and reads it like the loser.
    """
    attempts = 1
    while True:
        try:
            with _retryable():
                return _append(conversation, role, content, reference, status, error, message_id, intent,
                               seq if attempts == 1 else None)
        except IntegrityError:
            if attempts >= APPEND_ATTEMPTS:
                raise
            attempts += 1


def _retryable() -> contextlib.AbstractContextManager:
    """What a unit of writes retried after an IntegrityError runs in: a savepoint
    (``atomic()``), except inside a SQLite transaction (a write batch), where SQLite undoes the
    failed statement alone and the savepoint would only cost a SAVEPOINT and RELEASE per turn.
    PostgreSQL aborts the whole transaction on an error, so there the savepoint stays."""
    database = bound_database(Message)
    if isinstance(database, SqliteDatabase) and database.in_transaction():
        return contextlib.nullcontext()
    return database.atomic()


def _append(conversation: Conversation, role: str, content: str, reference: Any, status: str, error: str | None,
            message_id: str | None, intent: dict[str, Any] | None = None, seq: int | None = None) -> Message:
    if seq is None:
        last = Message.select(fn.MAX(Message.seq)).where(Message.conversation_id == conversation.id).scalar()
        seq = (last if last is not None else -1) + 1
    fields = {"tenant_id": conversation.tenant_id, "conversation_id": conversation.id,
              "seq": seq, "role": role, "content": content,
              "reference": reference, "status": status, "error": error}
    if intent is not None:
        fields.update(intent=intent["intent"], intent_confidence=intent["confidence"])
    if message_id:
        fields["id"] = message_id
    message = insert_new(Message, fields)
    update_by_id(Conversation, conversation.id, [("update_time", message.create_time)])
    return message


def create_session(tenant_id: str, chat_id: str, name: str, user_id: str | None, opener: str) -> dict[str, Any]:
    with Conversation._meta.database.atomic():
        conversation = Conversation.create(tenant_id=tenant_id, dialog_id=chat_id, name=name, user_id=user_id)
        messages = [append_message(conversation, "assistant", opener)] if opener else []
    return session_to_api(conversation, messages)


def _find_session(tenant_id: str, chat_id: str, session_id: str) -> Conversation | None:
    return Conversation.get_or_none(
        (Conversation.id == session_id) & (Conversation.dialog_id == chat_id) & (Conversation.tenant_id == tenant_id)
    )


def get_session(tenant_id: str, chat_id: str, session_id: str) -> Conversation:
    """The chat's session ``session_id``; 102 in the words RAGFlow's completion tests look for."""
    conversation = _find_session(tenant_id, chat_id, session_id)
    if conversation is None:
        raise data_error(f"You don't own the session {session_id}: it doesn't exist in this chat.")
    return conversation


def get_one_session(tenant_id: str, chat_id: str, session_id: str) -> dict[str, Any]:
    """``GET /chats/<chat>/sessions/<session>`` with its messages."""
    conversation = _find_session(tenant_id, chat_id, session_id)
    if conversation is None:
        raise data_error(SESSION_NOT_FOUND)
    return session_to_api(conversation, messages_of(conversation.id))


def list_sessions(tenant_id: str, chat_id: str, *, page: int, page_size: int, orderby: str, desc: bool,
                  session_id: str | None = None, name: str | None = None,
                  user_id: str | None = None) -> list[dict[str, Any]]:
    """A page of the chat's sessions (``page_size`` 0: none, as RAGFlow answers), with messages."""
    if page_size == 0:
        return []
    query = Conversation.select().where((Conversation.tenant_id == tenant_id) & (Conversation.dialog_id == chat_id))
    if session_id is not None:
        query = query.where(Conversation.id == session_id)
    if name is not None:
        query = query.where(Conversation.name == name)
    if user_id is not None:
        query = query.where(Conversation.user_id == user_id)
    conversations = list(ordered_page(query, Conversation, orderby, desc, page, page_size))
    by_conversation: dict[str, list[Message]] = {c.id: [] for c in conversations}
    if conversations:
        for message in Message.select().where(Message.conversation_id.in_(list(by_conversation))).order_by(Message.seq):
            by_conversation[message.conversation_id].append(message)
    return [session_to_api(c, by_conversation[c.id]) for c in conversations]


def rename_session(tenant_id: str, chat_id: str, session_id: str, name: str | None) -> dict[str, Any]:
    """Rename a session (``name`` None: nothing to change, the session as it is)."""
    conversation = _find_session(tenant_id, chat_id, session_id)
    if conversation is None:
        raise data_error(SESSION_NOT_FOUND)
    if name is not None:
        conversation.name = name
        conversation.save()
    return session_to_api(conversation, messages_of(conversation.id))


def delete_sessions(tenant_id: str, chat_id: str, session_ids: list[str] | None) -> Deletion:
    """Delete the chat's sessions (all when ``session_ids`` is None) with their messages.

    As RAGFlow does, ids that are not the chat's sessions are reported and the others deleted;
    when none can be deleted and some were named, it is a 102 listing them.
    """
    with Conversation._meta.database.atomic():
        query = Conversation.select(Conversation.id).where(
            (Conversation.tenant_id == tenant_id) & (Conversation.dialog_id == chat_id)
        )
        if session_ids is not None:
            query = query.where(Conversation.id.in_(list(set(session_ids))))
        found = [c.id for c in query]
        present = set(found)
        errors = [f"The chat doesn't own the session {session_id}"
                  for session_id in dict.fromkeys(session_ids or []) if session_id not in present]
        errors += duplicate_errors(session_ids or [], "session")
        if found:
            Message.delete().where(Message.conversation_id.in_(found)).execute()
            Conversation.delete().where(Conversation.id.in_(found)).execute()
    if errors and not found:
        raise data_error("; ".join(errors))
    return Deletion(found, errors)


@dataclass
class Turn:
    """The stored state of one answer while it is being produced."""

    conversation: Conversation
    message_id: str
    history: list[dict[str, Any]]
    question_seq: int | None = None  # where the question was stored; the answer goes right after


def start_turn(conversation_id: str, question: str) -> Turn:
    """Store the user's message (before any model is called) and load the history with it.

    The session was checked when the request came in, but the check may be remembered
    (``ChatDirectory``) and another server process may have deleted the session since.
    The history is read before the question is stored, which also says where the question
    goes; only when another writer took that place first is it read again.
    """
    conversation = select_by_id(Conversation, conversation_id)
    if conversation is None:
        raise data_error(f"The session {conversation_id} doesn't exist in this chat.")
    earlier = _turn_rows(conversation_id)
    expected_seq = earlier[-1][2] + 1 if earlier else 0
    stored = append_message(conversation, "user", question, seq=expected_seq)
    if stored.seq == expected_seq:
        history = [*_as_turns(earlier), {"role": "user", "content": question}]
    else:
        history = turns_of(conversation_id)
    return Turn(conversation=conversation, message_id=new_id(), history=history, question_seq=stored.seq)


def finish_turn(turn: Turn, answer: str, reference: Any, status: str, error: str | None,
                intent: dict[str, Any] | None = None) -> None:
    after_question = None if turn.question_seq is None else turn.question_seq + 1
    append_message(turn.conversation, "assistant", answer, reference=reference, status=status, error=error,
                   message_id=turn.message_id, intent=intent, seq=after_question)


async def _history_and_knowledge(parts: Components, dialog_service: DialogService, dialog: Dialog,
                                 conversation_id: str, question: str, state: ChatState,
                                 filters: dict[str, Any] | None = None) -> tuple[Turn, dict[str, Any] | None]:
    """Store the question and load the history; when retrieval needs no LLM step first, fetch
    the knowledge at the same time instead of after."""
    async def timed_history() -> Turn:
        started = time.perf_counter()
        try:
            return await parts.db.write(start_turn, conversation_id, question)
        finally:
            state.timings["history_ms"] = round((time.perf_counter() - started) * 1000, 3)

    if not dialog_service.retrieves_the_question_as_asked(dialog):
        return await timed_history(), None

    async def timed_retrieval() -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return await dialog_service.retrieve(dialog, question, **(filters or {}))
        finally:
            state.timings["retrieval_ms"] = round((time.perf_counter() - started) * 1000, 3)

    retrieval = asyncio.ensure_future(timed_retrieval())
    try:
        turn = await timed_history()
    except BaseException:
        retrieval.cancel()
        raise
    try:
        return turn, await retrieval
    except Exception:  # noqa: BLE001 - DialogService.chat retrieves again, where a failure is answered
        logger.warning("early retrieval failed; retrying within the answer", exc_info=True)
        return turn, None


async def completion(parts: Components, dialog_service: DialogService, dialog: Dialog, conversation_id: str,
                     question: str, *, stream: bool, intent: dict[str, Any] | None = None,
                     **options: Any) -> AsyncIterator[ChatEvent]:
    """Answer ``question`` in a conversation, storing both turns whatever happens.

    The question is stored before the model is called; the answer is stored when the
    generator ends — complete, failed (the partial answer with the reason) or abandoned by
    the client (the partial answer, marked interrupted). The final store is shielded so the
    cancellation that abandons the stream cannot also abandon the write. Any failure, the
    model's or not, ends the events with a final one carrying the error and the partial answer.
    ``intent`` (the decision of intent routing, when it chose ``dialog``) rides on every event
    and is stored on the answer.
    """
    state = ChatState()
    turn, retrieved = await _history_and_knowledge(parts, dialog_service, dialog, conversation_id, question, state,
                                                   retrieval_filters(options.get("metadata_condition")))
    status, error_text = STATUS_INTERRUPTED, "the client went away"
    request = ChatRequest(dialog=dialog, messages=turn.history, stream=stream, conversation_id=conversation_id,
                          message_id=turn.message_id, retrieved=retrieved, **options)
    try:
        async for event in dialog_service.chat(request, state):
            if event.final:
                status = STATUS_ERROR if event.error else STATUS_COMPLETE
                error_text = str(event.error) if event.error else None
            event.intent = intent
            yield event
    except Exception as error:  # noqa: BLE001 - not only the model's: a failed step ends the answer too
        logger.exception("answer in conversation %s failed", conversation_id)
        status, error_text = STATUS_ERROR, f"{type(error).__name__}: {error}"
        yield ChatEvent(state.answer, final=True, reference=state.reference, error=error, timings=state.timings,
                        message_id=turn.message_id, intent=intent)
    finally:
        saving = asyncio.ensure_future(
            parts.db.write(finish_turn, turn, state.answer, state.reference, status, error_text, intent))
        parts.metrics.observe_steps(state.timings)
        await asyncio.shield(saving)
