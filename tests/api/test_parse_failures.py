"""Files that upload fine but cannot be parsed: each ends FAIL with a reason, the rest of the
batch ends DONE, nothing is left behind, and no request answers 500.

The app's own ingestion workers (settings.ingest_workers) do the parsing, through the same
HTTP routes a client uses.
"""

from __future__ import annotations

import asyncio
import io

import docx
import pytest
from fpdf import FPDF

from tests.api.test_documents_api import make_dataset, stored_files, upload

pytestmark = pytest.mark.usefixtures("app")

TERMINAL = {"DONE", "FAIL", "CANCEL"}


def scanned_pdf() -> bytes:
    """A PDF whose page holds only drawings, like a scan: no text layer."""
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")
    pdf.ellipse(40, 100, 80, 40)
    return bytes(pdf.output())


def corrupt_docx() -> bytes:
    """A real .docx cut in half: the ZIP central directory is gone."""
    document = docx.Document()
    document.add_paragraph("This paragraph will never be read. " * 50)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


BAD_FILES = {
    "binary.txt": (bytes(range(256)) * 8, "binary"),
    "scan.pdf": (scanned_pdf(), "no text layer"),
    "broken.docx": (corrupt_docx(), "corrupt"),
    "blank.md": (b"  \n\n\t \r\n   ", "empty"),
    "noise.docx": (b"PK\x03\x04 this is not really a zip archive", "corrupt"),
}
GOOD_FILES = {
    "good.txt": b"Kingfishers dive for small fish in clear rivers.",
    "good.md": b"# Herons\n\nHerons stand still in shallow water waiting for frogs.",
}


async def list_all(client, auth, dataset_id) -> list[dict]:
    response = await client.get(f"/api/v1/datasets/{dataset_id}/documents?page_size=100", headers=auth)
    assert response.status_code == 200
    return (await response.get_json())["data"]["docs"]


async def wait_until_settled(client, auth, dataset_id) -> dict[str, dict]:
    """The documents by name once none is RUNNING (at most a minute)."""
    async with asyncio.timeout(60):
        while True:
            docs = await list_all(client, auth, dataset_id)
            if all(doc["run"] in TERMINAL for doc in docs):
                return {doc["name"]: doc for doc in docs}
            await asyncio.sleep(0.1)


async def test_unparseable_files_fail_with_a_reason_and_the_batch_goes_on(client, auth, parts) -> None:
    dataset_id = await make_dataset(client, auth, "failures")
    files = [(name, data) for name, (data, _) in BAD_FILES.items()] + list(GOOD_FILES.items())
    uploaded = await upload(client, auth, dataset_id, *files)
    assert uploaded.status_code == 200
    body = await uploaded.get_json()
    assert body["code"] == 0 and len(body["data"]) == len(files)
    ids = [doc["id"] for doc in body["data"]]

    parsed = await client.post(f"/api/v1/datasets/{dataset_id}/chunks", headers=auth,
                               json={"document_ids": ids})
    assert parsed.status_code == 200 and (await parsed.get_json())["code"] == 0
    docs = await wait_until_settled(client, auth, dataset_id)

    for name, (_, reason) in BAD_FILES.items():
        doc = docs[name]
        assert doc["run"] == "FAIL", (name, doc["run"], doc["progress_msg"])
        assert reason in doc["progress_msg"].lower(), (name, doc["progress_msg"])
        assert doc["chunk_count"] == 0 and doc["token_count"] == 0
    for name in GOOD_FILES:
        doc = docs[name]
        assert doc["run"] == "DONE" and doc["chunk_count"] == 1 and doc["progress"] == 1.0

    for doc in docs.values():
        chunks = await client.get(f"/api/v1/datasets/{dataset_id}/documents/{doc['id']}/chunks", headers=auth)
        assert chunks.status_code == 200
        assert (await chunks.get_json())["data"]["total"] == doc["chunk_count"]
    dataset = await (await client.get(f"/api/v1/datasets?id={dataset_id}", headers=auth)).get_json()
    assert dataset["data"][0]["chunk_count"] == len(GOOD_FILES)
    assert dataset["data"][0]["document_count"] == len(files)

    assert len(stored_files(parts)) == len(files), "one stored file per document, no stray copies"
    download = await client.get(f"/api/v1/datasets/{dataset_id}/documents/{docs['binary.txt']['id']}",
                                headers=auth)
    assert await download.get_data() == BAD_FILES["binary.txt"][0]

    deleted = await client.delete(f"/api/v1/datasets/{dataset_id}/documents", headers=auth, json={"ids": ids})
    assert deleted.status_code == 200 and (await deleted.get_json())["code"] == 0
    assert stored_files(parts) == []
    assert await list_all(client, auth, dataset_id) == []


async def test_reparsing_a_failed_document_fails_again_cleanly(client, auth, parts) -> None:
    dataset_id = await make_dataset(client, auth, "again")
    body = await (await upload(client, auth, dataset_id, ("scan.pdf", scanned_pdf()))).get_json()
    doc_id = body["data"][0]["id"]
    for _ in range(2):
        reply = await client.post(f"/api/v1/datasets/{dataset_id}/chunks", headers=auth,
                                  json={"document_ids": [doc_id]})
        assert (await reply.get_json())["code"] == 0
        docs = await wait_until_settled(client, auth, dataset_id)
        assert docs["scan.pdf"]["run"] == "FAIL" and "OCR" in docs["scan.pdf"]["progress_msg"]
    assert len(stored_files(parts)) == 1
