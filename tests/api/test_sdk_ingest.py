"""The ``ragflow-sdk`` 0.22.1 package, unchanged, against a live server: the whole ingestion path.

Each test starts one real hypercorn server (its ingestion workers run inside it) and drives it
only through the SDK, the way a RAGFlow user would: datasets, uploads in every supported format,
parsing with the SDK's own polling, documents, chunks and retrieval.
"""

from __future__ import annotations

import io
import time

import docx
import pytest
from fpdf import FPDF
from ragflow_sdk import DataSet, RAGFlow

# One word per format that appears nowhere else, so retrieval can tell the documents apart.
MARKERS = {
    "txt": "zanzibarite", "md": "quokkafield", "html": "lumbricine", "csv": "vexillology",
    "json": "xylophagous", "docx": "brontide", "pdf": "pyrrhuloxia",
}


def docx_bytes(text: str) -> bytes:
    document = docx.Document()
    document.add_heading("Field notes", level=1)
    document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def pdf_bytes(text: str) -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def sample_files() -> list[dict]:
    """One small document per supported format, each mentioning its marker word."""
    m = MARKERS
    blobs = {
        "notes.txt": f"Plain notes about {m['txt']} minerals found on the island coast.".encode(),
        "guide.md": f"# Guide\n\nThe {m['md']} marsupial lives in a sunny meadow.\n".encode(),
        "page.html": f"<html><body><h1>Worms</h1><p>The {m['html']} worm digs.</p></body></html>".encode(),
        "table.csv": f"topic,detail\nflags,{m['csv']} studies the design of flags\n".encode(),
        "data.json": f'{{"topic": "beetles", "detail": "{m["json"]} beetles eat wood"}}'.encode(),
        "report.docx": docx_bytes(f"A {m['docx']} is a roll of distant thunder over the hills."),
        "paper.pdf": pdf_bytes(f"The {m['pdf']} is a desert cardinal of the southwest."),
    }
    return [{"display_name": name, "blob": blob} for name, blob in blobs.items()]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def retrieve_raw(rag: RAGFlow, **body) -> dict:
    """POST /retrieval through the SDK's own session: its ``retrieve()`` drops doc_aggs and highlight."""
    reply = rag.post("/retrieval", json=body).json()
    assert reply["code"] == 0, reply
    return reply["data"]


def top_doc(rag: RAGFlow, dataset_id: str, question: str) -> str:
    chunks = rag.retrieve(dataset_ids=[dataset_id], question=question)
    assert chunks, f"nothing retrieved for {question!r}"
    return chunks[0].document_id


def test_sdk_dataset_documents_chunks_and_retrieval(live_server) -> None:
    rag = RAGFlow(api_key=live_server.key("acme"), base_url=live_server.url)
    dataset = rag.create_dataset(name="sdk-flow")
    assert dataset.chunk_method == "naive" and dataset.embedding_model.startswith("all-MiniLM-L6-v2")
    assert [d.id for d in rag.list_datasets(name="sdk-flow")] == [dataset.id]
    dataset.update({"description": "ingestion through the sdk"})
    assert rag.list_datasets(id=dataset.id)[0].description == "ingestion through the sdk"

    docs = dataset.upload_documents(sample_files())
    assert sorted(d.name for d in docs) == sorted(f["display_name"] for f in sample_files())
    assert all(d.run == "UNSTART" for d in docs)
    by_name = {d.name: d for d in docs}

    first, third = dataset.list_documents(page=1, page_size=3), dataset.list_documents(page=3, page_size=3)
    assert len(first) == 3 and len(third) == 1
    assert {d.id for d in first}.isdisjoint({d.id for d in third})
    assert [d.name for d in dataset.list_documents(keywords="guide")] == ["guide.md"]

    finished = dataset.parse_documents([d.id for d in docs])
    assert sorted((run, doc_id) for doc_id, run, _, _ in finished) == sorted(("DONE", d.id) for d in docs)
    assert all(chunks >= 1 and tokens > 0 for _, _, chunks, tokens in finished)
    assert rag.list_datasets(id=dataset.id)[0].chunk_count == sum(c for _, _, c, _ in finished)

    for name in by_name:
        marker = MARKERS[name.rsplit(".", 1)[1]]
        assert top_doc(rag, dataset.id, marker) == by_name[name].id, name

    hits = rag.retrieve(dataset_ids=[dataset.id], question=f"{MARKERS['md']} marsupial meadow")
    best = hits[0]
    assert 0 < best.similarity <= 1 and best.vector_similarity > 0 and best.term_similarity > 0
    assert best.similarity >= hits[-1].similarity

    raw = retrieve_raw(rag, dataset_ids=[dataset.id], question=f"{MARKERS['txt']} minerals", highlight=True,
                       document_ids=[by_name["notes.txt"].id])
    assert {c["document_id"] for c in raw["chunks"]} == {by_name["notes.txt"].id}
    assert raw["doc_aggs"] == [{"doc_name": "notes.txt", "doc_id": by_name["notes.txt"].id,
                                "count": len(raw["chunks"])}]
    assert MARKERS["txt"] in raw["chunks"][0]["highlight"] and "<em>" in raw["chunks"][0]["highlight"]

    notes = by_name["notes.txt"]
    assert notes.download() == sample_files()[0]["blob"]
    notes.update({"name": "renamed.txt", "meta_fields": {"author": "ada"}})
    listed = dataset.list_documents(id=notes.id)[0]
    assert listed.name == "renamed.txt" and listed.meta_fields.author == "ada"

    chunks = notes.list_chunks()
    assert len(chunks) == listed.chunk_count >= 1
    assert [c.id for c in notes.list_chunks(keywords=MARKERS["txt"])] == [chunks[0].id]
    assert notes.list_chunks(keywords="nonexistentword") == []

    added = notes.add_chunk(content="The okapi hides in the rainforest of the Congo.",
                            important_keywords=["okapi"])
    assert top_doc(rag, dataset.id, "okapi rainforest") == notes.id
    assert rag.retrieve(dataset_ids=[dataset.id], question="okapi rainforest")[0].id == added.id
    first_page, second_page = notes.list_chunks(page=1, page_size=1), notes.list_chunks(page=2, page_size=1)
    assert len(first_page) == len(second_page) == 1 and first_page[0].id != second_page[0].id

    added.update({"content": "The narwhal swims under the arctic sea ice."})
    assert rag.retrieve(dataset_ids=[dataset.id], question="narwhal arctic sea ice")[0].id == added.id
    old_words = rag.retrieve(dataset_ids=[dataset.id], question="rainforest Congo",
                             vector_similarity_weight=0.0)
    assert added.id not in [c.id for c in old_words]

    notes.delete_chunks([added.id])
    assert added.id not in [c.id for c in notes.list_chunks(page_size=100)]
    assert dataset.list_documents(id=notes.id)[0].chunk_count == listed.chunk_count

    notes.update({"enabled": False})
    hidden = rag.retrieve(dataset_ids=[dataset.id], question=MARKERS["txt"])
    assert notes.id not in {c.document_id for c in hidden}
    notes.update({"enabled": True})
    assert top_doc(rag, dataset.id, MARKERS["txt"]) == notes.id

    dataset.delete_documents([notes.id, by_name["guide.md"].id])
    assert len(dataset.list_documents(page_size=100)) == len(docs) - 2
    leftovers = rag.retrieve(dataset_ids=[dataset.id], question=f"{MARKERS['txt']} {MARKERS['md']}")
    assert {notes.id, by_name["guide.md"].id}.isdisjoint({c.document_id for c in leftovers})
    # The SDK's own download() mis-reads an error reply (AttributeError), so ask through its session.
    gone = rag.get(f"/datasets/{dataset.id}/documents/{notes.id}").json()
    assert gone["code"] == 102


def test_sdk_async_parse_and_cancel(live_server) -> None:
    rag = RAGFlow(api_key=live_server.key("acme"), base_url=live_server.url)
    dataset = rag.create_dataset(name="sdk-cancel",
                                 parser_config=DataSet.ParserConfig(rag, {"chunk_token_num": 64}))
    sentences = " ".join(f"Sentence number {i} talks about topic {i % 97} at length." for i in range(1000))
    small, big = dataset.upload_documents([
        {"display_name": "small.txt", "blob": b"A short note about herons wading in the marsh."},
        {"display_name": "big.txt", "blob": sentences.encode()},
    ])

    dataset.async_parse_documents([small.id])
    done = wait_for(lambda: [d for d in dataset.list_documents(id=small.id) if d.run == "DONE"])
    assert done[0].chunk_count == 1 and done[0].progress == 1.0

    dataset.async_parse_documents([big.id])
    assert dataset.list_documents(id=big.id)[0].run == "RUNNING"
    dataset.async_cancel_parse_documents([big.id])
    time.sleep(1.0)
    cancelled = dataset.list_documents(id=big.id)[0]
    assert cancelled.run == "CANCEL" and cancelled.progress < 1.0
    with pytest.raises(Exception, match="not being parsed"):
        dataset.async_cancel_parse_documents([big.id])

    finished = dataset.parse_documents([big.id])
    assert finished[0][1] == "DONE"
    chunks = dataset.list_documents(id=big.id)[0].chunk_count
    assert chunks > 50 and len(big.list_chunks(page_size=1000)) == chunks
