"""POST /v1/messages: the simplest chat door — send messages, get a reply, history is kept."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from quart import Blueprint, Response, g, jsonify

from api.components import components
from api.db.services import gateway_service
from api.db.services.gateway_service import GenerateOptions
from api.utils.api_utils import MAX_MESSAGE_CHARS, json_body, require_user_question

bp = Blueprint("messages", __name__, url_prefix="/v1")

class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(..., max_length=MAX_MESSAGE_CHARS)


class MessagesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    conversation_id: str | None = Field(None, max_length=32)
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=1000)
    cache: bool | None = None
    cache_sampled: bool = False
    route: bool = False

    @model_validator(mode="after")
    def _ends_with_a_question(self) -> MessagesRequest:
        require_user_question(self.messages)
        return self


@bp.post("/messages")
async def messages() -> Response:
    body = await json_body(MessagesRequest)
    parts = components()
    question = body.messages[-1].content
    conversation_id = body.conversation_id or None
    if conversation_id is None and len(body.messages) > 1:
        prior = [m.model_dump() for m in body.messages[:-1]]
        conversation_id = await parts.db.run(gateway_service.start_with_history, g.tenant_id, prior, question)
    conversation, events = await gateway_service.answer(parts, g.tenant_id, conversation_id, question,
                                                        GenerateOptions(cache=body.cache,
                                                                        cache_sampled=body.cache_sampled,
                                                                        route=body.route),
                                                        stream=False)
    final = await gateway_service.final_event(events)
    reply = {"conversation_id": conversation.id, "reply": final.answer}
    if body.cache is not None or body.cache_sampled or body.route:  # the plain shape unless the client opted in
        reply.update(gateway_service.answer_facts(final))
    return jsonify(reply)
