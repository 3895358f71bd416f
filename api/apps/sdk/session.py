"""Sessions and session completions (lands with the chat issue)."""

from __future__ import annotations

from quart import Blueprint, Response

from api.utils.api_utils import not_implemented

bp = Blueprint("sessions", __name__, url_prefix="/api/v1/chats")


@bp.route("/<chat_id>/sessions", methods=["POST"])
async def pending_1(**_: str) -> Response:
    return not_implemented()


@bp.route("/<chat_id>/sessions", methods=["GET"])
async def pending_2(**_: str) -> Response:
    return not_implemented()


@bp.route("/<chat_id>/sessions/<session_id>", methods=["PUT"])
async def pending_3(**_: str) -> Response:
    return not_implemented()


@bp.route("/<chat_id>/sessions", methods=["DELETE"])
async def pending_4(**_: str) -> Response:
    return not_implemented()


@bp.route("/<chat_id>/completions", methods=["POST"])
async def pending_5(**_: str) -> Response:
    return not_implemented()
