"""Documents through the HTTP API: upload, list, download, update, delete, bad input."""

from __future__ import annotations

import pytest
from urllib3 import encode_multipart_formdata

from api.db.models import Document, File

pytestmark = pytest.mark.usefixtures("app")


async def make_dataset(client, auth, name="docs") -> str:
    body = await (await client.post("/api/v1/datasets", headers=auth, json={"name": name})).get_json()
    return body["data"]["id"]


async def upload(client, auth, dataset_id, *files):
    """POST a real multipart body with one ``file`` part per (name, bytes)."""
    body, content_type = encode_multipart_formdata([("file", (name, data)) for name, data in files])
    return await client.post(f"/api/v1/datasets/{dataset_id}/documents", data=body,
                             headers={**auth, "Content-Type": content_type})


def stored_files(parts) -> list:
    return [p for p in (parts.settings.data_dir / "files").rglob("*") if p.is_file()]


async def test_upload_list_download_and_delete(client, auth, parts) -> None:
    dataset_id = await make_dataset(client, auth)
    response = await upload(client, auth, dataset_id, ("notes.txt", b"hello world"), ("page.md", b"# T\nbody"))
    body = await response.get_json()
    assert body["code"] == 0
    docs = body["data"]
    assert [d["name"] for d in docs] == ["notes.txt", "page.md"]
    assert all(d["run"] == "UNSTART" and d["status"] == "1" and d["dataset_id"] == dataset_id for d in docs)
    assert docs[0]["size"] == 11 and docs[0]["chunk_count"] == 0

    listed = await (await client.get(f"/api/v1/datasets/{dataset_id}/documents", headers=auth)).get_json()
    assert listed["data"]["total"] == 2
    by_keyword = await (await client.get(f"/api/v1/datasets/{dataset_id}/documents?keywords=NOTE",
                                         headers=auth)).get_json()
    assert [d["name"] for d in by_keyword["data"]["docs"]] == ["notes.txt"]

    download = await client.get(f"/api/v1/datasets/{dataset_id}/documents/{docs[0]['id']}", headers=auth)
    assert await download.get_data() == b"hello world"
    assert "notes.txt" in download.headers["Content-Disposition"]

    dataset = await (await client.get(f"/api/v1/datasets?id={dataset_id}", headers=auth)).get_json()
    assert dataset["data"][0]["document_count"] == 2

    deleted = await (await client.delete(f"/api/v1/datasets/{dataset_id}/documents", headers=auth,
                                         json={"ids": [docs[0]["id"]]})).get_json()
    assert deleted["code"] == 0
    assert len(stored_files(parts)) == 1
    dataset = await (await client.get(f"/api/v1/datasets?id={dataset_id}", headers=auth)).get_json()
    assert dataset["data"][0]["document_count"] == 1


async def test_same_name_twice_gets_a_numbered_name(client, auth) -> None:
    dataset_id = await make_dataset(client, auth)
    await upload(client, auth, dataset_id, ("a.txt", b"one"))
    body = await (await upload(client, auth, dataset_id, ("a.txt", b"two"), ("A.txt", b"three"))).get_json()
    assert [d["name"] for d in body["data"]] == ["a(1).txt", "A(2).txt"]


async def test_a_numbered_name_the_dataset_already_has_is_skipped_too(client, auth) -> None:
    dataset_id = await make_dataset(client, auth)
    await upload(client, auth, dataset_id, ("b.txt", b"one"), ("B(1).txt", b"two"), ("c.txt", b"three"))
    body = await (await upload(client, auth, dataset_id, ("b.txt", b"four"), ("C.TXT", b"five"),
                               ("d.txt", b"six"))).get_json()
    assert [d["name"] for d in body["data"]] == ["b(2).txt", "C(1).TXT", "d.txt"]


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ([], "No file part"),
        ([("tool.exe", b"MZ")], ".exe"),
        ([("noext", b"data")], "no extension"),
        ([("ok.txt", b"fine"), ("bad.bin", b"x")], ".bin"),
        ([("empty.txt", b"")], "empty"),
    ],
)
async def test_bad_uploads_store_nothing(client, auth, parts, files, fragment) -> None:
    dataset_id = await make_dataset(client, auth)
    body = await (await upload(client, auth, dataset_id, *files)).get_json()
    assert body["code"] == 101 and fragment in body["message"]
    assert parts.db.call(Document.select().count) == 0
    assert parts.db.call(File.select().count) == 0
    assert stored_files(parts) == []


@pytest.mark.parametrize("name", ["../../etc/passwd.txt", "a\x00b.txt", "x" * 300 + ".txt", "..\\..\\win.txt"])
async def test_hostile_file_names_are_sanitised(client, auth, parts, name) -> None:
    dataset_id = await make_dataset(client, auth)
    body = await (await upload(client, auth, dataset_id, (name, b"content"))).get_json()
    assert body["code"] == 0
    stored_name = body["data"][0]["name"]
    assert "/" not in stored_name and "\\" not in stored_name and "\x00" not in stored_name
    assert stored_name.endswith(".txt") and len(stored_name.encode()) <= 255
    files = stored_files(parts)
    assert len(files) == 1 and files[0].resolve().is_relative_to((parts.settings.data_dir / "files").resolve())


async def test_update_rename_keeps_the_extension(client, auth) -> None:
    dataset_id = await make_dataset(client, auth)
    doc = (await (await upload(client, auth, dataset_id, ("a.txt", b"one"))).get_json())["data"][0]
    url = f"/api/v1/datasets/{dataset_id}/documents/{doc['id']}"
    refused = await (await client.put(url, headers=auth, json={"name": "a.pdf"})).get_json()
    assert refused["code"] == 101
    renamed = await (await client.put(url, headers=auth, json={"name": "b.txt", "meta_fields": {"k": 1},
                                                               "enabled": False})).get_json()
    assert renamed["data"]["name"] == "b.txt" and renamed["data"]["meta_fields"] == {"k": 1}
    assert renamed["data"]["status"] == "0"
    bad_meta = await (await client.put(url, headers=auth, json={"meta_fields": [1]})).get_json()
    assert bad_meta["code"] == 101


async def test_another_tenant_cannot_touch_documents(client, make_key) -> None:
    acme = {"Authorization": f"Bearer {make_key('acme')}"}
    globex = {"Authorization": f"Bearer {make_key('globex')}"}
    dataset_id = await make_dataset(client, acme)
    doc = (await (await upload(client, acme, dataset_id, ("a.txt", b"secret"))).get_json())["data"][0]
    base = f"/api/v1/datasets/{dataset_id}/documents"
    assert (await (await client.get(base, headers=globex)).get_json())["code"] == 102
    download = await client.get(f"{base}/{doc['id']}", headers=globex)
    assert (await download.get_json())["code"] == 102
    assert (await (await upload(client, globex, dataset_id, ("x.txt", b"x"))).get_json())["code"] == 102
    assert (await (await client.delete(base, headers=globex, json={"ids": [doc["id"]]})).get_json())["code"] == 102
    assert (await (await client.get(base, headers=acme)).get_json())["data"]["total"] == 1


async def test_listing_ten_thousand_documents_pages_quickly(client, auth, parts) -> None:
    from api.db.models import Knowledgebase

    dataset_id = await make_dataset(client, auth)
    tenant_id = parts.db.call(lambda: Knowledgebase.get_by_id(dataset_id).tenant_id)

    def fill() -> None:
        rows = [{"tenant_id": tenant_id, "kb_id": dataset_id, "name": f"doc-{i:05d}.txt", "location": f"k{i}",
                 "parser_config": {}, "meta_fields": {}, "create_time": 1_000 + i, "update_time": 1_000 + i}
                for i in range(10_000)]
        with Document._meta.database.atomic():
            for start in range(0, len(rows), 500):
                Document.insert_many(rows[start:start + 500]).execute()

    parts.db.call(fill)
    body = await (await client.get(f"/api/v1/datasets/{dataset_id}/documents?page=200&page_size=50",
                                   headers=auth)).get_json()
    assert body["data"]["total"] == 10_000
    assert [d["name"] for d in body["data"]["docs"]][:2] == ["doc-00049.txt", "doc-00048.txt"]
