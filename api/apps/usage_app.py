"""GET /api/v1/usage: the caller's tokens, cost, errors and latency, grouped by model, chat, day
or A/B arm (``group_by=arm``: only calls of A/B tests, one group per arm; ``chat_id`` narrows any
grouping to one chat assistant).

``from`` and ``to`` bound the rows' creation time as a half-open range ``[from, to)``; each is
either milliseconds since the epoch or an ISO 8601 date/time (UTC when no zone is given), so a
script and a person can both ask. Only the caller's tenant is ever counted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from quart import Blueprint, Response, g

from api.components import components
from api.utils.api_utils import ok, query_args

bp = Blueprint("usage", __name__, url_prefix="/api/v1")


def epoch_ms(value: Any) -> Any:
    """Milliseconds since the epoch from an integer or an ISO 8601 date/time string."""
    if not isinstance(value, str) or value.strip().lstrip("-").isdigit():
        return value
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("must be milliseconds since the epoch or an ISO 8601 date/time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


Millis = Annotated[int, BeforeValidator(epoch_ms)]


class UsageQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    from_ms: Millis | None = None
    to_ms: Millis | None = None
    group_by: Literal["model", "chat", "day", "arm"] = "model"
    chat_id: str | None = Field(None, max_length=32)

    @model_validator(mode="before")
    @classmethod
    def _rename(cls, data: Any) -> Any:
        """``from`` is a Python keyword; the query string's names map onto the fields here."""
        if isinstance(data, dict):
            data = {{"from": "from_ms", "to": "to_ms"}.get(key, key): value for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> UsageQuery:
        if self.from_ms is not None and self.to_ms is not None and self.from_ms >= self.to_ms:
            raise ValueError("`from` must be earlier than `to`")
        return self


def overall(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The sum of the groups; ``cost`` stays None only when no call had a known price."""
    costs = [group["cost"] for group in groups if group["cost"] is not None]
    total: dict[str, Any] = {key: sum(group[key] for group in groups) for key in
                             ("calls", "prompt_tokens", "completion_tokens", "total_tokens", "calls_without_price",
                              "errors")}
    total["cost"] = sum(costs) if costs else None
    timed = [group for group in groups if group["avg_latency_ms"] is not None]
    calls = sum(group["calls"] for group in timed)
    total["avg_latency_ms"] = (round(sum(group["avg_latency_ms"] * group["calls"] for group in timed) / calls, 3)
                               if calls else None)
    total["currency"] = "USD"
    return total


@bp.get("/usage")
async def usage() -> Response:
    query = query_args(UsageQuery)
    groups = await components().usage.totals(g.tenant_id, query.from_ms, query.to_ms, query.group_by, query.chat_id)
    return ok({"group_by": query.group_by, "from": query.from_ms, "to": query.to_ms, "chat_id": query.chat_id,
               "groups": groups, "total": overall(groups)})
