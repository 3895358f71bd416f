"""Chunk listing, add, update and delete (lands with the ingestion issue)."""

from __future__ import annotations

from quart import Blueprint, Response

from api.utils.api_utils import not_implemented

bp = Blueprint("chunks", __name__, url_prefix="/api/v1/datasets")


@bp.route("/<dataset_id>/documents/<doc_id>/chunks", methods=["GET"])
async def pending_1(**_: str) -> Response:
    return not_implemented()


@bp.route("/<dataset_id>/documents/<doc_id>/chunks", methods=["POST"])
async def pending_2(**_: str) -> Response:
    return not_implemented()


@bp.route("/<dataset_id>/documents/<doc_id>/chunks/<chunk_id>", methods=["PUT"])
async def pending_3(**_: str) -> Response:
    return not_implemented()


@bp.route("/<dataset_id>/documents/<doc_id>/chunks", methods=["DELETE"])
async def pending_4(**_: str) -> Response:
    return not_implemented()
