"""History and knowledge are fetched at the same time when retrieval needs no LLM step first."""

from __future__ import annotations

import asyncio
import time

from api.db.models import Conversation, Dialog
from api.db.services import conversation_service
from api.db.services.dialog_service import ChatState, DialogService

DELAY = 0.4


class SlowRetrieval(DialogService):
    async def retrieve(self, dialog, question):
        await asyncio.sleep(DELAY)
        return {"total": 0, "chunks": [], "doc_aggs": []}


async def test_history_and_knowledge_overlap(app, parts, monkeypatch) -> None:
    real_start_turn = conversation_service.start_turn

    def slow_start_turn(conversation_id: str, question: str):
        time.sleep(DELAY)
        return real_start_turn(conversation_id, question)

    monkeypatch.setattr(conversation_service, "start_turn", slow_start_turn)
    conversation = parts.db.call(lambda: Conversation.create(tenant_id="t", name="c"))
    gateway_like = Dialog(tenant_id="t", kb_ids=["kb"], prompt_config={})
    refining = Dialog(tenant_id="t", kb_ids=["kb"], prompt_config={"refine_multiturn": True})

    started = time.perf_counter()
    turn, retrieved = await conversation_service._history_and_knowledge(
        parts, SlowRetrieval(parts), gateway_like, conversation.id, "q", ChatState())
    overlapped = time.perf_counter() - started
    assert retrieved == {"total": 0, "chunks": [], "doc_aggs": []} and turn.history[-1]["content"] == "q"
    assert overlapped < 2 * DELAY * 0.8

    turn, retrieved = await conversation_service._history_and_knowledge(
        parts, SlowRetrieval(parts), refining, conversation.id, "q2", ChatState())
    assert retrieved is None  # retrieval waits for the refined question inside DialogService.chat
