"""LocalRagline: the gateway services in-process, on the same data dir as a server."""

from __future__ import annotations

import pytest

from api.db.models import Conversation, Message
from api.errors import ApiError
from api.local import LocalRagline, Reply
from tests.gateway.helpers import system_sent, turns_sent


async def test_conversation_with_system_prompt_generate_and_stream(settings, stub_llm) -> None:
    async with await LocalRagline.open(settings) as ragline:
        conversation_id = await ragline.create_conversation(system_prompt="You are terse.", name="local")
        stub_llm.configure(reply="Hi.")
        reply = await ragline.generate(conversation_id, "Hello!", max_tokens=64, temperature=0.2)
        assert isinstance(reply, Reply) and reply.response == "Hi." and reply.conversation_id == conversation_id
        assert reply.tokens_used["completion"] > 0 and reply.cost["currency"] == "USD"
        sent = stub_llm.chat_requests[-1]
        assert system_sent(sent).startswith("You are terse.")
        assert sent.body["max_tokens"] == 64 and sent.body["temperature"] == 0.2

        stub_llm.configure(reply="one two three four five", tokens_per_second=100)
        pieces: list[str] = []

        async def on_delta(text: str) -> None:
            pieces.append(text)

        streamed = await ragline.process_message(conversation_id, "Count.", on_delta)
        assert len(pieces) > 1 and "".join(pieces) == streamed.response == "one two three four five"
        assert turns_sent(stub_llm.chat_requests[-1]) == [("user", "Hello!"), ("assistant", "Hi."),
                                                          ("user", "Count.")]

        def stored() -> tuple[Conversation, list[str]]:
            rows = Message.select().where(Message.conversation_id == conversation_id).order_by(Message.seq)
            return Conversation.get_by_id(conversation_id), [m.content for m in rows]

        conversation, contents = await ragline.parts.db.run(stored)
        assert conversation.name == "local" and conversation.system_prompt == "You are terse."
        assert contents == ["Hello!", "Hi.", "Count.", "one two three four five"]


async def test_new_conversation_tone_and_failures(settings, stub_llm) -> None:
    async with await LocalRagline.open(settings, tenant="solo") as ragline:
        stub_llm.configure(reply="Sure!")
        reply = await ragline.generate(None, "Help?", tone="friendly")
        assert reply.response == "Sure!" and len(reply.conversation_id) == 32
        stub_llm.configure(fail_500=10)
        with pytest.raises(ApiError) as failure:
            await ragline.generate(reply.conversation_id, "Again?")
        assert failure.value.http_status == 502 and failure.value.message


async def test_a_caller_named_conversation_starts_then_continues(settings, stub_llm) -> None:
    async with await LocalRagline.open(settings, tenant="named") as ragline:
        stub_llm.configure(reply="Noted.")
        first = await ragline.generate("support-42", "My order is late.")
        second = await ragline.generate("support-42", "Any news?")
        assert first.conversation_id == second.conversation_id == "support-42"
        assert turns_sent(stub_llm.chat_requests[-1]) == [("user", "My order is late."), ("assistant", "Noted."),
                                                          ("user", "Any news?")]
    async with await LocalRagline.open(settings, tenant="other") as ragline:
        await ragline.generate("support-42", "Hello")
        assert turns_sent(stub_llm.chat_requests[-1]) == [("user", "Hello")]  # another tenant's own conversation
