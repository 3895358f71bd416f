"""/api/v1/intents: a tenant's intent routes (intent → chat assistant), the router's settings,
a classification probe and the routed answer.

    GET    /api/v1/intents                  routes and settings
    POST   /api/v1/intents                  {name, description, examples, chat_id} → a route
    PUT    /api/v1/intents/<id>             change any of those fields
    DELETE /api/v1/intents/<id>             one route; DELETE /api/v1/intents {ids, delete_all} several
    GET    /api/v1/intents/settings         {fallback_chat_id, accept, margin, classifier_model}
    PUT    /api/v1/intents/settings         change any of those (null clears one)
    POST   /api/v1/intents/classify         {question} → the decision, no answer
    POST   /api/v1/intents/answer           /api/v1/llm/generate's body, always routed

RAGFlow-style envelope (``{"code": 0, "data": ...}``, 102 for an unknown or foreign id).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from quart import Blueprint, Response, g

from api.apps.llm_app import GenerateRequest, generate_result
from api.components import components
from api.db.services import intent_service
from api.utils.api_utils import MAX_MESSAGE_CHARS, json_body, ok
from api.utils.compat import ids_to_delete

bp = Blueprint("intents", __name__, url_prefix="/api/v1/intents")

Examples = list[str]


class RouteFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[\w.-]+$")
    description: str | None = Field(None, max_length=2000)
    examples: Examples | None = Field(None, max_length=500)
    chat_id: str | None = Field(None, min_length=1, max_length=32)

    @field_validator("examples")
    @classmethod
    def _examples(cls, value: list[str] | None) -> list[str] | None:
        """Blank examples are dropped; each is a message of a few sentences at most."""
        if value is None:
            return None
        if any(len(example) > 2000 for example in value):
            raise ValueError("each example must be at most 2000 characters")
        return [example.strip() for example in value if example.strip()]


class NewRoute(RouteFields):
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[\w.-]+$")
    chat_id: str = Field(..., min_length=1, max_length=32)
    description: str = Field("", max_length=2000)
    examples: Examples = Field(default_factory=list, max_length=500)


class RouterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fallback_chat_id: str | None = Field(None, max_length=32)
    accept: float | None = Field(None, ge=-1, le=1)
    margin: float | None = Field(None, ge=0, le=2)
    classifier_model: str | None = Field(None, max_length=128)


class DeleteRoutes(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ids: list[str] | None = None
    delete_all: bool | None = None


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    question: str = Field(..., min_length=1, max_length=MAX_MESSAGE_CHARS)


def _given(fields: BaseModel) -> dict[str, Any]:
    return {key: getattr(fields, key) for key in fields.model_fields_set}


@bp.get("")
async def list_routes() -> Response:
    return ok(await components().db.run(intent_service.list_routes, g.tenant_id))


@bp.post("")
async def create_route() -> Response:
    body = await json_body(NewRoute)
    return ok(await components().db.run(intent_service.create_route, g.tenant_id, body.name, body.description,
                                         body.examples, body.chat_id))


@bp.get("/settings")
async def get_settings() -> Response:
    return ok((await components().db.run(intent_service.list_routes, g.tenant_id))["settings"])


@bp.put("/settings")
async def put_settings() -> Response:
    body = await json_body(RouterSettings)
    parts = components()
    if body.classifier_model:
        parts.check_chat_model(body.classifier_model)
    return ok(await parts.db.run(intent_service.update_settings, g.tenant_id, _given(body)))


@bp.post("/classify")
async def classify() -> Response:
    body = await json_body(ClassifyRequest)
    decision = await intent_service.classify(components(), g.tenant_id, body.question)
    return ok({**decision.to_api(), "scores": decision.scores})


@bp.post("/answer")
async def answer() -> Response:
    body = await json_body(GenerateRequest)
    body.route = True
    return ok(await generate_result(components(), g.tenant_id, body))


@bp.put("/<route_id>")
async def update_route(route_id: str) -> Response:
    body = await json_body(RouteFields)
    return ok(await components().db.run(intent_service.update_route, g.tenant_id, route_id, _given(body)))


@bp.delete("/<route_id>")
async def delete_route(route_id: str) -> Response:
    return ok({"deleted": await components().db.run(intent_service.delete_routes, g.tenant_id, [route_id])})


@bp.delete("")
async def delete_routes() -> Response:
    body = await json_body(DeleteRoutes)
    ids = ids_to_delete(body.ids, body.delete_all)
    return ok({"deleted": await components().db.run(intent_service.delete_routes, g.tenant_id, ids)})
