"""Intent routing: a tenant's routes (intent → chat assistant), classification and the decision.

A message is classified by ``rag.nlp.intent``: embedding similarity to the routes' examples
first (the builtin embedding model through the usual bundle; no LLM call when it is confident),
then, when it is not, one LLM call with a structured-output prompt (the router's
``classifier_model``, else the server's default chat model; skipped when that is the builtin
extractive model, which cannot classify). When neither is sure the message goes to the
fallback assistant (or, without one, to the door's ordinary assistant), reported as intent
``fallback``. Every decision is counted in ``/metrics`` with the time it took.

The routes' example vectors are computed once per version of the routes (their ids and update
times) and kept in ``IntentIndexCache``; editing a route recomputes them on the next message.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from peewee import IntegrityError

from api.db.models import Dialog, IntentRoute, IntentSettings
from api.db.services import chat_assistant_service
from api.db.services.common import http_date
from api.errors import data_error
from rag.llm.errors import LLMServiceError
from rag.nlp.intent import IntentIndex, Thresholds, llm_prompt, parse_llm_choice
from rag.prompts.generator import chat_text

if TYPE_CHECKING:
    from api.components import Components

logger = logging.getLogger(__name__)

FALLBACK = "fallback"
RESERVED_NAMES = (FALLBACK, "none")
LLM_CANDIDATES = 3  # the embedding stage's best intents, listed first in the LLM's prompt
CLASSIFIER_MAX_TOKENS = 60


@dataclass(frozen=True)
class IntentDecision:
    """Where a message went: ``intent`` (``fallback`` when nothing fit), how sure, by which stage
    (``embedding``, ``llm`` or ``fallback``) and to which chat assistant (None: the door's own)."""

    intent: str
    confidence: float
    method: str
    chat_id: str | None
    latency_ms: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        return {"intent": self.intent, "confidence": round(self.confidence, 4), "method": self.method,
                "chat_id": self.chat_id, "latency_ms": round(self.latency_ms, 3)}


@dataclass(frozen=True)
class Router:
    """A tenant's routes and settings as read for one message."""

    routes: list[IntentRoute]
    fallback_chat_id: str | None
    thresholds: Thresholds
    classifier_model: str | None

    @property
    def fingerprint(self) -> tuple:
        return tuple(sorted((route.id, route.update_time) for route in self.routes))


# -- storage -------------------------------------------------------------------------------------


def route_to_api(route: IntentRoute) -> dict[str, Any]:
    return {"id": route.id, "name": route.name, "description": route.description, "examples": list(route.examples),
            "chat_id": route.dialog_id, "create_time": route.create_time, "create_date": http_date(route.create_time),
            "update_time": route.update_time, "update_date": http_date(route.update_time)}


def settings_of(tenant_id: str) -> IntentSettings:
    return IntentSettings.get_or_none(IntentSettings.tenant_id == tenant_id) or IntentSettings(tenant_id=tenant_id)


def settings_to_api(settings: IntentSettings) -> dict[str, Any]:
    defaults = Thresholds()
    return {"fallback_chat_id": settings.fallback_dialog_id,
            "accept": settings.accept if settings.accept is not None else defaults.accept,
            "margin": settings.margin if settings.margin is not None else defaults.margin,
            "classifier_model": settings.classifier_model}


def _check_name(tenant_id: str, name: str, route_id: str | None = None) -> None:
    if name.strip().lower() in RESERVED_NAMES:
        raise data_error(f"`{name}` is reserved: it names the answer when no intent fits.")
    query = IntentRoute.select().where((IntentRoute.tenant_id == tenant_id) & (IntentRoute.name == name))
    if route_id is not None:
        query = query.where(IntentRoute.id != route_id)
    if query.exists():
        raise data_error(f"An intent named `{name}` already exists.")


def create_route(tenant_id: str, name: str, description: str, examples: list[str], chat_id: str) -> dict[str, Any]:
    """A new route to one of the tenant's chat assistants."""
    chat_assistant_service.get_owned(tenant_id, chat_id)
    _check_name(tenant_id, name)
    try:
        route = IntentRoute.create(tenant_id=tenant_id, name=name, description=description, examples=examples,
                                   dialog_id=chat_id)
    except IntegrityError:
        raise data_error(f"An intent named `{name}` already exists.") from None
    return route_to_api(route)


def _owned_route(tenant_id: str, route_id: str) -> IntentRoute:
    route = IntentRoute.get_or_none((IntentRoute.id == route_id) & (IntentRoute.tenant_id == tenant_id))
    if route is None:
        raise data_error(f"You don't own the intent {route_id}.")
    return route


def update_route(tenant_id: str, route_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Change a route's name, description, examples or chat assistant (``chat_id``)."""
    route = _owned_route(tenant_id, route_id)
    if "name" in changes:
        _check_name(tenant_id, changes["name"], route_id)
        route.name = changes["name"]
    if "chat_id" in changes:
        chat_assistant_service.get_owned(tenant_id, changes["chat_id"])
        route.dialog_id = changes["chat_id"]
    for key in ("description", "examples"):
        if key in changes:
            setattr(route, key, changes[key])
    route.save()
    return route_to_api(route)


def list_routes(tenant_id: str) -> dict[str, Any]:
    routes = IntentRoute.select().where(IntentRoute.tenant_id == tenant_id).order_by(IntentRoute.create_time)
    return {"routes": [route_to_api(route) for route in routes], "settings": settings_to_api(settings_of(tenant_id))}


def delete_routes(tenant_id: str, route_ids: list[str] | None) -> int:
    """Delete the named routes (all when ``route_ids`` is None); unknown ids are refused (102)."""
    query = IntentRoute.select(IntentRoute.id).where(IntentRoute.tenant_id == tenant_id)
    if route_ids is not None:
        found = {route.id for route in query.where(IntentRoute.id.in_(route_ids))}
        missing = [route_id for route_id in route_ids if route_id not in found]
        if missing:
            raise data_error(f"You don't own the intent {missing[0]}.")
    ids = [route.id for route in query] if route_ids is None else list(route_ids)
    if not ids:
        return 0
    return IntentRoute.delete().where((IntentRoute.tenant_id == tenant_id) & IntentRoute.id.in_(ids)).execute()


def update_settings(tenant_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Set the fallback assistant, thresholds or classifier model (null clears one)."""
    if changes.get("fallback_chat_id"):
        chat_assistant_service.get_owned(tenant_id, changes["fallback_chat_id"])
    settings = IntentSettings.get_or_none(IntentSettings.tenant_id == tenant_id)
    if settings is None:
        settings = IntentSettings.create(tenant_id=tenant_id)
    columns = {"fallback_chat_id": "fallback_dialog_id", "accept": "accept", "margin": "margin",
               "classifier_model": "classifier_model"}
    for key, column in columns.items():
        if key in changes:
            setattr(settings, column, changes[key])
    settings.save()
    return settings_to_api(settings)


def load_router(tenant_id: str) -> Router:
    routes = list(IntentRoute.select().where(IntentRoute.tenant_id == tenant_id).order_by(IntentRoute.create_time))
    settings = settings_of(tenant_id)
    defaults = Thresholds()
    thresholds = Thresholds(accept=settings.accept if settings.accept is not None else defaults.accept,
                            margin=settings.margin if settings.margin is not None else defaults.margin)
    return Router(routes, settings.fallback_dialog_id, thresholds, settings.classifier_model)


# -- classification ------------------------------------------------------------------------------


class IntentIndexCache:
    """Each tenant's example vectors, for the version of its routes they were computed from."""

    def __init__(self) -> None:
        self._indexes: dict[tuple[str, str], tuple[tuple, IntentIndex]] = {}

    async def index(self, parts: Components, tenant_id: str, router: Router) -> IntentIndex:
        model = parts.settings.embedding_model
        cached = self._indexes.get((tenant_id, model))
        if cached is not None and cached[0] == router.fingerprint:
            return cached[1]
        texts = {route.name: [str(e) for e in route.examples if str(e).strip()] or [route.description or route.name]
                 for route in router.routes}
        flat = [text for examples in texts.values() for text in examples]
        vectors, _tokens = await parts.bundle(tenant_id, model, "embedding").encode(flat)
        matrix, start, examples = np.asarray(vectors), 0, {}
        for name, own in texts.items():
            examples[name] = matrix[start:start + len(own)]
            start += len(own)
        index = IntentIndex(examples)
        self._indexes[(tenant_id, model)] = (router.fingerprint, index)
        return index


async def _ask_llm(parts: Components, tenant_id: str, router: Router, question: str,
                   candidates: list[str]) -> tuple[str | None, float]:
    """The LLM's choice among the routes; (None, 0) when it has none or fails."""
    model = router.classifier_model or parts.default_chat_model
    bundle = parts.bundle(tenant_id, model, "chat")
    if bundle.is_extractive:
        return None, 0.0
    system = llm_prompt([(route.name, route.description) for route in router.routes], candidates)
    try:
        text = await chat_text(bundle, system, [{"role": "user", "content": question}],
                               {"temperature": 0, "max_tokens": CLASSIFIER_MAX_TOKENS})
    except LLMServiceError:
        logger.warning("intent classification by %s failed; falling back", model, exc_info=True)
        return None, 0.0
    return parse_llm_choice(text, [route.name for route in router.routes])


async def classify(parts: Components, tenant_id: str, question: str) -> IntentDecision:
    """Where ``question`` should go for this tenant (102 when it has no routes)."""
    started = time.perf_counter()
    router = await parts.db.run(load_router, tenant_id)
    if not router.routes:
        raise data_error("No intent routes are configured: add some with POST /api/v1/intents.")
    index = await parts.intent_indexes.index(parts, tenant_id, router)
    embedded = await parts.embedded_question(tenant_id, parts.settings.embedding_model, question)
    verdict = index.decide(np.asarray(embedded.vector), router.thresholds)
    by_name = {route.name: route for route in router.routes}
    scores = {name: round(score, 4) for name, score in verdict.ranked}
    intent, confidence, method = verdict.intent, verdict.confidence, "embedding"
    if intent is None:
        candidates = [name for name, _ in verdict.ranked[:LLM_CANDIDATES]]
        intent, confidence = await _ask_llm(parts, tenant_id, router, question, candidates)
        method = "llm"
        if intent is None or confidence < router.thresholds.llm_min_confidence:
            intent, confidence, method = None, verdict.confidence, FALLBACK
    chat_id = by_name[intent].dialog_id if intent is not None else router.fallback_chat_id
    decision = IntentDecision(intent or FALLBACK, confidence, method, chat_id,
                              (time.perf_counter() - started) * 1000, scores)
    parts.metrics.observe_intent(decision.intent, decision.method, decision.latency_ms / 1000)
    return decision


def routed_dialog(tenant_id: str, decision: IntentDecision) -> Dialog | None:
    """The chat assistant a decision names (None: the door's ordinary assistant answers)."""
    if decision.chat_id is None:
        return None
    return chat_assistant_service.get_owned(tenant_id, decision.chat_id)
