"""The app's cross-cutting behaviour: auth, envelope, request ids, limits, health, metrics."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from api.settings import Settings


async def test_liveness_needs_no_key(client) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok"}


async def test_a_wrong_key_is_code_109(client) -> None:
    response = await client.get("/api/v1/datasets", headers={"Authorization": "Bearer ragline-wrong"})
    assert response.status_code == 200
    body = await response.get_json()
    assert body["code"] == 109
    assert body["message"] == "Authentication error: API key is invalid!"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}])
async def test_no_key_on_a_ragflow_route_answers_as_each_ragflow_line_does(client, auth, headers) -> None:
    response = await client.get("/api/v1/datasets", headers=headers)
    assert response.status_code == 200
    assert await response.get_json() == {"code": 0, "message": "`Authorization` can't be empty"}  # v0.22
    await client.get("/api/v1/datasets?ids=x", headers=auth)  # this address's client shows v0.27
    response = await client.get("/api/v1/datasets", headers=headers)
    assert await response.get_json() == {"code": 401, "message": "<Unauthorized '401: Unauthorized'>"}
    await client.post("/api/v1/chats", headers=auth, json={"name": "x", "llm": {}, "prompt": {}})  # and v0.22
    response = await client.get("/api/v1/datasets", headers=headers)
    assert (await response.get_json())["code"] == 0


async def test_a_query_token_does_not_authenticate_http_routes(client, auth: dict[str, str]) -> None:
    key = auth["Authorization"].split()[1]
    response = await client.get(f"/api/v1/datasets?token={key}")
    assert await response.get_json() == {"code": 0, "message": "`Authorization` can't be empty"}  # no data


async def test_gateway_routes_answer_401_for_a_bad_key(client) -> None:
    response = await client.post("/v1/messages", json={"messages": []})
    assert response.status_code == 401
    assert (await response.get_json())["code"] == 109


async def test_a_valid_key_reaches_the_route(client, auth: dict[str, str]) -> None:
    response = await client.get("/api/v1/datasets", headers=auth)
    body = await response.get_json()
    assert body["code"] == 0 and body["data"] == [] and body["total_datasets"] == 0


async def test_an_unknown_route_is_a_json_error_not_html(client) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.content_type.startswith("application/json")
    assert "nothing-here" in (await response.get_json())["message"]


async def test_a_wrong_method_is_a_json_error(client, auth: dict[str, str]) -> None:
    response = await client.patch("/api/v1/datasets", headers=auth)
    assert response.status_code == 405
    assert (await response.get_json())["code"] == 405


async def test_every_response_carries_a_request_id(client, auth: dict[str, str]) -> None:
    generated = await client.get("/healthz")
    assert len(generated.headers["X-Request-ID"]) == 32
    echoed = await client.get("/api/v1/datasets", headers={**auth, "X-Request-ID": "trace-123"})
    assert echoed.headers["X-Request-ID"] == "trace-123"
    unsafe = await client.get("/healthz", headers={"X-Request-ID": "bad id <script>"})
    assert unsafe.headers["X-Request-ID"] != "bad id <script>"
    failed = await client.get("/api/v1/datasets")
    assert failed.headers["X-Request-ID"]


async def test_a_body_over_the_limit_is_413_and_changes_nothing(make_settings, make_parts) -> None:
    from api.app import create_app

    settings: Settings = make_settings(max_content_length=1024)
    parts = make_parts(settings)
    app = create_app(settings, parts)
    async with app.test_app() as test_app:
        key = parts.db.call(__import__("api.db.services.tenant_service", fromlist=["x"]).create_key_for, "t").key
        client = test_app.test_client()
        headers = {"Authorization": f"Bearer {key}"}
        response = await client.post("/api/v1/datasets", headers=headers,
                                     json={"name": "big", "description": "x" * 5000})
        assert response.status_code == 413
        assert (await response.get_json())["code"] == 413
        listed = await (await client.get("/api/v1/datasets", headers=headers)).get_json()
        assert listed["data"] == []


async def test_invalid_json_is_an_argument_error(client, auth: dict[str, str]) -> None:
    response = await client.post("/api/v1/datasets", headers={**auth, "Content-Type": "application/json"},
                                 data="{not json")
    body = await response.get_json()
    assert body["code"] == 101 and "JSON" in body["message"]


async def test_system_health_reports_each_component_with_latency(client) -> None:
    body = await (await client.get("/api/v1/system/healthz")).get_json()
    assert body["code"] == 0
    database = body["data"]["components"]["database"]
    assert database["status"] == "ok" and database["latency_ms"] >= 0


async def test_metrics_show_route_counts_latency_and_loop_lag(client, auth: dict[str, str]) -> None:
    await client.get("/api/v1/datasets", headers=auth)
    await asyncio.sleep(0.3)
    text = (await (await client.get("/metrics")).get_data()).decode()
    assert 'ragline_http_requests_total{method="GET",route="/api/v1/datasets",status="200"}' in text
    assert "ragline_http_request_duration_seconds_bucket" in text
    assert "ragline_event_loop_lag_seconds " in text
    assert "ragline_event_loop_lag_histogram_seconds_count" in text


async def test_the_default_executor_is_the_bounded_pool(app, settings: Settings) -> None:
    executor = asyncio.get_running_loop()._default_executor
    assert executor is not None and executor._max_workers == settings.worker_threads


async def test_access_log_is_a_json_line_with_request_fields(client, auth, caplog) -> None:
    from api.observability import JsonLineFormatter

    caplog.set_level(logging.INFO, logger="ragline.access")
    await client.get("/api/v1/datasets", headers={**auth, "X-Request-ID": "log-me"})
    record = next(r for r in caplog.records if r.name == "ragline.access" and r.fields["request_id"] == "log-me")
    line = json.loads(JsonLineFormatter().format(record))
    assert line["route"] == "/api/v1/datasets" and line["status"] == 200
    assert line["tenant"] and line["duration_ms"] >= 0


async def test_a_new_key_from_the_api_works_for_the_same_tenant(client, auth: dict[str, str]) -> None:
    created = await (await client.post("/api/v1/system/tokens", headers=auth, json={"name": "ci"})).get_json()
    assert created["code"] == 0
    new_headers = {"Authorization": f"Bearer {created['data']['token']}"}
    await client.post("/api/v1/datasets", headers=auth, json={"name": "shared"})
    listed = await (await client.get("/api/v1/datasets", headers=new_headers)).get_json()
    assert [d["name"] for d in listed["data"]] == ["shared"]

