"""Datasets (knowledge bases): create, list, update, delete, always within one tenant.

Functions here are synchronous and run in the worker pool (``MetaDB.run``). Every query is
scoped by ``tenant_id``: a dataset of another tenant is indistinguishable from a missing one.
"""

from __future__ import annotations

import copy
from typing import Any

from peewee import IntegrityError

from api.db.models import Document, File, Knowledgebase
from api.db.services import task_service
from api.db.services.common import http_date, ordered_page, require_all
from api.errors import ApiError, RetCode, data_error
from rag.app.naive import BUILTIN_EMBEDDING_CHUNK_TOKENS, DEFAULT_CHUNK_TOKENS, DEFAULT_DELIMITER
from rag.utils.doc_store_conn import DocStoreConnection, index_name
from rag.utils.storage import Storage

RAPTOR_PROMPT = ("Please summarize the following paragraphs. Be careful with the numbers, do not make things "
                 "up. Paragraphs as following:\n      {cluster_content}\nThe above is the content you need to "
                 "summarize.")
DEFAULT_PARSER_CONFIG: dict[str, Any] = {
    "layout_recognize": "DeepDOC",
    "chunk_token_num": DEFAULT_CHUNK_TOKENS,
    "delimiter": DEFAULT_DELIMITER,
    "overlap": 0,
    "auto_keywords": 0,
    "auto_questions": 0,
    "html4excel": False,
    "image_context_size": 0,
    "table_context_size": 0,
    "topn_tags": 3,
    # RAGFlow fills both sections; Ragline builds neither, so both stay off unless a client says otherwise.
    "raptor": {"use_raptor": False, "prompt": RAPTOR_PROMPT, "max_token": 256, "threshold": 0.1,
               "max_cluster": 64, "random_seed": 0},
    "graphrag": {"use_graphrag": False, "entity_types": ["organization", "person", "geo", "event", "category"],
                 "method": "light"},
}
NESTED_SECTIONS = ("raptor", "graphrag", "parent_child")
BUILTIN_EMBEDDING = "all-MiniLM-L6-v2@Builtin"


def default_parser_config(embedding_model: str) -> dict[str, Any]:
    """RAGFlow's defaults, except that chunks for the builtin MiniLM are cut to what it reads.

    all-MiniLM-L6-v2 embeds at most 256 word pieces: a 512-token chunk would be embedded by
    its first half only, and its second half would be found by BM25 alone.
    """
    config = copy.deepcopy(DEFAULT_PARSER_CONFIG)
    if embedding_model == BUILTIN_EMBEDDING:
        config["chunk_token_num"] = BUILTIN_EMBEDDING_CHUNK_TOKENS
    return config


def merge_parser_config(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` over ``base``, section by section for ``raptor``/``graphrag``, so that a client
    that sends ``{"raptor": {"use_raptor": true}}`` keeps the other RAPTOR settings."""
    merged = {**copy.deepcopy(base), **given}
    for section in NESTED_SECTIONS:
        if isinstance(base.get(section), dict) and isinstance(given.get(section), dict):
            merged[section] = {**base[section], **given[section]}
    return merged


def with_sections(config: dict[str, Any] | None) -> dict[str, Any]:
    """A stored parser config as clients expect it: ``raptor`` and ``graphrag`` always present
    (datasets made before they were filled in get RAGFlow's "off" sections)."""
    config = dict(config or {})
    config.setdefault("raptor", {"use_raptor": False})
    config.setdefault("graphrag", {"use_graphrag": False})
    return config


def to_api(kb: Knowledgebase) -> dict[str, Any]:
    """The dataset with every field both ragflow-sdk lines read, plus RAGFlow's other fields."""
    return {
        "id": kb.id,
        "name": kb.name,
        "avatar": kb.avatar,
        "description": kb.description,
        "embedding_model": kb.embd_id,
        "permission": kb.permission,
        "chunk_method": kb.parser_id,
        "parser_config": with_sections(kb.parser_config),
        "auto_metadata_config": kb.auto_metadata_config,
        "chunk_count": kb.chunk_num,
        "document_count": kb.doc_num,
        "token_num": kb.token_num,
        "similarity_threshold": kb.similarity_threshold,
        "vector_similarity_weight": kb.vector_similarity_weight,
        "pagerank": kb.pagerank,
        "language": "English",
        "status": "1",
        "tenant_id": kb.tenant_id,
        "created_by": kb.tenant_id,
        "create_time": kb.create_time,
        "create_date": http_date(kb.create_time),
        "update_time": kb.update_time,
        "update_date": http_date(kb.update_time),
    }


def lacks_permission(tenant_id: str, what: Any) -> ApiError:
    """RAGFlow's words for a dataset the caller does not have (missing or another tenant's)."""
    return data_error(f"User '{tenant_id}' lacks permission for dataset '{what}'")


def _duplicate_name(name: str) -> ApiError:
    return ApiError(RetCode.DATA_ERROR, f"Dataset name '{name}' already exists")


def get_owned(tenant_id: str, kb_id: str) -> Knowledgebase:
    kb = Knowledgebase.get_or_none((Knowledgebase.id == kb_id) & (Knowledgebase.tenant_id == tenant_id))
    if kb is None:
        raise data_error(f"You don't own the dataset {kb_id}.")
    return kb


def get(tenant_id: str, kb_id: str) -> dict[str, Any]:
    kb = Knowledgebase.get_or_none((Knowledgebase.id == kb_id) & (Knowledgebase.tenant_id == tenant_id))
    if kb is None:
        raise lacks_permission(tenant_id, kb_id)
    return to_api(kb)


def create(tenant_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    name = fields["name"]
    parser_config = merge_parser_config(default_parser_config(fields["embedding_model"]),
                                        fields.get("parser_config") or {})
    try:
        with Knowledgebase._meta.database.atomic():
            kb = Knowledgebase.create(
                tenant_id=tenant_id, name=name, name_key=name.lower(), avatar=fields.get("avatar"),
                description=fields.get("description"), embd_id=fields["embedding_model"],
                permission=fields.get("permission") or "me", parser_id=fields.get("chunk_method") or "naive",
                parser_config=parser_config, pagerank=fields.get("pagerank") or 0,
                auto_metadata_config=fields.get("auto_metadata_config"),
            )
    except IntegrityError:
        raise _duplicate_name(name) from None
    return to_api(kb)


def list_page(tenant_id: str, *, page: int, page_size: int, orderby: str, desc: bool,
              kb_id: str | None = None, kb_ids: list[str] | None = None,
              name: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """A page of the tenant's datasets. Each filter must name datasets the tenant has (RAGFlow
    answers 102 otherwise); together they may match nothing (an id with another's name)."""
    mine = Knowledgebase.select().where(Knowledgebase.tenant_id == tenant_id)
    wanted = [kb_id] if kb_id is not None else list(dict.fromkeys(kb_ids or []))
    if wanted:
        found = {row.id for row in mine.where(Knowledgebase.id.in_(wanted))}
        missing = [item for item in wanted if item not in found]
        if missing:
            raise lacks_permission(tenant_id, missing[0] if kb_id is not None else ", ".join(missing))
    if name is not None and not mine.where(Knowledgebase.name_key == name.lower()).exists():
        raise lacks_permission(tenant_id, name)
    query = mine
    if wanted:
        query = query.where(Knowledgebase.id.in_(wanted))
    if name is not None:
        query = query.where(Knowledgebase.name_key == name.lower())
    total = query.count()
    rows = ordered_page(query, Knowledgebase, orderby, desc, page, page_size)
    return [to_api(kb) for kb in rows], total


def update(tenant_id: str, kb_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Change the sent fields. An empty body changes nothing and says so, as RAGFlow does;
    ``parser_config: null`` (or ``{}``) restores the defaults, anything else is merged in."""
    if not changes:
        raise data_error("no properties were modified")
    with Knowledgebase._meta.database.atomic():
        kb = Knowledgebase.get_or_none((Knowledgebase.id == kb_id) & (Knowledgebase.tenant_id == tenant_id))
        if kb is None:
            raise lacks_permission(tenant_id, kb_id)
        if "embedding_model" in changes and changes["embedding_model"] != kb.embd_id and kb.chunk_num > 0:
            raise data_error(f"When chunk_num ({kb.chunk_num}) > 0, embedding_model must remain {kb.embd_id}")
        field_names = {"embedding_model": "embd_id", "chunk_method": "parser_id"}
        for key, value in changes.items():
            if key == "parser_config":
                embedding = changes.get("embedding_model", kb.embd_id)
                value = merge_parser_config(with_sections(kb.parser_config), value) if value else \
                    default_parser_config(embedding)
            setattr(kb, field_names.get(key, key), value)
        if "name" in changes:
            kb.name_key = changes["name"].lower()
        try:
            kb.save()
        except IntegrityError:
            raise _duplicate_name(changes["name"]) from None
    return to_api(kb)


def record_field_map(kb_id: str, fields: dict[str, str]) -> None:
    """Merge a parsed table's typed fields (field → column header) into the dataset's
    ``parser_config.field_map``, as RAGFlow's table parser does; earlier documents' fields stay."""
    if not fields:
        return
    with Knowledgebase._meta.database.atomic():
        kb = Knowledgebase.get_or_none(Knowledgebase.id == kb_id)
        if kb is None:
            return
        config = dict(kb.parser_config or {})
        known = config.get("field_map") if isinstance(config.get("field_map"), dict) else {}
        merged = {**known, **fields}
        if merged != known:
            config["field_map"] = merged
            Knowledgebase.update(parser_config=config).where(Knowledgebase.id == kb_id).execute()


def delete_many(tenant_id: str, kb_ids: list[str] | None, doc_store: DocStoreConnection,
                storage: Storage) -> int:
    """Delete the datasets (all of the tenant's when ``kb_ids`` is None) with their documents,
    files and chunks.

    Validates every id first, so one foreign or unknown id deletes nothing. Rows go first in
    one transaction; chunks and files after, since leftovers of those are invisible.
    """
    if kb_ids == []:
        return 0
    with Knowledgebase._meta.database.atomic():
        query = Knowledgebase.select().where(Knowledgebase.tenant_id == tenant_id)
        if kb_ids is not None:
            query = query.where(Knowledgebase.id.in_(kb_ids))
        found = list(query)
        missing = sorted(set(kb_ids or []) - {kb.id for kb in found})
        if missing:
            raise data_error(f"User '{tenant_id}' lacks permission for datasets: '{', '.join(missing)}'")
        ids = [kb.id for kb in found]
        documents = list(Document.select().where(Document.kb_id.in_(ids))) if ids else []
        if ids:
            task_service.cancel_parse(tenant_id, [doc.id for doc in documents])
            File.delete().where(File.id.in_([doc.file_id for doc in documents if doc.file_id])).execute()
            Document.delete().where(Document.kb_id.in_(ids)).execute()
            Knowledgebase.delete().where(Knowledgebase.id.in_(ids)).execute()
    for kb_id in ids:
        if doc_store.index_exist(index_name(tenant_id), kb_id):
            doc_store.delete_idx(index_name(tenant_id), kb_id)
    for doc in documents:
        storage.delete(doc.location)
    return len(found)


def embedding_model_of(tenant_id: str, kb_ids: list[str]) -> str | None:
    """The embedding model a chat's datasets share (None when none of them exists any more)."""
    kb = Knowledgebase.get_or_none((Knowledgebase.tenant_id == tenant_id) & Knowledgebase.id.in_(kb_ids))
    return None if kb is None else kb.embd_id


def owned_with_one_model(tenant_id: str, kb_ids: list[str]) -> list[Knowledgebase]:
    """The caller's datasets among ``kb_ids``, all of them, sharing one embedding model.

    Chats and retrieval search several datasets with one question vector, which only means
    something when every dataset was embedded by the same model; anything else is 102.
    """
    found = list(Knowledgebase.select().where((Knowledgebase.tenant_id == tenant_id) & Knowledgebase.id.in_(kb_ids)))
    require_all(kb_ids, (kb.id for kb in found), "You don't own the dataset(s)")
    models = {kb.embd_id for kb in found}
    if len(models) > 1:
        raise data_error(f"Datasets use different embedding models ({', '.join(sorted(models))}); "
                         "use datasets of one model together.")
    return found
