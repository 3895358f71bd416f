"""The app's request class: Quart's, made safe against two kinds of hostile body.

**Size.** A request body that enforces ``MAX_CONTENT_LENGTH`` on the bytes received, however
they come.
Quart checks the limit against ``Content-Length`` up front and against the bytes *buffered*
while reading; a streamed reader (the multipart parser behind ``request.files``) empties that
buffer as it goes, so a chunked upload without ``Content-Length`` passed any limit. This body
counts every byte it is handed instead, and fails the request the moment the total passes the
limit: the route's read raises 413 before anything is stored (never a body cut short and
parsed as if it were whole).
"""

from __future__ import annotations

from typing import Any

from quart.wrappers.request import Body, Request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge


class CountedBody(Body):
    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._received = 0

    def append(self, data: bytes) -> None:
        if self._must_raise is not None:
            return
        self._received += len(data)
        if self._max_content_length is not None and self._received > self._max_content_length:
            self._data.clear()
            self._must_raise = RequestEntityTooLarge()
            self.set_complete()
            return
        super().append(data)

    async def __anext__(self) -> bytes:
        """Quart's reader checks for a failure only before it waits for data, so a limit passed
        while it waited looked like the end of the body (a truncated upload, parsed as if whole)."""
        try:
            return await super().__anext__()
        except StopAsyncIteration:
            if self._must_raise is not None:
                raise self._must_raise from None
            raise


class LimitedRequest(Request):
    """Quart's request with a body that counts what it receives, and JSON parsing that treats an
    undecodable body (invalid UTF-8, a UTF-16 byte-order mark) as bad JSON: Quart decodes the
    text outside the guard that turns bad JSON into ``None``, so such a body escaped as a 500."""

    body_class = CountedBody

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        try:
            return await super().get_json(force=force, silent=silent, cache=cache)
        except UnicodeDecodeError as error:
            if silent:
                return None
            raise BadRequest("The request body is not UTF-8 text.") from error
