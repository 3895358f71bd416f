"""Session completions as SSE (API.md): first event with the first token, coalescing, the final
event with citations and references, the closing ``data: true``; the question stored first."""

from __future__ import annotations

import asyncio
import threading

from api.db.models import Dialog
from rag.llm.types import ChatDelta
from tests.chat.helpers import (
    FACTS,
    answers,
    api,
    create_chat,
    sdk,
    seed_dataset,
    session_messages,
    stream_completion,
    wait_for,
)


def _words(count: int) -> str:
    return " ".join(f"w{i}" for i in range(count))


def test_stream_shape_first_event_and_coalescing(live_server, stub_llm) -> None:
    key = live_server.key()
    dataset = seed_dataset(sdk(live_server))
    chat = create_chat(live_server, key, name="geo", dataset_ids=[dataset.id])

    # A slow start, then a steady trickle: the first event must not wait for a batch of tokens.
    stub_llm.configure(reply="The Eiffel Tower in Paris was completed in 1889. " + _words(30),
                       first_token_delay=0.6, tokens_per_second=20)
    events, _ = stream_completion(live_server, key, chat["id"], {"question": "When was the Eiffel Tower built?"})
    first_token_at = stub_llm.chat_requests[-1].time + 0.6
    first = answers(events)[0]
    assert first["answer"].startswith("The")
    lag = events[0].at - first_token_at
    assert -0.05 < lag < 0.45, f"first event {lag:.3f}s after the stub's first token"  # batching 16: 0.75 s

    payloads = answers(events)
    texts = [p["answer"] for p in payloads]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:-1], strict=False)), "answers only grow"
    assert all(p["reference"] == {} for p in payloads[:-1])
    final = payloads[-1]
    assert "[ID:0]" in final["answer"]  # no citation from the model: insert_citations added one
    assert final["answer"].replace(" [ID:0]", "").startswith(texts[-2])
    reference = final["reference"]
    assert reference["total"] == len(reference["chunks"]) >= 1
    assert reference["chunks"][0]["content"] == FACTS[0]
    assert set(reference["chunks"][0]) >= {"id", "content", "document_id", "document_name", "dataset_id",
                                           "image_id", "positions", "similarity", "vector_similarity",
                                           "term_similarity"}
    assert reference["doc_aggs"][0]["doc_name"] == "facts.txt"
    assert {p["session_id"] for p in payloads} == {payloads[0]["session_id"]}
    assert {p["id"] for p in payloads} == {session_messages(live_server, payloads[0]["session_id"])[-1].id}
    assert all(p["audio_binary"] is None for p in payloads)
    assert events[-1].payload == {"code": 0, "message": "", "data": True}

    # 200 tokens as fast as the stub can: each event repeats the whole answer, so far fewer events.
    stub_llm.configure(reply=_words(200), first_token_delay=0, tokens_per_second=0)
    events, _ = stream_completion(live_server, key, chat["id"], {"question": "Eiffel Tower?"})
    fast = answers(events)
    assert len(fast) <= 50, f"{len(fast)} events for 200 tokens"  # 200/16 plus a flush per 50 ms
    assert fast[-1]["answer"].startswith(_words(200))
    assert events[-1].payload["data"] is True


def test_question_is_stored_before_the_model_answers(live_server, stub_llm) -> None:
    key = live_server.key()
    chat = create_chat(live_server, key, name="solo", prompt={"opener": "Hi!"})
    stub_llm.configure(reply="Late answer.", first_token_delay=1.5)
    result: dict = {}
    session_id = api(live_server, key, "POST", f"/api/v1/chats/{chat['id']}/sessions", {"name": "s"})["data"]["id"]
    worker = threading.Thread(target=lambda: result.update(events=stream_completion(
        live_server, key, chat["id"], {"question": "Are you there?", "session_id": session_id})[0]))
    worker.start()
    assert wait_for(lambda: stub_llm.chat_requests, timeout=5), "the model was never called"
    stored = session_messages(live_server, session_id)
    assert [(m.role, m.content) for m in stored] == [("assistant", "Hi!"), ("user", "Are you there?")]
    worker.join(10)
    assert answers(result["events"])[-1]["answer"] == "Late answer."
    assert [m.content for m in session_messages(live_server, session_id)][-1] == "Late answer."


class BurstyModel:
    """A model that writes a burst of tokens, pauses, then finishes (like batching providers)."""

    async def chat_streamly(self, system, history, gen_conf):
        for word in ("one ", "two ", "three ", "four "):
            yield ChatDelta(text=word)
        await asyncio.sleep(1.0)
        yield ChatDelta(text="five.", finish_reason="stop")


def test_pending_text_goes_out_while_the_model_pauses(live_server, stub_llm) -> None:
    key = live_server.key()
    chat = create_chat(live_server, key, name="bursty")
    live_server.parts.registry.register("bursty@Builtin", BurstyModel())
    live_server.parts.db.call(lambda: Dialog.update(llm_id="bursty@Builtin").where(Dialog.id == chat["id"]).execute())
    events, _ = stream_completion(live_server, key, chat["id"], {"question": "count"})
    shown = [(e.at, e.payload["data"]["answer"]) for e in events[:-1]]
    assert shown[0][1] == "one " and shown[-1][1] == "one two three four five."
    burst = [at for at, text in shown if text == "one two three four "]
    assert burst, "the burst was held until the model went on"
    assert burst[0] - shown[0][0] < 0.3
    assert shown[-1][0] - burst[0] > 0.7
