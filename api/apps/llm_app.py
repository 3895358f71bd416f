"""LLM gateway routes: generate, stream and background jobs (lands with the gateway issue)."""

from __future__ import annotations

from quart import Blueprint, Response

from api.utils.api_utils import not_implemented

bp = Blueprint("llm", __name__, url_prefix="/api/v1/llm")


@bp.route("/generate", methods=["POST"])
async def pending_1(**_: str) -> Response:
    return not_implemented()


@bp.route("/stream", methods=["POST"])
async def pending_2(**_: str) -> Response:
    return not_implemented()


@bp.route("/jobs", methods=["POST"])
async def pending_3(**_: str) -> Response:
    return not_implemented()


@bp.route("/jobs/<job_id>", methods=["GET"])
async def pending_4(**_: str) -> Response:
    return not_implemented()
