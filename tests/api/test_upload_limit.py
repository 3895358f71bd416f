"""An upload over MAX_CONTENT_LENGTH: HTTP 413, and nothing stored."""

from __future__ import annotations

import pytest

from api.db.models import Document
from tests.api.test_documents_api import make_dataset, stored_files, upload


@pytest.fixture
def settings(make_settings):
    return make_settings(max_content_length=2048)


async def test_upload_over_the_limit_is_413_and_stores_nothing(client, auth, parts) -> None:
    dataset_id = await make_dataset(client, auth)
    response = await upload(client, auth, dataset_id, ("big.txt", b"x" * 10_000))
    assert response.status_code == 413
    assert parts.db.call(Document.select().count) == 0
    assert stored_files(parts) == []
