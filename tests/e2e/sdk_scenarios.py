"""Everyday ragflow-sdk scenarios, run unchanged by either SDK line against a live server.

This file is a script, not a test module: ``tests/e2e/test_sdk_lines.py`` runs it in a
subprocess with the interpreter that has the SDK line under test (ragflow-sdk 0.22.1 on the
project's Python 3.11, ragflow-sdk 0.27.3 in the Python 3.13 venv ``.venv-sdk27``). It may
import only the standard library and ``ragflow_sdk``, so that both interpreters can run it.

    python tests/e2e/sdk_scenarios.py --url http://127.0.0.1:9380 --key KEY datasets

Each scenario calls the SDK's public methods the way a RAGFlow user writes them (in the form
each line's signatures take: ``create_chat(llm=Chat.LLM(...))`` in 0.22 and
``create_chat(llm_setting=..., prompt_config=...)`` in 0.27) and checks what comes back.
Routes that neither SDK wraps but RAGFlow's reference documents (``GET /datasets/{id}``,
``GET .../chunks/{id}``, ``/documents/parse``, ...) go through the SDK's own public
``RAGFlow.get/post/...`` helpers, the way a user of that SDK reaches them.

It prints one JSON object: ``{"scenario", "sdk_version", "line", "ok", "steps", "failures"}``:
``steps`` names every step that passed and ``failures`` every step that did not, with the error
(a step that later steps build on stops the scenario, marked ``"stopped"``). The exit code is 0
when ``ok`` and 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any

from ragflow_sdk import RAGFlow

SDK_VERSION = version("ragflow-sdk")
LINE = "0.27" if tuple(int(p) for p in SDK_VERSION.split(".")[:2]) >= (0, 23) else "0.22"

FACTS = [
    "The Eiffel Tower is in Paris and was completed in 1889.",
    "Mount Fuji is the highest mountain in Japan at 3,776 metres.",
    "The Amazon river flows through Brazil, Peru and Colombia.",
]
# No everyday step takes this long against a local server; past it, the step is reported as hung
# (ragflow-sdk 0.22's parse_documents polls forever while the document list answers errors).
STEP_SECONDS = 25


class ScenarioFailure(AssertionError):
    """A check that failed: the message says what was expected and what came back."""


class Run:
    """One scenario's run: the SDK client, its line, and the steps that passed so far."""

    def __init__(self, rag: RAGFlow) -> None:
        self.rag = rag
        self.line = LINE
        self.steps: list[str] = []
        self.failures: list[dict[str, str]] = []
        self.current = ""

    @contextmanager
    def step(self, name: str, soft: bool = False) -> Iterator[None]:
        """Name the step under way; a failure inside it is reported with this name.

        A ``soft`` step is one whose outcome later steps do not build on: its failure is
        recorded and the scenario goes on, so one run reports every missing piece at once.
        """
        self.current = name
        try:
            with watchdog(STEP_SECONDS):
                yield
        except Exception as error:  # noqa: BLE001 - the SDKs raise bare Exception
            if not soft:
                raise
            self.failures.append({"step": name, "error": describe(error)})
        else:
            self.steps.append(name)
        self.current = ""

    def api(self, method: str, path: str, body: Any = None, params: Any = None) -> dict[str, Any]:
        """A route no SDK method wraps, through the SDK's own public HTTP helpers; the envelope."""
        if method == "GET":
            response = self.rag.get(path, params=params)
        elif method == "POST":
            response = self.rag.post(path, json=body)
        elif method == "PUT":
            response = self.rag.put(path, json=body)
        elif method == "PATCH":
            response = self.rag.patch(path, json=body)  # only 0.27's RAGFlow has patch()
        else:
            response = self.rag.delete(path, json=body)
        try:
            return response.json()
        except ValueError:
            raise ScenarioFailure(f"{method} {path}: HTTP {response.status_code}, not JSON: "
                                  f"{response.text[:200]!r}") from None

    def api_ok(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        reply = self.api(method, path, body, params)
        check(isinstance(reply, dict) and reply.get("code") == 0, f"{method} {path} answered {reply}")
        return reply.get("data")


# -- small helpers ---------------------------------------------------------------------------


@contextmanager
def watchdog(seconds: int) -> Iterator[None]:
    """Fail the block with ScenarioFailure when it runs past ``seconds`` (SIGALRM, main thread)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def hung(signum: int, frame: Any) -> None:
        raise ScenarioFailure(f"no result within {seconds} s (hung)")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check(condition: Any, message: str) -> None:
    if not condition:
        raise ScenarioFailure(message)


def equal(actual: Any, expected: Any, what: str) -> None:
    check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def raises(call: Callable[[], Any], what: str) -> str:
    """Run ``call``, which must raise (an SDK call whose envelope had a non-zero code)."""
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the SDKs raise bare Exception
        return str(error)
    raise ScenarioFailure(f"{what}: expected an error, the call succeeded")


def plain(value: Any) -> Any:
    """A field the SDK turned into a ``Base`` object (any dict), back as plain data."""
    if hasattr(value, "to_json"):
        return value.to_json()
    return value


def field(value: Any, name: str) -> Any:
    """``name`` of a dict-like field, whether the SDK kept it as a dict or made it a Base."""
    data = plain(value)
    return data.get(name) if isinstance(data, dict) else None


def later() -> None:
    """Let the clock move on, so objects created in a row never share a create_time (ms)."""
    time.sleep(0.005)


def ids(objects: list[Any]) -> list[str]:
    return [o.id for o in objects]


def seed_dataset(run: Run, name: str, facts: list[str] = FACTS) -> tuple[Any, Any]:
    """A dataset with one parsed document of facts, made the way a user does before a chat."""
    with run.step("setup: dataset with a parsed document"):
        dataset = run.rag.create_dataset(name=name)
        document = dataset.upload_documents([{"display_name": "facts.txt", "blob": "\n\n".join(facts).encode()}])[0]
        finished = dataset.parse_documents([document.id])
        equal([state for _, state, _, _ in finished], ["DONE"], "parse of the facts")
    return dataset, document


def create_chat(run: Run, name: str, dataset_ids: list[str], *, temperature: float = 0.1, top_n: int = 6,
                opener: str | None = None, system: str | None = None) -> Any:
    """``create_chat`` in the call form of the running SDK line."""
    if run.line == "0.22":
        from ragflow_sdk import Chat

        llm = Chat.LLM(run.rag, {"temperature": temperature, "max_tokens": 256})
        prompt_fields: dict[str, Any] = {"top_n": top_n}
        if opener is not None:
            prompt_fields["opener"] = opener
        if system is not None:
            prompt_fields["prompt"] = system
        prompt = Chat.Prompt(run.rag, prompt_fields)
        return run.rag.create_chat(name, dataset_ids=dataset_ids, llm=llm, prompt=prompt)
    prompt_config: dict[str, Any] = {}
    if opener is not None:
        prompt_config["prologue"] = opener
    if system is not None:
        prompt_config["system"] = system
        prompt_config["parameters"] = [{"key": "knowledge", "optional": False}]
    return run.rag.create_chat(name, dataset_ids=dataset_ids, llm_setting={"temperature": temperature,
                                                                         "max_tokens": 256},
                               prompt_config=prompt_config or None, top_n=top_n)


# -- scenarios -------------------------------------------------------------------------------


def scenario_datasets(run: Run) -> None:
    rag = run.rag
    with run.step("create_dataset"):
        alpha = rag.create_dataset(name="e2e-alpha", description="first")
        later()
        beta = rag.create_dataset(name="e2e-beta")
        later()
        gamma = rag.create_dataset(name="e2e-gamma")
        check(len(alpha.id) == 32, f"dataset id {alpha.id!r}")
        equal((alpha.name, alpha.description, alpha.chunk_method), ("e2e-alpha", "first", "naive"), "new dataset")
        check(alpha.embedding_model, "a new dataset names its embedding model")
        equal(alpha.document_count, 0, "document_count of a new dataset")
    with run.step("list_datasets"):
        equal(ids(rag.list_datasets()), [gamma.id, beta.id, alpha.id], "list, newest first")
        equal(ids(rag.list_datasets(desc=False, page_size=2)), [alpha.id, beta.id], "list oldest first, page 1")
        equal(ids(rag.list_datasets(page=2, page_size=2)), [alpha.id], "list page 2 of 2")
    with run.step("list_datasets(id=)"):
        equal(ids(rag.list_datasets(id=beta.id)), [beta.id], "list by id")
        equal(ids(rag.list_datasets(name="e2e-gamma")), [gamma.id], "list by name")
        raises(lambda: rag.list_datasets(id="0" * 32), "list by an unknown id")
    if run.line == "0.27":
        with run.step("list_datasets(ids=)", soft=True):
            equal(set(ids(rag.list_datasets(ids=[alpha.id, gamma.id]))), {alpha.id, gamma.id}, "list by ids")
        with run.step("GET /datasets/{id}", soft=True):
            data = run.api_ok("GET", f"/datasets/{alpha.id}")
            equal((data["id"], data["name"]), (alpha.id, "e2e-alpha"), "GET /datasets/{id}")
    with run.step("get_dataset(name)", soft=True):
        equal(rag.get_dataset(name="e2e-beta").id, beta.id, "get_dataset by name")
    with run.step("dataset.update", soft=True):
        alpha.update({"name": "e2e-alpha-2", "description": "renamed"})
        fresh = rag.list_datasets(id=alpha.id)[0]
        equal((fresh.name, fresh.description), ("e2e-alpha-2", "renamed"), "dataset after update")
        raises(lambda: alpha.update({"name": "e2e-beta"}), "renaming onto another dataset's name")
    with run.step("delete_datasets(ids)"):
        rag.delete_datasets(ids=[beta.id])
        equal(ids(rag.list_datasets()), [gamma.id, alpha.id], "datasets after deleting one by id")
        raises(lambda: rag.delete_datasets(ids=["0" * 32]), "deleting an unknown dataset")
    if run.line == "0.27":
        with run.step("delete_datasets() deletes nothing"):
            rag.delete_datasets()
            equal(ids(rag.list_datasets()), [gamma.id, alpha.id], "datasets after delete_datasets() with no ids")
        with run.step("delete_datasets(delete_all=True)"):
            rag.delete_datasets(delete_all=True)
            equal(rag.list_datasets(), [], "datasets after delete_all")
    else:
        with run.step("delete_datasets() deletes all (v0.22)"):
            rag.delete_datasets()
            equal(rag.list_datasets(), [], "datasets after delete_datasets() with no ids")


DOC_BLOBS = {
    "alpha.txt": b"Alpha notes: the okapi is a shy forest giraffe of the Congo.\n",
    "beta.md": b"# Beta\n\nThe narwhal carries a long spiral tusk in arctic water.\n",
    "gamma.txt": b"Gamma notes: the quokka lives on Rottnest Island near Perth.\n",
}


def scenario_documents(run: Run) -> None:
    rag = run.rag
    with run.step("upload_documents"):
        dataset = rag.create_dataset(name="e2e-documents")
        docs = dataset.upload_documents([{"display_name": n, "blob": b} for n, b in DOC_BLOBS.items()])
        equal(sorted(d.name for d in docs), sorted(DOC_BLOBS), "uploaded names")
        by_name = {d.name: d for d in docs}
        for name, doc in by_name.items():
            equal((doc.dataset_id, doc.run, doc.size), (dataset.id, "UNSTART", len(DOC_BLOBS[name])), name)
        equal(rag.list_datasets(id=dataset.id)[0].document_count, 3, "document_count after upload")
    alpha, beta, gamma = by_name["alpha.txt"], by_name["beta.md"], by_name["gamma.txt"]
    with run.step("list_documents"):
        equal(len(dataset.list_documents()), 3, "documents listed")
        equal(ids(dataset.list_documents(id=beta.id)), [beta.id], "list by id")
        equal(ids(dataset.list_documents(name="gamma.txt")), [gamma.id], "list by name")
        equal(ids(dataset.list_documents(keywords="beta")), [beta.id], "list by keywords")
        first, second = dataset.list_documents(page=1, page_size=2), dataset.list_documents(page=2, page_size=2)
        equal((len(first), len(second)), (2, 1), "pages of 2")
        check(set(ids(first)).isdisjoint(ids(second)), "pages overlap")
    if run.line == "0.27":
        with run.step("list_documents(ids=)", soft=True):
            equal(set(ids(dataset.list_documents(ids=[alpha.id, gamma.id]))), {alpha.id, gamma.id}, "list by ids")
    with run.step("document.update(name, meta_fields)", soft=True):
        alpha.update({"name": "alpha-renamed.txt", "meta_fields": {"author": "ada", "year": 2024}})
        fresh = dataset.list_documents(id=alpha.id)[0]
        equal(fresh.name, "alpha-renamed.txt", "name after rename")
        equal(plain(fresh.meta_fields), {"author": "ada", "year": 2024}, "meta_fields after update")
        raises(lambda: alpha.update({"name": "alpha-renamed.pdf"}), "renaming to another extension")
    with run.step("document.download", soft=True):
        equal(alpha.download(), DOC_BLOBS["alpha.txt"], "downloaded bytes")
    with run.step("delete_documents(ids)"):
        dataset.delete_documents(ids=[beta.id])
        equal(set(ids(dataset.list_documents())), {alpha.id, gamma.id}, "documents after deleting one")
    if run.line == "0.27":
        with run.step("delete_documents() deletes nothing"):
            dataset.delete_documents()
            equal(len(dataset.list_documents()), 2, "documents after delete_documents() with no ids")
        with run.step("delete_documents(delete_all=True)"):
            dataset.delete_documents(delete_all=True)
            equal(dataset.list_documents(), [], "documents after delete_all")
    else:
        with run.step("delete_documents() deletes all (v0.22)"):
            dataset.delete_documents()
            equal(dataset.list_documents(), [], "documents after delete_documents() with no ids")
    with run.step("document_count after deletes", soft=True):
        equal(rag.list_datasets(id=dataset.id)[0].document_count, 0, "document_count")


PARSE_BLOBS = {
    "zanzibar.txt": b"Plain notes about zanzibarite minerals found on the island coast. " * 3,
    "meadow.md": b"# Guide\n\nThe quokkafield marsupial lives in a sunny meadow.\n",
}


def scenario_parse(run: Run) -> None:
    rag = run.rag
    with run.step("setup: upload_documents"):
        dataset = rag.create_dataset(name="e2e-parse")
        docs = dataset.upload_documents([{"display_name": n, "blob": b} for n, b in PARSE_BLOBS.items()])
        by_name = {d.name: d for d in docs}
    with run.step("parse_documents waits to DONE"):
        finished = dataset.parse_documents(ids(docs))
        equal(sorted((doc_id, state) for doc_id, state, _, _ in finished), sorted((d.id, "DONE") for d in docs),
              "parse results")
        check(all(chunks >= 1 and tokens > 0 for _, _, chunks, tokens in finished), f"counts {finished}")
    with run.step("documents after parse", soft=True):
        for doc in dataset.list_documents():
            equal((doc.run, float(doc.progress)), ("DONE", 1.0), f"{doc.name} run/progress")
        total = sum(chunks for _, _, chunks, _ in finished)
        equal(rag.list_datasets(id=dataset.id)[0].chunk_count, total, "dataset chunk_count")
    with run.step("chunks of a parsed document", soft=True):
        chunks = by_name["zanzibar.txt"].list_chunks()
        check(chunks and "zanzibarite" in chunks[0].content, f"chunks {[c.content for c in chunks]}")
    with run.step("retrieve the parsed text", soft=True):
        hits = rag.retrieve(dataset_ids=[dataset.id], question="quokkafield marsupial meadow")
        check(hits and hits[0].document_id == by_name["meadow.md"].id, "top hit is meadow.md")
    if run.line == "0.27":
        with run.step("POST /datasets/{id}/documents/parse", soft=True):
            run.api_ok("POST", f"/datasets/{dataset.id}/documents/parse",
                       {"document_ids": [by_name["meadow.md"].id]})
            again = dataset._get_documents_status([by_name["meadow.md"].id])  # the SDK's own poll
            equal([state for _, state, _, _ in again], ["DONE"], "re-parse through /documents/parse")
            chunks = by_name["meadow.md"].list_chunks()
            check(len(chunks) == again[0][2] >= 1, "a re-parse replaces the chunks, not adds to them")


def big_text(paragraphs: int = 400) -> bytes:
    lines = [f"Paragraph {i}: the archivist catalogued ledger number {i} about river trade in year {1700 + i}."
             for i in range(paragraphs)]
    return "\n\n".join(lines).encode()


def scenario_cancel(run: Run) -> None:
    rag = run.rag
    with run.step("setup: upload_documents"):
        dataset = rag.create_dataset(name="e2e-cancel")
        doc = dataset.upload_documents([{"display_name": "ledger.txt", "blob": big_text()}])[0]
    with run.step("async_parse then async_cancel"):
        dataset.async_parse_documents([doc.id])
        dataset.async_cancel_parse_documents([doc.id])
    with run.step("document stays CANCEL", soft=True):
        time.sleep(1.0)  # a worker that had started notices the cancel; it must not mark the doc DONE
        equal(dataset.list_documents(id=doc.id)[0].run, "CANCEL", "run after cancel")
    with run.step("cancel of a document not being parsed is refused", soft=True):
        raises(lambda: dataset.async_cancel_parse_documents([doc.id]), "cancelling a cancelled document")
    if run.line == "0.27":
        with run.step("POST /documents/parse then /documents/stop", soft=True):
            run.api_ok("POST", f"/datasets/{dataset.id}/documents/parse", {"document_ids": [doc.id]})
            run.api_ok("POST", f"/datasets/{dataset.id}/documents/stop", {"document_ids": [doc.id]})
            time.sleep(0.5)
            equal(dataset.list_documents(id=doc.id)[0].run, "CANCEL", "run after /documents/stop")


def scenario_chunks(run: Run) -> None:
    rag = run.rag
    with run.step("setup: upload_documents"):
        dataset = rag.create_dataset(name="e2e-chunks")
        doc = dataset.upload_documents([{"display_name": "holder.txt", "blob": b"chunk holder"}])[0]
    with run.step("add_chunk"):
        extra = {"tag_kwd": ["animal"]} if run.line == "0.27" else {}
        okapi = doc.add_chunk(content="The okapi hides in the Congo rainforest.", important_keywords=["okapi"],
                              questions=["Where does the okapi live?"], **extra)
        equal((okapi.content, okapi.document_id, okapi.dataset_id),
              ("The okapi hides in the Congo rainforest.", doc.id, dataset.id), "new chunk")
        equal(okapi.important_keywords, ["okapi"], "important_keywords")
        equal(okapi.questions, ["Where does the okapi live?"], "questions")
        if run.line == "0.27":
            equal(okapi.tag_kwd, ["animal"], "tag_kwd")
        narwhal = doc.add_chunk(content="The narwhal swims under arctic sea ice.")
        quokka = doc.add_chunk(content="The quokka smiles on Rottnest Island.")
    with run.step("list_chunks", soft=True):
        equal(set(ids(doc.list_chunks())), {okapi.id, narwhal.id, quokka.id}, "chunks listed")
        equal(ids(doc.list_chunks(keywords="narwhal")), [narwhal.id], "list by keywords")
        first, second = doc.list_chunks(page=1, page_size=2), doc.list_chunks(page=2, page_size=2)
        equal((len(first), len(second)), (2, 1), "pages of 2")
        equal(dataset.list_documents(id=doc.id)[0].chunk_count, 3, "document chunk_count")
    with run.step("get chunk (list_chunks(id=))", soft=True):
        got = doc.list_chunks(id=okapi.id)
        equal([(c.id, c.content) for c in got], [(okapi.id, okapi.content)], "chunk by id")
    if run.line == "0.27":
        with run.step("GET .../chunks/{chunk_id}", soft=True):
            data = run.api_ok("GET", f"/datasets/{dataset.id}/documents/{doc.id}/chunks/{okapi.id}")
            chunk = data.get("chunk", data) if isinstance(data, dict) else {}
            equal((chunk.get("id"), chunk.get("content")), (okapi.id, okapi.content), "GET chunk")
    with run.step("chunk.update", soft=True):
        narwhal.update({"content": "The narwhal hunts cod under arctic sea ice.", "important_keywords": ["tusk"]})
        fresh = doc.list_chunks(id=narwhal.id)[0]
        equal((fresh.content, fresh.important_keywords), ("The narwhal hunts cod under arctic sea ice.", ["tusk"]),
              "chunk after update")
        hits = rag.retrieve(dataset_ids=[dataset.id], question="narwhal hunts cod")
        check(hits and hits[0].id == narwhal.id, "the updated chunk is found by its new words")
    with run.step("delete_chunks(ids)"):
        doc.delete_chunks([okapi.id])
        equal(set(ids(doc.list_chunks())), {narwhal.id, quokka.id}, "chunks after deleting one")
        raises(lambda: doc.delete_chunks(["0" * 32]), "deleting an unknown chunk")
    if run.line == "0.27":
        with run.step("delete_chunks() deletes nothing"):
            doc.delete_chunks()
            equal(len(doc.list_chunks()), 2, "chunks after delete_chunks() with no ids")
        with run.step("delete_chunks(delete_all=True)"):
            doc.delete_chunks(delete_all=True)
            equal(doc.list_chunks(), [], "chunks after delete_all")
    else:
        with run.step("delete_chunks() deletes all (v0.22)"):
            doc.delete_chunks()
            equal(doc.list_chunks(), [], "chunks after delete_chunks() with no ids")
    with run.step("chunk_count after deletes", soft=True):
        equal(dataset.list_documents(id=doc.id)[0].chunk_count, 0, "document chunk_count")


def scenario_retrieve(run: Run) -> None:
    rag = run.rag
    with run.step("setup: upload and parse two documents"):
        dataset = rag.create_dataset(name="e2e-retrieve")
        docs = dataset.upload_documents([
            {"display_name": "ada.txt", "blob": b"Ada's field notes: the okapi is a shy animal of the Congo rainforest."},
            {"display_name": "bob.txt", "blob": b"Bob's field notes: the narwhal is an arctic animal with a long tusk."},
        ])
        ada, bob = sorted(docs, key=lambda d: d.name)
        dataset.parse_documents([ada.id, bob.id])
    with run.step("document.update(meta_fields)", soft=True):
        ada.update({"meta_fields": {"author": "ada", "year": 2021}})
        bob.update({"meta_fields": {"author": "bob", "year": 2024}})
    with run.step("retrieve", soft=True):
        hits = rag.retrieve(dataset_ids=[dataset.id], question="okapi Congo rainforest")
        check(hits, "nothing retrieved")
        equal(hits[0].document_id, ada.id, "top hit's document")
        check("okapi" in hits[0].content, f"top hit content {hits[0].content!r}")
        best = hits[0]
        check(0 < best.similarity <= 1 and best.vector_similarity > 0 and best.term_similarity > 0,
              f"similarities {best.similarity}, {best.vector_similarity}, {best.term_similarity}")
    with run.step("retrieve(document_ids=)", soft=True):
        hits = rag.retrieve(dataset_ids=[dataset.id], document_ids=[bob.id], question="animal field notes",
                            similarity_threshold=0.0)
        check(hits and {h.document_id for h in hits} == {bob.id}, "hits outside the named document")
    with run.step("retrieve(metadata_condition is)", soft=True):
        condition = {"logic": "and", "conditions": [{"name": "author", "comparison_operator": "is", "value": "bob"}]}
        hits = rag.retrieve(dataset_ids=[dataset.id], question="okapi animal field notes", similarity_threshold=0.0,
                            metadata_condition=condition)
        check(hits, "metadata_condition author is bob found nothing")
        equal({h.document_id for h in hits}, {bob.id}, "documents matching author is bob")
    with run.step("retrieve(metadata_condition >, or)", soft=True):
        newer = {"logic": "and", "conditions": [{"name": "year", "comparison_operator": ">", "value": 2022}]}
        hits = rag.retrieve(dataset_ids=[dataset.id], question="animal field notes", similarity_threshold=0.0,
                            metadata_condition=newer)
        equal({h.document_id for h in hits}, {bob.id}, "documents with year > 2022")
        either = {"logic": "or", "conditions": [{"name": "author", "comparison_operator": "is", "value": "ada"},
                                                {"name": "author", "comparison_operator": "is", "value": "bob"}]}
        hits = rag.retrieve(dataset_ids=[dataset.id], question="animal field notes", similarity_threshold=0.0,
                            metadata_condition=either)
        equal({h.document_id for h in hits}, {ada.id, bob.id}, "documents by ada or bob")
    with run.step("retrieve: nonsense question finds nothing at the default threshold", soft=True):
        hits = rag.retrieve(dataset_ids=[dataset.id], question="xqzv plorb wuggle")
        check(hits == [], "hits (similarity, vector_similarity, term_similarity): "
              f"{[(round(h.similarity, 3), round(h.vector_similarity, 3), round(h.term_similarity, 3)) for h in hits]}")
    if run.line == "0.27":
        with run.step("GET /datasets/{id}/metadata/summary", soft=True):
            summary = run.api_ok("GET", f"/datasets/{dataset.id}/metadata/summary")
            text = json.dumps(summary)
            check("author" in text and "bob" in text, f"summary {text[:300]}")


def scenario_chats(run: Run) -> None:
    rag = run.rag
    with run.step("list_chats as a new tenant's first call", soft=True):
        # Nothing this tenant sent yet tells which SDK line it speaks: the list must still parse.
        equal(rag.list_chats(), [], "chats of a new tenant")
    dataset, _ = seed_dataset(run, "e2e-chats-kb")
    with run.step("create_chat"):
        chat = create_chat(run, "e2e-chat", [dataset.id], temperature=0.5, top_n=4, opener="Hello from e2e!",
                           system="Answer briefly. {knowledge}")
        equal(chat.dataset_ids, [dataset.id], "dataset_ids")
        if run.line == "0.22":
            equal((chat.llm.temperature, chat.prompt.top_n, chat.prompt.opener), (0.5, 4, "Hello from e2e!"),
                  "llm.temperature, prompt.top_n, prompt.opener")
            check(chat.llm.model_name, "a chat names its model")
        else:
            equal(field(chat.llm_setting, "temperature"), 0.5, "llm_setting.temperature")
            equal(field(chat.prompt_config, "prologue"), "Hello from e2e!", "prompt_config.prologue")
            equal(field(chat.prompt_config, "system"), "Answer briefly. {knowledge}", "prompt_config.system")
            equal(chat.top_n, 4, "top_n")
            check(chat.llm_id, "a chat names its model (llm_id)")
        later()
        second = create_chat(run, "e2e-chat-2", [])
        later()
        third = create_chat(run, "e2e-chat-3", [])
    with run.step("list_chats", soft=True):
        equal(ids(rag.list_chats()), [third.id, second.id, chat.id], "chats, newest first")
        equal(ids(rag.list_chats(id=second.id)), [second.id], "list by id")
        equal(ids(rag.list_chats(name="e2e-chat-3")), [third.id], "list by name")
        equal(ids(rag.list_chats(page=2, page_size=2)), [chat.id], "page 2 of 2")
    if run.line == "0.27":
        with run.step("list_chats(keywords=)", soft=True):
            equal(ids(rag.list_chats(keywords="chat-2")), [second.id], "list by keywords")
        with run.step("get_chat", soft=True):
            got = rag.get_chat(chat.id)
            equal((got.id, got.name), (chat.id, "e2e-chat"), "get_chat")
    with run.step("chat.update", soft=True):
        if run.line == "0.22":
            chat.update({"name": "e2e-renamed", "llm": {"temperature": 0.9}, "prompt": {"opener": "Hi again"}})
            fresh = rag.list_chats(id=chat.id)[0]
            equal((fresh.name, fresh.llm.temperature, fresh.prompt.opener), ("e2e-renamed", 0.9, "Hi again"),
                  "chat after update")
        else:
            chat.update({"name": "e2e-renamed", "llm_setting": {"temperature": 0.9},
                         "prompt_config": {"system": "Answer briefly. {knowledge}", "prologue": "Hi again",
                                           "parameters": [{"key": "knowledge", "optional": False}]}})
            fresh = rag.get_chat(chat.id)
            equal((fresh.name, field(fresh.llm_setting, "temperature"), field(fresh.prompt_config, "prologue")),
                  ("e2e-renamed", 0.9, "Hi again"), "chat after update")
        raises(lambda: chat.update({"name": "e2e-chat-2"}), "renaming onto another chat's name")
    with run.step("delete_chats(ids)"):
        rag.delete_chats(ids=[second.id])
        equal(ids(rag.list_chats()), [third.id, chat.id], "chats after deleting one")
        raises(lambda: rag.delete_chats(ids=["0" * 32]), "deleting an unknown chat")
    if run.line == "0.27":
        with run.step("delete_chats() deletes nothing"):
            rag.delete_chats()
            equal(len(rag.list_chats()), 2, "chats after delete_chats() with no ids")
        with run.step("delete_chats(delete_all=True)"):
            rag.delete_chats(delete_all=True)
            equal(rag.list_chats(), [], "chats after delete_all")
    else:
        with run.step("delete_chats() deletes all (v0.22)"):
            rag.delete_chats()
            equal(rag.list_chats(), [], "chats after delete_chats() with no ids")


def scenario_sessions(run: Run) -> None:
    dataset, _ = seed_dataset(run, "e2e-sessions-kb")
    with run.step("setup: create_chat"):
        chat = create_chat(run, "e2e-sessions", [dataset.id], opener="Welcome to e2e.")
    with run.step("create_session"):
        first = chat.create_session("first")
        equal((first.name, first.chat_id), ("first", chat.id), "new session")
        equal([(m["role"], m["content"]) for m in first.messages], [("assistant", "Welcome to e2e.")],
              "a new session's messages (the opener)")
        later()
        second = chat.create_session("second")
        later()
        third = chat.create_session("third")
    with run.step("list_sessions", soft=True):
        equal(ids(chat.list_sessions()), [third.id, second.id, first.id], "sessions, newest first")
        equal(ids(chat.list_sessions(id=first.id)), [first.id], "list by id")
        equal(ids(chat.list_sessions(name="second")), [second.id], "list by name")
        equal(ids(chat.list_sessions(page=2, page_size=1)), [second.id], "page 2 of size 1")
    with run.step("session.update", soft=True):
        first.update({"name": "renamed"})
        equal(chat.list_sessions(id=first.id)[0].name, "renamed", "session after update")
    if run.line == "0.27":
        with run.step("GET /chats/{c}/sessions/{s}", soft=True):
            data = run.api_ok("GET", f"/chats/{chat.id}/sessions/{first.id}")
            equal((data["id"], data["name"]), (first.id, "renamed"), "GET session")
    with run.step("delete_sessions(ids)"):
        chat.delete_sessions(ids=[second.id])
        equal(ids(chat.list_sessions()), [third.id, first.id], "sessions after deleting one")
    if run.line == "0.27":
        with run.step("delete_sessions() deletes nothing"):
            chat.delete_sessions()
            equal(len(chat.list_sessions()), 2, "sessions after delete_sessions() with no ids")
        with run.step("delete_sessions(delete_all=True)"):
            chat.delete_sessions(delete_all=True)
            equal(chat.list_sessions(), [], "sessions after delete_all")
    else:
        with run.step("delete_sessions() deletes all (v0.22)"):
            chat.delete_sessions()
            equal(chat.list_sessions(), [], "sessions after delete_sessions() with no ids")


def reference_chunks(message: Any) -> list[dict[str, Any]]:
    chunks = message.reference or []
    return [plain(c) for c in (chunks.values() if isinstance(chunks, dict) else chunks)]


def scenario_ask(run: Run) -> None:
    """Needs the server's LLM to answer "The Eiffel Tower was completed in 1889 [ID:0]."."""
    dataset, document = seed_dataset(run, "e2e-ask-kb")
    with run.step("setup: create_chat, create_session"):
        chat = create_chat(run, "e2e-ask", [dataset.id])
        session = chat.create_session("ask")
    with run.step("session.ask(stream=True)", soft=True):
        streamed = list(session.ask("When was the Eiffel Tower completed?", stream=True))
        check(streamed, "no answer events")
        final = streamed[-1]
        check("1889" in final.content and "[ID:0]" in final.content, f"final answer {final.content!r}")
        refs = reference_chunks(final)
        check(refs, "the final streamed answer carries no reference chunks")
        check(FACTS[0] in refs[0].get("content", ""), f"cited chunk {refs[0]}")
        equal((refs[0].get("dataset_id"), bool(refs[0].get("document_id")), bool(refs[0].get("id"))),
              (dataset.id, True, True), "cited chunk's dataset_id, document_id, id")
        equal(refs[0].get("document_name") or refs[0].get("document_keyword"), "facts.txt", "cited document")
    with run.step("session.ask(stream=False)", soft=True):
        whole = list(session.ask("And the Eiffel Tower again?", stream=False))
        equal(len(whole), 1, "messages of a non-streamed answer")
        check("1889" in whole[0].content, f"answer {whole[0].content!r}")
        refs = reference_chunks(whole[0])
        check(refs and FACTS[0] in refs[0].get("content", ""), f"reference {refs}")
    with run.step("history is stored", soft=True):
        messages = chat.list_sessions(id=session.id)[0].messages
        equal([m["role"] for m in messages], ["assistant", "user", "assistant", "user", "assistant"], "roles")
        equal(messages[1]["content"], "When was the Eiffel Tower completed?", "stored question")
    with run.step("session.ask(metadata_condition=)", soft=True):
        document.update({"meta_fields": {"author": "ada"}})
        question = "When was the Eiffel Tower completed?"
        nobody = {"logic": "and", "conditions": [{"name": "author", "comparison_operator": "is", "value": "nobody"}]}
        equal(reference_chunks(list(session.ask(question, stream=False, metadata_condition=nobody))[0]), [],
              "reference when no document's metadata matches")
        ada = {"logic": "and", "conditions": [{"name": "author", "comparison_operator": "is", "value": "ada"}]}
        refs = reference_chunks(list(session.ask(question, stream=False, metadata_condition=ada))[0])
        check(refs and FACTS[0] in refs[0].get("content", ""), f"reference when the document matches: {refs}")
    with run.step("POST /sessions/related_questions", soft=True):
        related = run.api_ok("POST", "/sessions/related_questions", {"question": "Eiffel Tower"})
        check(isinstance(related, list) and all(isinstance(q, str) for q in related), f"related {related!r}")


def scenario_auto_metadata(run: Run) -> None:
    """ragflow-sdk 0.27 only: ``auto_metadata_config`` on create, get/update_auto_metadata."""
    check(run.line == "0.27", "auto_metadata needs ragflow-sdk 0.27")
    fields = [{"name": "author", "type": "string", "description": "Who wrote the document"}]
    with run.step("create_dataset(auto_metadata_config=)"):
        dataset = run.rag.create_dataset(name="e2e-auto-meta", auto_metadata_config={"enabled": True,
                                                                                     "fields": fields})
    with run.step("get_auto_metadata", soft=True):
        config = dataset.get_auto_metadata()
        equal(config.get("enabled"), True, "enabled")
        equal([(f.get("name"), f.get("type")) for f in config.get("fields", [])], [("author", "string")], "fields")
    with run.step("update_auto_metadata", soft=True):
        dataset.update_auto_metadata(enabled=False, fields=[{"name": "year", "type": "time",
                                                             "description": "Publication year", "examples": None,
                                                             "restrict_values": False}])
        config = dataset.get_auto_metadata()
        equal(config.get("enabled"), False, "enabled after update")
        equal([(f.get("name"), f.get("type")) for f in config.get("fields", [])], [("year", "time")],
              "fields after update")


def scenario_unsupported(run: Run) -> None:
    """What Ragline does not serve answers a clear error naming it, never a bare 404 or a code 0."""
    with run.step("list_agents answers a clear error", soft=True):
        message = raises(lambda: run.rag.list_agents(), "list_agents")
        check("agent" in message.lower() and "support" in message.lower(), f"list_agents error {message!r}")
    if run.line == "0.27":
        with run.step("list_memory answers a clear error", soft=True):
            message = raises(lambda: run.rag.list_memory(), "list_memory")
            check("memor" in message.lower() and "support" in message.lower(), f"list_memory error {message!r}")
    with run.step("setup: create_dataset"):
        dataset = run.rag.create_dataset(name="e2e-graph")
    with run.step("GET /datasets/{id}/knowledge_graph (empty)", soft=True):
        graph = run.api_ok("GET", f"/datasets/{dataset.id}/knowledge_graph")
        check(isinstance(graph, dict) and isinstance(graph.get("graph"), dict)
              and isinstance(graph.get("mind_map"), dict), f"knowledge graph {graph!r}")
    with run.step("DELETE /datasets/{id}/knowledge_graph", soft=True):
        run.api_ok("DELETE", f"/datasets/{dataset.id}/knowledge_graph")
    if run.line == "0.27":
        with run.step("GET and DELETE /datasets/{id}/graph", soft=True):
            graph = run.api_ok("GET", f"/datasets/{dataset.id}/graph")
            check(isinstance(graph, dict), f"graph {graph!r}")
            run.api_ok("DELETE", f"/datasets/{dataset.id}/graph")


SCENARIOS: dict[str, Callable[[Run], None]] = {
    "datasets": scenario_datasets,
    "documents": scenario_documents,
    "parse": scenario_parse,
    "cancel": scenario_cancel,
    "chunks": scenario_chunks,
    "retrieve": scenario_retrieve,
    "chats": scenario_chats,
    "sessions": scenario_sessions,
    "ask": scenario_ask,
    "auto_metadata": scenario_auto_metadata,
    "unsupported": scenario_unsupported,
}
ONLY_027 = {"auto_metadata"}


def describe(error: BaseException) -> str:
    kind = "" if isinstance(error, ScenarioFailure) else f"{type(error).__name__}: "
    return f"{kind}{error}"


def run_scenario(url: str, key: str, name: str) -> dict[str, Any]:
    run = Run(RAGFlow(api_key=key, base_url=url))
    result: dict[str, Any] = {"scenario": name, "sdk_version": SDK_VERSION, "line": LINE, "ok": False,
                              "steps": run.steps, "failures": run.failures}
    try:
        SCENARIOS[name](run)
    except Exception as error:  # noqa: BLE001 - every failure is reported, not raised
        run.failures.append({"step": run.current or "(between steps)", "error": describe(error),
                             "stopped": "yes"})
        if not isinstance(error, ScenarioFailure):
            result["traceback"] = traceback.format_exc(limit=6)
    result["ok"] = not run.failures
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:9380")
    parser.add_argument("--key", required=True, help="an API key (one tenant per scenario keeps them apart)")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    args = parser.parse_args(argv)
    result = run_scenario(args.url, args.key, args.scenario)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
