"""/ws: the WebSocket gateway (lands with the gateway issue; until then it closes politely)."""

from __future__ import annotations

from quart import Blueprint, websocket

bp = Blueprint("ws", __name__)

NOT_IMPLEMENTED_CLOSE_CODE = 1011


@bp.websocket("/ws")
async def socket() -> None:
    await websocket.accept()
    await websocket.send_json({"event": "llm_error", "data": {"error": "/ws is not implemented yet"}})
    await websocket.close(NOT_IMPLEMENTED_CLOSE_CODE)
