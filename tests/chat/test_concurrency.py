"""Several answers in one session at the same time: every turn is stored, none overwrites another."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.chat.helpers import api, create_chat, session_messages


def test_concurrent_questions_in_one_session_are_all_stored(live_server, stub_llm) -> None:
    key = live_server.key()
    chat = create_chat(live_server, key, name="busy", prompt={"opener": "Hi!"})
    session_id = api(live_server, key, "POST", f"/api/v1/chats/{chat['id']}/sessions", {"name": "s"})["data"]["id"]
    stub_llm.configure(reply="Done.", first_token_delay=0.2)

    def ask(index: int) -> dict:
        return api(live_server, key, "POST", f"/api/v1/chats/{chat['id']}/completions",
                   {"question": f"question {index}", "session_id": session_id, "stream": False})

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(ask, range(8)))
    assert all(r["code"] == 0 and r["data"]["answer"] == "Done." for r in replies), replies
    stored = session_messages(live_server, session_id)
    assert [m.seq for m in stored] == list(range(17))
    assert sorted(m.content for m in stored if m.role == "user") == sorted(f"question {i}" for i in range(8))
    assert sum(m.role == "assistant" and m.content == "Done." for m in stored) == 8
