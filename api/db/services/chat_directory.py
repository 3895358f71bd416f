"""Chats and session ownership as answers look them up: the database, remembered for seconds.

Every completion first checks that the chat (and the session) are the caller's, and only then
can retrieval start. Under chat_load that trip to a database thread took 8 ms p50 (the
thread's queue and the GIL, not the two primary-key reads), all of it in the time to first
token. Chats change rarely and a session's owner never, so the answers are remembered:

- a change made through this process (a chat updated or deleted, sessions deleted) forgets
  the entries it touches at once, so this process never answers from a stale chat;
- another process sharing the database sees a changed chat within ``CHAT_SECONDS``; a
  session's owner never changes, so sessions are remembered for ``SESSION_SECONDS`` (a
  session deleted by another process meanwhile is refused, 102, when its question is stored);
- a lookup that was in flight while entries were forgotten does not store what it read, which
  may predate the change.

Remembered chats are shared by concurrent answers and must be treated as read-only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable

from api.db.database import MetaDB
from api.db.models import Dialog
from api.db.services import chat_assistant_service, conversation_service
from api.db.services.knowledgebase_service import embedding_model_of

CHAT_SECONDS = 5.0
# Longer than a session's pause between questions under load (5-6 s in chat_load), which a
# 5-second memory missed nearly every time.
SESSION_SECONDS = 120.0
CACHE_MAX_ENTRIES = 10_000


class _Expiring:
    """A bounded map whose entries expire ``seconds`` after they were stored (cleared when full)."""

    def __init__(self, seconds: float, max_entries: int) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[object, float]] = {}
        self.generation = 0  # counts forgets: a lookup begun before one must not store its answer

    def get(self, key: Hashable) -> object | None:
        entry = self._entries.get(key)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def put(self, key: Hashable, value: object, generation: int) -> None:
        """Remember ``value`` unless entries were forgotten since ``generation`` was read."""
        if generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (value, time.monotonic() + self.seconds)

    def forget(self, keep: Callable[[Hashable], bool]) -> None:
        """Drop every entry whose key ``keep(key)`` refuses."""
        self.generation += 1
        self._entries = {key: entry for key, entry in self._entries.items() if keep(key)}


class ChatDirectory:
    """The caller's chats and sessions, each checked once per ``chat_seconds`` / ``session_seconds``."""

    def __init__(self, db: MetaDB, chat_seconds: float = CHAT_SECONDS, session_seconds: float = SESSION_SECONDS,
                 max_entries: int = CACHE_MAX_ENTRIES) -> None:
        self.db = db
        self._chats = _Expiring(chat_seconds, max_entries)  # (tenant, chat) -> Dialog
        self._sessions = _Expiring(session_seconds, max_entries)  # (tenant, chat, session) -> True
        self._models = _Expiring(chat_seconds, max_entries)  # (tenant, dataset ids) -> (embedding model,)

    async def owned_chat(self, tenant_id: str, chat_id: str) -> Dialog:
        """The tenant's chat ``chat_id``; the data error (102) when it is missing or another's."""
        dialog = self._chats.get((tenant_id, chat_id))
        if dialog is None:
            generation = self._chats.generation
            dialog = await self.db.run(chat_assistant_service.get_owned, tenant_id, chat_id)
            self._chats.put((tenant_id, chat_id), dialog, generation)
        return dialog

    async def owned_chat_and_session(self, tenant_id: str, chat_id: str, session_id: str | None) -> Dialog:
        """``owned_chat``, and ``session_id`` (when given) checked to be one of its sessions,
        in one database trip when either is not remembered."""
        dialog = self._chats.get((tenant_id, chat_id))
        if dialog is not None and (not session_id or self._sessions.get((tenant_id, chat_id, session_id))):
            return dialog
        generations = self._chats.generation, self._sessions.generation
        dialog = await self.db.run(_owned_chat_and_session, tenant_id, chat_id, session_id)
        self._chats.put((tenant_id, chat_id), dialog, generations[0])
        if session_id:
            self._sessions.put((tenant_id, chat_id, session_id), True, generations[1])
        return dialog

    async def embedding_model(self, tenant_id: str, kb_ids: list[str]) -> str | None:
        """The embedding model a chat's datasets share (None when none of them exists any more),
        remembered like a chat: under chat_load reading it was 8% of the database thread's time
        per answer. A dataset's model changes only while it holds no chunks (``update`` refuses
        otherwise), so a remembered one cannot embed a question for chunks of another model."""
        key = (tenant_id, tuple(kb_ids))
        remembered = self._models.get(key)
        if remembered is None:
            generation = self._models.generation
            remembered = (await self.db.run(embedding_model_of, tenant_id, list(kb_ids)),)
            self._models.put(key, remembered, generation)
        return remembered[0]

    def forget_datasets(self, tenant_id: str) -> None:
        """After the tenant's datasets were changed or deleted through this process."""
        self._models.forget(lambda key: key[0] != tenant_id)

    def forget_chats(self, tenant_id: str, chat_ids: Iterable[str] | None) -> None:
        """After chats were changed or deleted (``None``: all of the tenant's), with their sessions."""
        gone = None if chat_ids is None else set(chat_ids)

        def keep(key: Hashable) -> bool:  # (tenant, chat) and (tenant, chat, session) alike
            return key[0] != tenant_id or (gone is not None and key[1] not in gone)

        self._chats.forget(keep)
        self._sessions.forget(keep)

    def forget_sessions(self, tenant_id: str, chat_id: str | None, session_ids: Iterable[str] | None) -> None:
        """After sessions of a chat (``chat_id`` None: of any chat) were deleted (``session_ids``
        None: all of them)."""
        gone = None if session_ids is None else set(session_ids)

        def keep(key: Hashable) -> bool:
            tenant, chat, session = key
            return (tenant != tenant_id or (chat_id is not None and chat != chat_id)
                    or (gone is not None and session not in gone))

        self._sessions.forget(keep)


def _owned_chat_and_session(tenant_id: str, chat_id: str, session_id: str | None) -> Dialog:
    dialog = chat_assistant_service.get_owned(tenant_id, chat_id)
    if session_id:
        conversation_service.get_session(tenant_id, chat_id, session_id)
    return dialog
