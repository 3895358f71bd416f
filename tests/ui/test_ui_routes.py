"""The UI's server side: static files served without a key, hardened; key listing and revoking.

The browser tests (``test_ui_browser.py``) need Chromium; these run everywhere.
"""

from __future__ import annotations

import pytest

from api.db.services import tenant_service


async def test_the_ui_is_public_and_served_with_a_strict_policy(client) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    page = await response.get_data(as_text=True)
    assert '<script type="module" src="/ui/app.js">' in page
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
    script = await client.get("/ui/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["Content-Type"]
    assert (await client.get("/ui/style.css")).headers["Content-Type"].startswith("text/css")


@pytest.mark.parametrize("path", ["/ui/../app.py", "/ui/..%2Fapps%2Fui_app.py", "/ui/missing.js", "/ui/.hidden"])
async def test_nothing_outside_the_static_folder_is_served(client, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404


async def test_api_routes_still_need_a_key(client, make_key) -> None:
    """Making the UI public opened no API route: without a key, no data (v0.22's keyless answer
    is code 0 with ``data: false``, v0.27's a 401)."""
    key = make_key("acme")
    await client.post("/api/v1/datasets", json={"name": "private"}, headers={"Authorization": f"Bearer {key}"})
    body = await (await client.get("/api/v1/datasets")).get_json()
    assert body["code"] != 0 or body.get("data") in (None, False)
    assert "private" not in str(body)


async def test_keys_are_listed_without_secrets_and_the_current_one_is_marked(client, make_key) -> None:
    first, second = make_key("acme"), make_key("acme")
    make_key("other")
    body = await (await client.get("/api/v1/system/tokens", headers={"Authorization": f"Bearer {second}"})).get_json()
    assert body["code"] == 0
    keys = body["data"]
    assert len(keys) == 2
    assert [k["current"] for k in keys if k["prefix"] == second[:12]] == [True]
    assert {k["prefix"] for k in keys} == {first[:12], second[:12]}
    assert all(set(k) == {"id", "name", "prefix", "create_time", "current"} for k in keys)
    assert first not in str(keys) and tenant_service.hash_key(first) not in str(keys)


async def test_a_revoked_key_stops_working_at_once(client, make_key) -> None:
    keeper, doomed = make_key("acme"), make_key("acme")
    doomed_auth = {"Authorization": f"Bearer {doomed}"}
    assert (await (await client.get("/api/v1/datasets", headers=doomed_auth)).get_json())["code"] == 0  # now cached
    listed = await (await client.get("/api/v1/system/tokens", headers={"Authorization": f"Bearer {keeper}"})).get_json()
    [doomed_id] = [k["id"] for k in listed["data"] if k["prefix"] == doomed[:12]]
    revoked = await client.delete(f"/api/v1/system/tokens/{doomed_id}", headers={"Authorization": f"Bearer {keeper}"})
    assert (await revoked.get_json()) == {"code": 0, "data": True, "message": "success"}
    refused = await (await client.get("/api/v1/datasets", headers=doomed_auth)).get_json()
    assert refused["code"] == 109


async def test_another_tenants_key_cannot_be_revoked(client, make_key) -> None:
    mine, theirs = make_key("acme"), make_key("other")
    make_key("other")
    their_list = await (await client.get("/api/v1/system/tokens", headers={"Authorization": f"Bearer {theirs}"})).get_json()
    their_id = their_list["data"][0]["id"]
    body = await (await client.delete(f"/api/v1/system/tokens/{their_id}",
                                      headers={"Authorization": f"Bearer {mine}"})).get_json()
    assert body["code"] == 102 and "No API key" in body["message"]
    still = await (await client.get("/api/v1/datasets", headers={"Authorization": f"Bearer {theirs}"})).get_json()
    assert still["code"] == 0


async def test_the_last_key_is_not_revoked(client, make_key) -> None:
    only = make_key("solo")
    auth = {"Authorization": f"Bearer {only}"}
    [key] = (await (await client.get("/api/v1/system/tokens", headers=auth)).get_json())["data"]
    body = await (await client.delete(f"/api/v1/system/tokens/{key['id']}", headers=auth)).get_json()
    assert body["code"] == 102 and "last API key" in body["message"]
    assert (await (await client.get("/api/v1/datasets", headers=auth)).get_json())["code"] == 0
