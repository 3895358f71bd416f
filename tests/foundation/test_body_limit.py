"""MAX_CONTENT_LENGTH holds on every transfer encoding: a chunked body without Content-Length is
counted as it arrives, answered 413, and nothing of it is stored."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from api.db.models import Document

LIMIT = 64 * 1024
BOUNDARY = "ragline-test-boundary"


@pytest.fixture
def settings(make_settings):
    return make_settings(max_content_length=LIMIT)


def chunked_multipart(payload_bytes: int, piece: int = 8192) -> Iterator[bytes]:
    """A multipart upload of one text file, yielded in pieces so httpx sends it chunked, and
    slowly enough that the server's parser drains its buffer between pieces (as on a real
    network), so no single buffer ever holds more than the limit."""
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n"
           "Content-Type: text/plain\r\n\r\n").encode()
    for _ in range(payload_bytes // piece):
        time.sleep(0.002)
        yield b"x" * piece
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def make_dataset(url: str, headers: dict[str, str]) -> str:
    return httpx.post(f"{url}/api/v1/datasets", headers=headers, json={"name": "limits"}).json()["data"]["id"]


def upload_chunked(server, payload_bytes: int) -> tuple[httpx.Response, str, dict[str, str]]:
    """A new dataset and a chunked upload of ``payload_bytes`` into it: (response, dataset, auth)."""
    headers = {"Authorization": f"Bearer {server.key()}"}
    dataset_id = make_dataset(server.url, headers)
    response = httpx.post(
        f"{server.url}/api/v1/datasets/{dataset_id}/documents",
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        content=chunked_multipart(payload_bytes), timeout=30,
    )
    return response, dataset_id, headers


def test_a_chunked_upload_over_the_limit_is_413_and_stores_nothing(live_server) -> None:
    response, dataset_id, headers = upload_chunked(live_server, LIMIT * 8)
    assert response.status_code == 413, response.text
    assert live_server.parts.db.call(Document.select().count) == 0
    listed = httpx.get(f"{live_server.url}/api/v1/datasets/{dataset_id}/documents", headers=headers).json()
    assert listed["data"]["total"] == 0


def test_a_chunked_upload_under_the_limit_is_stored(live_server) -> None:
    response, _, _ = upload_chunked(live_server, LIMIT // 2)
    assert response.json()["code"] == 0
    assert live_server.parts.db.call(Document.select().count) == 1


def test_a_chunked_json_body_over_the_limit_is_413(live_server) -> None:
    headers = {"Authorization": f"Bearer {live_server.key()}", "Content-Type": "application/json"}
    body = iter([b'{"name": "', b"n" * (LIMIT * 2), b'"}'])
    response = httpx.post(f"{live_server.url}/api/v1/datasets", headers=headers, content=body, timeout=30)
    assert response.status_code == 413
