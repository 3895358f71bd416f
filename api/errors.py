"""Typed errors that services raise and the API edge renders as the error envelope.

Services raise them with a RAGFlow return code; routes never build error responses by hand.
"""

from __future__ import annotations

from enum import IntEnum


class RetCode(IntEnum):
    SUCCESS = 0
    EXCEPTION_ERROR = 100
    ARGUMENT_ERROR = 101
    DATA_ERROR = 102
    OPERATING_ERROR = 103
    PERMISSION_ERROR = 108
    AUTHENTICATION_ERROR = 109
    UNAUTHORIZED = 401  # RAGFlow v0.27's code for a request that presents no API key
    NOT_FOUND = 404  # RAGFlow's code for a route or feature that is not there


class ApiError(Exception):
    """An error the client caused or must know about; rendered as the error envelope.

    ``http_status`` forces a status (413, 429, 404 for unknown routes) on every route family.
    """

    def __init__(self, code: int, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.http_status = http_status


def argument_error(message: str) -> ApiError:
    return ApiError(RetCode.ARGUMENT_ERROR, message)


def data_error(message: str) -> ApiError:
    return ApiError(RetCode.DATA_ERROR, message)
