"""Serving RAGFlow's v0.22 and v0.27 API lines from one set of routes.

Most differences between the two lines are additive (new routes, new fields), and Ragline
simply serves the union. Two are not, and this module is where they are decided:

- **Delete semantics.** v0.27 clients (ragflow-sdk 0.27 always) send ``delete_all``; then
  ``delete_all: true`` deletes everything in scope and ``ids: null``/``[]`` deletes nothing.
  A body without ``delete_all`` keeps v0.22's meaning (``ids: null`` = everything in scope).
- **List shapes.** ``GET /chats`` answers a bare list in v0.22 and ``{"chats", "total"}`` in
  v0.27, and the two SDKs send byte-identical list requests. So the answer follows what the
  same tenant's *other* requests have shown of its client: a request only a v0.27 client sends
  (a ``PATCH``, a ``delete_all``, a v0.27-shaped chat body, an ``ids``/``owner_ids`` list filter,
  ``keywords`` on the chat list) marks the tenant as speaking v0.27;
  a v0.22-shaped chat body marks it v0.22. An explicit ``X-RAGFlow-API: 0.27`` (or ``0.22``)
  header decides for that request and is remembered too. The line is kept on the tenant's row,
  so a restart does not forget it. Tenants never seen get v0.22, the shape ``API.md`` documents.
- **A missing or wrong API key** is 0/109 in v0.22 and 401 on the routes v0.27 moved to its new
  auth (``auth_line_of_route``). A bad key has no tenant, so on routes answered differently by
  the two lines, the line the client's address last showed decides (in memory; v0.22 when unknown).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Literal

Dialect = Literal["0.22", "0.27"]
DEFAULT_DIALECT: Dialect = "0.22"
DIALECT_HEADER = "X-RAGFlow-API"
MAX_REMEMBERED_TENANTS = 100_000

# Chat-body keys that only one line's clients send.
V027_CHAT_KEYS = frozenset({"llm_id", "llm_setting", "prompt_config", "icon", "meta_data_filter"})
V022_CHAT_KEYS = frozenset({"llm", "prompt", "avatar"})


def ids_to_delete(ids: list[str] | None, delete_all: bool | None) -> list[str] | None:
    """The ids a delete request names, in the convention every delete service takes:
    ``None`` means everything in scope, a list means exactly those (``[]``: nothing).

    ``delete_all`` is ``None`` when the body did not carry it (a v0.22 client)."""
    if delete_all is None:
        return ids
    if delete_all:
        return None
    return list(ids or [])


def dialect_of_body(method: str, path: str, body: Any) -> Dialect | None:
    """What a request's method and JSON body say of its client's API line, if anything."""
    if method == "PATCH":
        return "0.27"
    if not isinstance(body, dict):
        return None
    if method == "DELETE" and "delete_all" in body:
        return "0.27"
    if method in ("POST", "PUT") and _is_chat_path(path):
        keys = body.keys()
        if V027_CHAT_KEYS & keys:
            return "0.27"
        if V022_CHAT_KEYS & keys:
            return "0.22"
    return None


V027_LIST_PARAMS = frozenset({"ids", "owner_ids"})  # list filters v0.22 does not have


def dialect_of_query(method: str, path: str, params: Iterable[str]) -> Dialect | None:
    """What a request's route and query parameters say of its client's API line, if anything."""
    if _is_v027_only_route(method, path):
        return "0.27"
    if method != "GET":
        return None
    names = set(params)
    if V027_LIST_PARAMS & names or ("keywords" in names and _is_chat_path(path)):
        return "0.27"
    return None


def auth_line_of_route(method: str, path: str) -> Dialect | None:
    """The line whose auth-failure answer a route gives whatever the client, if it has one.

    RAGFlow v0.27 moved only some routes to its new auth (401 for a missing or wrong key): its
    own new routes, datasets, chats and most session routes. Documents, chunks, retrieval and
    session deletion still answer as v0.22 did (code 0 / 109). Routes in neither group follow the
    client's line (None)."""
    if _is_v027_only_route(method, path):
        return "0.27"
    rest = path.rstrip("/").split("/")[3:]
    if rest[:1] == ["retrieval"]:
        return "0.22"
    if rest[:1] == ["datasets"] and len(rest) >= 3 and rest[2] in ("documents", "chunks"):
        return "0.22"
    if rest[:1] == ["chats"] and len(rest) == 3 and rest[2] == "sessions" and method == "DELETE":
        return "0.22"
    return None


def _is_v027_only_route(method: str, path: str) -> bool:
    """Routes v0.22 does not have: fetching one object by id, the /documents/parse|stop pair,
    metadata management and the /openai alias."""
    parts = path.rstrip("/").split("/")[1:]
    if parts[:2] != ["api", "v1"] or len(parts) < 3:
        return False
    rest = parts[2:]
    if rest[0] == "openai" or "metadata" in rest or "metadatas" in rest:
        return True
    if method == "GET" and rest[0] in ("datasets", "chats") and len(rest) == 2:
        return True  # GET /datasets/{id}, GET /chats/{id}
    if method == "GET" and rest[0] == "chats" and len(rest) == 4 and rest[2] == "sessions":
        return True
    if method == "GET" and rest[0] == "datasets" and len(rest) == 6 and rest[4] == "chunks":
        return True
    return method == "POST" and rest[0] == "datasets" and rest[2:] in (["documents", "parse"], ["documents", "stop"])


def may_signal_dialect(method: str, path: str) -> bool:
    """Whether reading this request's body could tell its API line (cheap; no body read)."""
    return method in ("PATCH", "DELETE") or (method in ("POST", "PUT") and _is_chat_path(path))


def _is_chat_path(path: str) -> bool:
    parts = path.rstrip("/").split("/")
    return parts[:4] == ["", "api", "v1", "chats"] and len(parts) <= 5


def parse_dialect_header(value: str | None) -> Dialect | None:
    if not value:
        return None
    value = value.strip().lstrip("v")
    if value.startswith("0.27") or value.startswith("0.26") or value.startswith("0.25"):
        return "0.27"
    if value.startswith("0.2"):
        return "0.22"
    return None


class DialectMemory:
    """The API line each tenant's client last showed; bounded, thread-safe, per app."""

    def __init__(self, max_tenants: int = MAX_REMEMBERED_TENANTS) -> None:
        self._seen: OrderedDict[str, Dialect] = OrderedDict()
        self._max = max_tenants
        self._lock = threading.Lock()

    def remember(self, tenant_id: str, dialect: Dialect) -> bool:
        """Note the tenant's line; True when that changed what was known (worth persisting)."""
        with self._lock:
            changed = self._seen.get(tenant_id) != dialect
            self._seen[tenant_id] = dialect
            self._seen.move_to_end(tenant_id)
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
        return changed

    def known(self, tenant_id: str) -> Dialect | None:
        """The tenant's line if this process has seen or loaded it, else None."""
        return self._seen.get(tenant_id)

    def of(self, tenant_id: str | None) -> Dialect:
        if tenant_id is None:
            return DEFAULT_DIALECT
        return self._seen.get(tenant_id, DEFAULT_DIALECT)


# RAGFlow features Ragline does not serve, by the first path segment under /api/v1/.
UNSUPPORTED_FEATURES: dict[str, str] = {
    "agents": "Agents",
    "agents_openai": "Agent completions",
    "agentbots": "Agent bots",
    "chatbots": "Embedded chat bots",
    "searchbots": "Search bots",
    "searches": "Search apps",
    "memories": "Memories",
    "messages": "Memory messages",
    "files": "File management",
    "file": "File management",
    "file2document": "File management",
    "dify": "The Dify retrieval bridge",
    "mcp": "MCP servers",
    "langfuse": "Langfuse tracing",
    "users": "User management",
    "user": "User management",
    "tenant": "Team management",
    "tenants": "Team management",
    "pipelines": "Ingestion pipelines",
    "canvas": "Agent canvases",
}
SERVED = "datasets, documents, chunks, metadata, retrieval, chat assistants, sessions and OpenAI-compatible chat"


def unsupported_feature_message(path: str) -> str | None:
    """The sentence for a request to a RAGFlow feature Ragline does not serve, else ``None``.

    ragflow-sdk 0.27 has methods for agents and memories; their calls should fail with a
    message that says why, not with a bare "no route"."""
    segments = path.strip("/").split("/")
    if segments[:2] != ["api", "v1"] or len(segments) < 3:
        return None
    feature = UNSUPPORTED_FEATURES.get(segments[2])
    if feature is None:
        return None
    return f"Not supported by Ragline: {feature.lower()}. It serves RAGFlow's {SERVED} APIs."
