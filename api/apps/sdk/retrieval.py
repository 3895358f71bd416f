"""POST /api/v1/retrieval (lands with the ingestion issue)."""

from __future__ import annotations

from quart import Blueprint, Response

from api.utils.api_utils import not_implemented

bp = Blueprint("retrieval", __name__, url_prefix="/api/v1")


@bp.route("/retrieval", methods=["POST"])
async def pending_1(**_: str) -> Response:
    return not_implemented()
