"""/v1/conversation/*: conversation completions (lands with the chat issue)."""

from __future__ import annotations

from quart import Blueprint, Response

from api.utils.api_utils import not_implemented

bp = Blueprint("conversation", __name__, url_prefix="/v1/conversation")


@bp.route("/set", methods=["POST"])
async def pending_1(**_: str) -> Response:
    return not_implemented()


@bp.route("/get", methods=["GET"])
async def pending_2(**_: str) -> Response:
    return not_implemented()


@bp.route("/list", methods=["GET"])
async def pending_3(**_: str) -> Response:
    return not_implemented()


@bp.route("/rm", methods=["POST"])
async def pending_4(**_: str) -> Response:
    return not_implemented()


@bp.route("/completion", methods=["POST"])
async def pending_5(**_: str) -> Response:
    return not_implemented()
