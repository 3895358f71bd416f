"""A parsed document whose chunk method changes is parsed again with it (ragflow-sdk, live server)."""

from __future__ import annotations

from ragflow_sdk import RAGFlow

from tests.api.test_sdk_ingest import wait_for

TEXT = "\n\n".join(f"Section {n}. " + " ".join(f"word{n}x{i}" for i in range(120)) for n in range(6))


def test_changing_the_chunk_method_parses_the_document_again(live_server) -> None:
    rag = RAGFlow(api_key=live_server.key(), base_url=live_server.url)
    dataset = rag.create_dataset(name="rechunk")
    [doc] = dataset.upload_documents([{"display_name": "long.txt", "blob": TEXT.encode()}])
    dataset.parse_documents([doc.id])
    before = dataset.list_documents(id=doc.id)[0]
    assert before.run == "DONE" and before.chunk_count > 1

    doc.update({"chunk_method": "one"})
    assert dataset.list_documents(id=doc.id)[0].run in ("RUNNING", "DONE")  # queued at once
    after = wait_for(lambda: [d for d in dataset.list_documents(id=doc.id) if d.run == "DONE"])[0]
    assert after.chunk_method == "one" and after.chunk_count == 1
    assert len(doc.list_chunks()) == 1


def test_an_unparsed_document_is_not_parsed_by_a_method_change(live_server) -> None:
    rag = RAGFlow(api_key=live_server.key(), base_url=live_server.url)
    dataset = rag.create_dataset(name="untouched")
    [doc] = dataset.upload_documents([{"display_name": "a.txt", "blob": b"Some text."}])
    doc.update({"chunk_method": "one"})
    assert dataset.list_documents(id=doc.id)[0].run == "UNSTART"
