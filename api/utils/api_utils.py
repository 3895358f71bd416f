"""The API's envelope, its error type and the small parsing helpers every route shares.

RAGFlow clients read ``code`` rather than the HTTP status, so errors on the RAGFlow-shaped
``/api/v1`` routes travel as HTTP 200 with a non-zero code; the other route families use the
HTTP status a plain HTTP client expects. ``ApiError`` carries both and ``error_status`` picks.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from quart import Response, jsonify, request

from api.errors import ApiError, RetCode, argument_error
from api.utils.llm_bridge import SyncLLMWrapper as SyncLLMWrapper  # DESIGN.md looks for it here

ModelT = TypeVar("ModelT", bound=BaseModel)


HTTP_STATUS_FOR_CODE: dict[int, int] = {
    RetCode.EXCEPTION_ERROR: 500,
    RetCode.ARGUMENT_ERROR: 400,
    RetCode.DATA_ERROR: 404,
    RetCode.OPERATING_ERROR: 409,
    RetCode.PERMISSION_ERROR: 403,
    RetCode.AUTHENTICATION_ERROR: 401,
}

# Route families that are not RAGFlow's: their errors use real HTTP statuses.
PLAIN_HTTP_PREFIXES = ("/v1/", "/api/v1/llm/", "/api/v1/chats_openai/", "/api/v1/openai/", "/ws")


def uses_plain_http(path: str) -> bool:
    return path.startswith(PLAIN_HTTP_PREFIXES)


def error_status(error: ApiError, path: str) -> int:
    if error.http_status is not None:
        return error.http_status
    if not uses_plain_http(path):
        return 200
    return HTTP_STATUS_FOR_CODE.get(error.code, 400)


def ok(data: Any = True, **extra: Any) -> Response:
    """The success envelope; ``extra`` adds top-level keys such as ``total_datasets``."""
    return jsonify({"code": RetCode.SUCCESS, "data": data, "message": "success", **extra})


def error_body(code: int, message: str) -> dict[str, Any]:
    return {"code": int(code), "message": message}


def describe_validation_error(error: ValidationError) -> str:
    """One sentence naming each bad field, for the envelope's ``message``."""
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{field}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


# Numbers a client may send: JSON-safe integers (what JavaScript and every database column we
# bind them to hold), and pages no list reaches (page × page_size must stay a 64-bit offset).
MAX_SAFE_INTEGER = 2**53 - 1
MAX_PAGE = 1_000_000_000


def validate(model: type[ModelT], data: Any) -> ModelT:
    try:
        validated = model.model_validate(data)
    except ValidationError as error:
        raise argument_error(describe_validation_error(error)) from None
    problem = _out_of_range(validated.model_dump(), "")
    if problem:
        raise argument_error(problem)
    return validated


def _out_of_range(value: Any, where: str) -> str | None:
    """The first integer in ``value`` that no database can bind (SQLite raised OverflowError on
    them, a 500), as a sentence naming its field; None when every number is in range."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        limit = MAX_PAGE if where.rsplit(".", 1)[-1] == "page" else MAX_SAFE_INTEGER
        return None if -limit <= value <= limit else f"{where or 'value'}: must be between {-limit} and {limit}"
    if isinstance(value, dict):
        items = ((f"{where}.{key}" if where else str(key), item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{where}.{index}" if where else str(index), item) for index, item in enumerate(value))
    else:
        return None
    return next((found for path, item in items if (found := _out_of_range(item, path))), None)


async def json_body(model: type[ModelT]) -> ModelT:
    """The request's JSON body validated against ``model``; bad JSON is an argument error."""
    data = await request.get_json(force=True, silent=True)
    if data is None:
        raw = await request.get_data()
        if raw.strip():
            raise argument_error("The request body is not valid JSON.")
        data = {}
    if not isinstance(data, dict):
        raise argument_error("The request body must be a JSON object.")
    return validate(model, data)


def query_args(model: type[ModelT]) -> ModelT:
    """Query-string parameters validated against ``model`` (empty values count as absent)."""
    return validate(model, {key: value for key, value in request.args.items() if value != ""})


def parse_bool(value: Any) -> Any:
    """Query strings spell booleans many ways (requests sends ``True``); accept the usual ones."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
    return value


class ListQuery(BaseModel):
    """The paging, ordering and filtering parameters every list route takes."""

    model_config = ConfigDict(extra="ignore")

    page: int = Field(1, ge=1)
    page_size: int = Field(30, ge=1, le=1000)
    orderby: Literal["create_time", "update_time"] = "create_time"
    desc: Annotated[bool, BeforeValidator(parse_bool)] = True
    id: str | None = None
    name: str | None = None


MAX_MESSAGE_CHARS = 100_000  # one chat message or question, on every door


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


NonBlank = Annotated[str, AfterValidator(_not_blank)]


def require_user_question(messages: list[Any]) -> None:
    """Chat doors that take a message list answer its last turn, which must be a question."""
    last = messages[-1]
    if last.role != "user" or not last.content.strip():
        raise ValueError("the last message must be a non-empty user message")


def sse_event(data: Any, event: str | None = None) -> str:
    """One Server-Sent Event (``event:`` line when named) with a JSON ``data:`` line."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"
