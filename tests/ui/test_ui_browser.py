"""The web UI in a real browser (headless Chromium) against a live Ragline whose LLM is the stub.

One person's path through it: sign in, create a dataset, drop two files and watch both reach
DONE, search a chunk, test retrieval, ask a question and watch the answer stream in with a
citation that opens its chunk, stop an answer, see the usage chart, mint and revoke a key; and
a wrong key. No request may leave 127.0.0.1.
"""

from __future__ import annotations

import base64
import re

import httpx
import pytest

from tests.ui.conftest import browser_missing, snap

MISSING = browser_missing()
if MISSING:
    pytest.skip(f"UI browser tests skipped: {MISSING}", allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402

REPLY = "Refunds are paid within 14 days of the return [ID:0]."
FILES = {
    "refunds.txt": "Refund policy.\nRefunds are paid within 14 days of the return, to the card used for the order.\n",
    "shipping.md": "# Shipping\n\nParcels leave the Lyon warehouse every weekday before noon.\n",
}


def drop_files(page, selector: str, files: dict[str, str]) -> None:
    """Drop files on an element the way a person's drag-and-drop does (a DataTransfer)."""
    payload = [{"name": name, "b64": base64.b64encode(text.encode()).decode()} for name, text in files.items()]
    page.evaluate(
        """([selector, files]) => {
            const transfer = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], f.name, { type: "text/plain" }));
            }
            const target = document.querySelector(selector);
            for (const type of ["dragenter", "dragover", "drop"]) {
                target.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
            }
        }""",
        [selector, payload],
    )


def sign_in(page, url: str, key: str) -> None:
    page.goto(url + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Datasets", level=1)).to_be_visible()


def test_a_person_runs_a_knowledge_base_from_the_browser(page, watch, live_server, stub_llm) -> None:
    stub_llm.configure(reply=REPLY, tokens_per_second=25)
    key = live_server.key("acme")
    sign_in(page, live_server.url, key)
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()

    # A dataset, then two files dropped at once, each with its own bar, both parsed to DONE.
    page.get_by_label("Name", exact=True).fill("Handbook")
    page.get_by_label("Chunk method").select_option("naive")
    page.get_by_role("button", name="Create dataset").click()
    expect(page.get_by_role("heading", name="Handbook", level=1)).to_be_visible()
    drop_files(page, "#dropzone", FILES)
    uploads = page.locator("ul.uploads li")
    expect(uploads).to_have_count(2)
    for name in FILES:
        expect(page.locator(f'ul.uploads li[data-file="{name}"]')).to_have_attribute("data-state", "DONE", timeout=30_000)
    expect(page.locator("#documents .badge.DONE")).to_have_count(2)
    snap(page, "documents")

    # The documents are in the API too, each with chunks.
    dataset_id = page.url.rsplit("/", 1)[1]
    listed = httpx.get(f"{live_server.url}/api/v1/datasets/{dataset_id}/documents",
                       headers={"Authorization": f"Bearer {key}"}).json()["data"]
    assert {d["name"] for d in listed["docs"]} == set(FILES) and all(d["chunk_count"] > 0 for d in listed["docs"])

    # Chunks: search finds the refund sentence.
    page.get_by_role("link", name="refunds.txt").click()
    page.get_by_label("Search chunks").fill("refunds")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#chunks .chunk").first).to_contain_text("14 days")
    expect(page.get_by_text(re.compile(r"chunk\(s\) match “refunds”"))).to_be_visible()

    # Retrieval test: ranked chunks with term and vector scores.
    page.get_by_role("link", name="Retrieval test").click()
    page.get_by_label("Handbook").check()
    page.get_by_label("Question").fill("When are refunds paid?")
    page.get_by_label("Similarity threshold").fill("0")
    page.get_by_role("button", name="Test retrieval").click()
    first = page.locator("#results .chunk").first
    expect(first).to_contain_text("14 days")
    expect(first).to_contain_text(re.compile(r"term \d\.\d{4}"))
    expect(first).to_contain_text(re.compile(r"vector \d\.\d{4}"))
    snap(page, "retrieval")

    # Chat: an assistant on the dataset; the answer streams in, then its citation opens the chunk.
    page.get_by_role("link", name="Chat").click()
    page.get_by_role("button", name="New assistant").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill("Support")
    dialog.get_by_label("Handbook").check()
    dialog.get_by_label("Tone").select_option("friendly")
    dialog.get_by_role("button", name="Create assistant").click()
    expect(page.get_by_role("heading", name="Support", level=1)).to_be_visible()
    page.evaluate("""() => {
        window.seenAnswers = new Set();
        new MutationObserver(() => {
            const box = document.querySelector('.msg.assistant[aria-busy] .text');
            if (box && box.textContent) window.seenAnswers.add(box.textContent);
        }).observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true });
    }""")
    page.get_by_label("Your question").fill("When are refunds paid?")
    page.get_by_label("Your question").press("Enter")
    answer = page.locator(".msg.assistant[data-done]")
    expect(answer).to_contain_text("Refunds are paid within 14 days")
    assert page.evaluate("window.seenAnswers.size") >= 3, "the answer did not arrive in pieces"
    expect(page.get_by_role("listitem").filter(has_text="When are refunds paid?")).to_have_count(1)  # the new session
    snap(page, "chat")
    answer.locator("button.cite").first.click()
    expect(page.get_by_role("dialog")).to_contain_text("14 days")
    page.get_by_role("link", name="Open the chunk in its document").click()
    expect(page.get_by_role("heading", name="refunds.txt", level=1)).to_be_visible()
    expect(page.locator(".chunk.cited")).to_contain_text("14 days")
    expect(page.locator(".chunk.cited")).not_to_contain_text("null")
    snap(page, "chunks")

    # Back in the session, its history is kept; then a stalled answer is cancelled by Stop.
    page.go_back()
    expect(page.locator(".msg.user")).to_contain_text("When are refunds paid?")
    expect(page.locator(".msg.assistant button.cite")).to_have_count(1)
    stub_llm.configure(stall_after=2)
    page.get_by_label("Your question").fill("How fast are refunds paid?")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("button", name="Stop")).to_be_enabled()
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".msg.assistant[data-stopped]")).to_contain_text("(stopped)")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    stub_llm.reset()

    # Usage: the chat's tokens, as a chart and a table.
    page.get_by_role("link", name="Usage").click()
    page.get_by_label("Group by").select_option("model")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#usage-table tbody")).to_contain_text("stub-chat")
    assert page.locator(".chart svg rect.bar").count() >= 1
    assert "null" not in page.locator("main").inner_text()
    snap(page, "usage")

    # Keys: mint one (shown once), revoke it, and it no longer opens the API.
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Label").fill("nightly import")
    page.get_by_role("button", name="Create key").click()
    minted = page.get_by_label("New API key").input_value()
    snap(page, "keys")
    assert httpx.get(f"{live_server.url}/api/v1/datasets", headers={"Authorization": f"Bearer {minted}"}).json()["code"] == 0
    row = page.locator("#keys tbody tr").filter(has_text="nightly import")
    row.get_by_role("button", name=re.compile("Revoke")).click()
    page.locator("#confirm").get_by_role("button", name="Revoke").click()
    expect(row).to_have_count(0)
    assert httpx.get(f"{live_server.url}/api/v1/datasets", headers={"Authorization": f"Bearer {minted}"}).json()["code"] == 109

    page.get_by_role("link", name="Datasets").click()
    expect(page.locator("tbody tr").filter(has_text="Handbook")).to_contain_text("2")
    page.locator("summary", has_text="New dataset").click()
    expect(page.get_by_label("Embedding model")).to_be_visible()
    snap(page, "datasets")

    # Readable at phone width: nothing wider than the screen but the tables' own scrolling boxes.
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("link", name="Handbook").click()
    expect(page.get_by_role("heading", name="Handbook", level=1)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    snap(page, "phone")
    assert watch.outside == [], f"requests left 127.0.0.1: {watch.outside}"
    assert watch.errors == [], f"the page reported errors: {watch.errors}"


def test_a_wrong_key_gets_a_clear_refusal(page, watch, live_server) -> None:
    page.goto(live_server.url + "/")
    snap(page, "sign-in")
    page.get_by_label("API key").fill("ragline-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Ragline refused this key")
    expect(page.get_by_role("alert")).to_contain_text("API key is invalid")
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    assert watch.outside == []


def test_datasets_are_edited_and_deleted_with_confirmation(page, watch, live_server) -> None:
    key = live_server.key("acme")
    auth = {"Authorization": f"Bearer {key}"}
    created = httpx.post(f"{live_server.url}/api/v1/datasets", json={"name": "Drafts"}, headers=auth).json()["data"]
    sign_in(page, live_server.url, key)
    row = page.locator("tbody tr").filter(has_text="Drafts")
    row.get_by_role("button", name="Edit Drafts").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill("Final drafts")
    dialog.get_by_label("Chunk size (tokens)").fill("256")
    dialog.get_by_role("button", name="Save changes").click()
    expect(page.locator("tbody tr").filter(has_text="Final drafts")).to_have_count(1)
    [stored] = httpx.get(f"{live_server.url}/api/v1/datasets", params={"id": created["id"]}, headers=auth).json()["data"]
    assert stored["name"] == "Final drafts" and stored["parser_config"]["chunk_token_num"] == 256

    # Deleting asks first; "Cancel" keeps the dataset, "Delete" removes it.
    page.get_by_role("button", name="Delete Final drafts").click()
    page.locator("#confirm").get_by_role("button", name="Cancel").click()
    expect(page.locator("tbody tr").filter(has_text="Final drafts")).to_have_count(1)
    page.get_by_role("button", name="Delete Final drafts").click()
    page.locator("#confirm").get_by_role("button", name="Delete").click()
    expect(page.get_by_text("No dataset yet")).to_be_visible()
    assert httpx.get(f"{live_server.url}/api/v1/datasets", headers=auth).json()["data"] == []

    # An error is shown where it happened: a duplicate name is refused in the form, in Ragline's words.
    httpx.post(f"{live_server.url}/api/v1/datasets", json={"name": "Taken"}, headers=auth)
    page.reload()
    page.locator("summary", has_text="New dataset").click()
    page.get_by_label("Name", exact=True).fill("taken")
    page.get_by_role("button", name="Create dataset").click()
    expect(page.locator("details .error")).to_contain_text("already exists")
    assert watch.outside == [] and watch.errors == []
