"""POST /v1/messages (lands with the gateway issue)."""

from __future__ import annotations

from quart import Blueprint, Response

from api.utils.api_utils import not_implemented

bp = Blueprint("messages", __name__, url_prefix="/v1")


@bp.route("/messages", methods=["POST"])
async def pending_1(**_: str) -> Response:
    return not_implemented()
