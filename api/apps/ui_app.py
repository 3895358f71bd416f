"""The web UI: static pages served at ``/`` and ``/ui/...`` from ``api/ui/static``.

The UI is a plain client of the public HTTP API (its scripts send the API key the person
signs in with), so these files are public and hold no data: the auth hook skips this
blueprint (``PUBLIC_BLUEPRINTS`` in ``api.utils.auth``). Every asset comes from here; the
Content-Security-Policy forbids the page from fetching or running anything from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, abort, send_from_directory

STATIC_DIR = Path(__file__).resolve().parents[1] / "ui" / "static"
# 'self' only: no CDN, no web fonts, no inline scripts; inline styles are allowed for the
# progress bars' widths and SVG chart attributes set from scripts.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)

bp = Blueprint("ui", __name__)


def _harden(response: Response) -> Response:
    """Headers every UI file carries: no framing, no sniffing, revalidate on each load (a
    server upgrade must not leave a browser running yesterday's scripts)."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/")
async def index() -> Response:
    return _harden(await send_from_directory(STATIC_DIR, "index.html"))


@bp.get("/ui/")
@bp.get("/ui")
async def ui_index() -> Response:
    return await index()


@bp.get("/ui/<path:filename>")
async def asset(filename: str) -> Response:
    """One file under the static folder; ``send_from_directory`` refuses paths that leave it."""
    if filename.startswith(".") or "/." in filename:
        abort(404)
    return _harden(await send_from_directory(STATIC_DIR, filename))
