"""OpenAI-compatible chat completions over a chat assistant (lands with the chat issue)."""

from __future__ import annotations

from quart import Blueprint, Response

from api.utils.api_utils import not_implemented

bp = Blueprint("openai", __name__, url_prefix="/api/v1/chats_openai")


@bp.route("/<chat_id>/chat/completions", methods=["POST"])
async def pending_1(**_: str) -> Response:
    return not_implemented()


@bp.route("/<chat_id>/models", methods=["GET"])
async def pending_2(**_: str) -> Response:
    return not_implemented()
