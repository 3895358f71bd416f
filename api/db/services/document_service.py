"""Documents of a dataset: upload, list, update, delete, and asking for (re)parsing.

Synchronous functions, run in the worker pool. Every write that spans the database, the
file store and the chunk index is ordered so a failure leaves nothing half-made: files are
stored before their rows are committed (and removed again if the commit fails), and rows are
deleted before their files and chunks (a stray file is invisible; a row without a file is not).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from peewee import fn

from api.db.models import Document, File, Knowledgebase
from api.db.services import task_service
from api.db.services.common import http_date, ordered_page, require_all
from api.db.services.knowledgebase_service import get_owned as get_owned_dataset
from api.db.services.knowledgebase_service import merge_parser_config
from api.errors import ApiError, argument_error, data_error
from rag.app.parsers import SUPPORTED_EXTENSIONS, file_extension
from rag.utils.doc_store_conn import DocStoreConnection, index_name
from rag.utils.storage import Storage, new_key, sanitize_filename

RUN_UNSTART, RUN_RUNNING, RUN_CANCEL, RUN_DONE, RUN_FAIL = "UNSTART", "RUNNING", "CANCEL", "DONE", "FAIL"
# RAGFlow's file type names; anything else a parser accepts is a "doc".
FILE_TYPES = {".pdf": "pdf", ".png": "visual", ".jpg": "visual", ".jpeg": "visual", ".webp": "visual",
              ".bmp": "visual", ".tif": "visual", ".tiff": "visual"}
NAME_QUERY_BATCH = 500  # names per lookup query, well below every backend's limit on parameters


@dataclass(frozen=True)
class Upload:
    """One uploaded file as the route received it."""

    filename: str
    data: bytes


def to_api(doc: Document) -> dict[str, Any]:
    return {
        "id": doc.id,
        "name": doc.name,
        "dataset_id": doc.kb_id,
        "chunk_method": doc.parser_id,
        "parser_config": doc.parser_config,
        "meta_fields": doc.meta_fields,
        "run": doc.run,
        "status": "1" if doc.enabled else "0",
        "size": doc.size,
        "type": doc.type,
        "suffix": doc.suffix,
        "location": doc.name,
        "source_type": "local",
        "thumbnail": None,
        "created_by": doc.tenant_id,
        "chunk_count": doc.chunk_num,
        "token_count": doc.token_num,
        "progress": doc.progress,
        "progress_msg": doc.progress_msg,
        "process_begin_at": http_date(doc.process_begin_at),
        "process_duration": doc.process_duration,
        "create_time": doc.create_time,
        "create_date": http_date(doc.create_time),
        "update_time": doc.update_time,
        "update_date": http_date(doc.update_time),
    }


def check_uploads(uploads: list[Upload]) -> list[tuple[str, Upload]]:
    """Sanitised names for every upload, or an argument error naming the first bad file.

    Checked for the whole batch before anything is stored, so one bad file stores nothing.
    """
    if not uploads:
        raise argument_error("No file part!")
    checked = []
    for upload in uploads:
        if not upload.filename:
            raise argument_error("No file selected!")
        name = sanitize_filename(upload.filename)
        extension = file_extension(name)
        if extension not in SUPPORTED_EXTENSIONS:
            shown = extension or "(no extension)"
            raise argument_error(
                f"This type of file has not been supported yet: {shown} ({name}). "
                f"Supported: {', '.join(SUPPORTED_EXTENSIONS)}."
            )
        if not upload.data:
            raise argument_error(f"The file {name} is empty.")
        checked.append((name, upload))
    return checked


def _taken_names(kb_id: str, names: list[str]) -> set[str]:
    """Which of ``names`` (lowercased) the dataset already has: one query for a whole upload,
    instead of one scan of the dataset's documents per file (uploads grew quadratically)."""
    lowered = sorted({name.lower() for name in names})
    taken: set[str] = set()
    for start in range(0, len(lowered), NAME_QUERY_BATCH):
        batch = lowered[start:start + NAME_QUERY_BATCH]
        query = Document.select(fn.LOWER(Document.name)).where(
            (Document.kb_id == kb_id) & (fn.LOWER(Document.name).in_(batch)))
        taken.update(name for (name,) in query.tuples())
    return taken


def _unique_name(kb_id: str, name: str, taken: set[str]) -> str:
    """``name``, or ``stem(1).ext``, ``stem(2).ext``... when the dataset already has it.

    ``taken`` holds the names of this upload so far and those of the dataset among its files;
    a renamed candidate is looked up on its own (rare).
    """
    stem, extension = os.path.splitext(name)
    candidate, counter = name, 0
    while candidate.lower() in taken or (counter and Document.select().where(
        (Document.kb_id == kb_id) & (fn.LOWER(Document.name) == candidate.lower())
    ).exists()):
        counter += 1
        candidate = f"{stem}({counter}){extension}"
    taken.add(candidate.lower())
    return candidate


def upload(tenant_id: str, kb_id: str, uploads: list[Upload], storage: Storage) -> list[dict[str, Any]]:
    kb = get_owned_dataset(tenant_id, kb_id)
    checked = check_uploads(uploads)
    keys = [new_key() for _ in checked]
    try:
        for key, (_, item) in zip(keys, checked, strict=True):
            storage.put(key, item.data)
        with Document._meta.database.atomic():
            documents = _create_rows(kb, checked, keys)
    except Exception:
        for key in keys:
            storage.delete(key)
        raise
    return [to_api(doc) for doc in documents]


def _create_rows(kb: Knowledgebase, checked: list[tuple[str, Upload]], keys: list[str]) -> list[Document]:
    taken = _taken_names(kb.id, [name for name, _ in checked])
    documents = []
    for key, (name, item) in zip(keys, checked, strict=True):
        name = _unique_name(kb.id, name, taken)
        extension = file_extension(name)
        stored = File.create(tenant_id=kb.tenant_id, name=name, location=key, size=len(item.data),
                             type=extension.lstrip("."))
        documents.append(Document.create(
            tenant_id=kb.tenant_id, kb_id=kb.id, file_id=stored.id, name=name, type=FILE_TYPES.get(extension, "doc"),
            suffix=extension.lstrip("."), size=len(item.data), location=key, parser_id=kb.parser_id,
            parser_config=kb.parser_config,
        ))
    Knowledgebase.update(doc_num=Knowledgebase.doc_num + len(documents)).where(Knowledgebase.id == kb.id).execute()
    return documents


def get_owned(tenant_id: str, kb_id: str, doc_id: str) -> Document:
    get_owned_dataset(tenant_id, kb_id)
    doc = Document.get_or_none((Document.id == doc_id) & (Document.kb_id == kb_id) & (Document.tenant_id == tenant_id))
    if doc is None:
        raise data_error(f"You don't own the document {doc_id}.")
    return doc


RUN_CODES = {"0": RUN_UNSTART, "1": RUN_RUNNING, "2": RUN_CANCEL, "3": RUN_DONE, "4": RUN_FAIL}


def _not_owned_document(what: str) -> ApiError:
    """RAGFlow's list answer for an unknown id or name. Its HTTP cases compare the sentence
    exactly and its SDK cases look for it without the period, so one wording serves both lines."""
    return data_error(f"You don't own the document {what}.")


def _run_states(runs: list[str] | None) -> list[str]:
    """``run`` filter values as stored states; RAGFlow accepts the names and the digits 0-4."""
    states = [RUN_CODES.get(value, value.upper()) for value in runs or []]
    invalid = [value for value, state in zip(runs or [], states, strict=True) if state not in RUN_CODES.values()]
    if invalid:
        raise data_error(f"Invalid filter run status conditions: {', '.join(invalid)}")
    return states


def list_page(tenant_id: str, kb_id: str, *, page: int, page_size: int, orderby: str, desc: bool,
              doc_id: str | None = None, doc_ids: list[str] | None = None, name: str | None = None,
              keywords: str | None = None, create_time_from: int = 0, create_time_to: int = 0,
              suffixes: list[str] | None = None, runs: list[str] | None = None) -> tuple[list[dict[str, Any]], int]:
    """A page of a dataset's documents. ``id``, ``ids`` and ``name`` must name documents of the
    dataset (102 otherwise); the other filters may match nothing."""
    get_owned_dataset(tenant_id, kb_id)
    mine = Document.select().where((Document.kb_id == kb_id) & (Document.tenant_id == tenant_id))
    wanted = ([doc_id] if doc_id is not None else []) + list(doc_ids or [])
    if wanted:
        found = {row.id for row in mine.where(Document.id.in_(wanted))}
        missing = [item for item in wanted if item not in found]
        if missing:
            raise _not_owned_document(missing[0])
    if name is not None and not mine.where(Document.name == name).exists():
        raise _not_owned_document(name)
    query = mine
    if wanted:
        query = query.where(Document.id.in_(wanted))
    if name is not None:
        query = query.where(Document.name == name)
    if keywords:
        query = query.where(fn.LOWER(Document.name).contains(keywords.lower()))
    if suffixes:
        query = query.where(fn.LOWER(Document.suffix).in_([suffix.lower().lstrip(".") for suffix in suffixes]))
    if runs:
        query = query.where(Document.run.in_(_run_states(runs)))
    if create_time_from:
        query = query.where(Document.create_time >= create_time_from)
    if create_time_to:
        query = query.where(Document.create_time <= create_time_to)
    total = query.count()
    rows = ordered_page(query, Document, orderby, desc, page, page_size)
    return [to_api(doc) for doc in rows], total


def read_file(tenant_id: str, kb_id: str, doc_id: str, storage: Storage) -> tuple[str, bytes]:
    doc = get_owned(tenant_id, kb_id, doc_id)
    return doc.name, storage.get(doc.location)


DOCUMENT_CHUNK_METHODS = ("naive", "manual", "qa", "table", "paper", "book", "laws", "presentation", "picture",
                          "one", "knowledge_graph", "email", "tag", "resume", "audio")


def _owned_for_update(tenant_id: str, kb_id: str, doc_id: str) -> tuple[Knowledgebase, Document]:
    """The dataset and document an update names, refused in RAGFlow's words."""
    kb = Knowledgebase.get_or_none((Knowledgebase.id == kb_id) & (Knowledgebase.tenant_id == tenant_id))
    if kb is None:
        raise data_error("You don't own the dataset.")
    doc = Document.get_or_none((Document.id == doc_id) & (Document.kb_id == kb_id) & (Document.tenant_id == tenant_id))
    if doc is None:
        raise data_error("The dataset doesn't own the document.")
    return kb, doc


def _rename(doc: Document, kb_id: str, name: str) -> None:
    new_name = sanitize_filename(name) if name else ""
    if not new_name or file_extension(new_name) != file_extension(doc.name):
        raise argument_error("The extension of file can't be changed")
    if new_name != doc.name and Document.select().where(
        (Document.kb_id == kb_id) & (Document.name == new_name) & (Document.id != doc.id)
    ).exists():
        raise data_error("Duplicated document name in the same dataset.")
    doc.name = new_name


def update(tenant_id: str, kb_id: str, doc_id: str, changes: dict[str, Any],
           doc_store: DocStoreConnection) -> dict[str, Any]:
    with Document._meta.database.atomic():
        _, doc = _owned_for_update(tenant_id, kb_id, doc_id)
        if "name" in changes:
            _rename(doc, kb_id, changes["name"])
        chunking_before = (doc.parser_id, doc.parser_config)
        if "chunk_method" in changes:
            method = changes["chunk_method"]
            if method not in DOCUMENT_CHUNK_METHODS:
                raise data_error(f"`chunk_method` {method} doesn't exist")
            doc.parser_id = method
        if "parser_config" in changes:
            doc.parser_config = merge_parser_config(doc.parser_config or {}, changes["parser_config"])
        if (doc.parser_id, doc.parser_config) != chunking_before and doc.run in (RUN_DONE, RUN_FAIL):
            _requeue_for_new_chunking(tenant_id, kb_id, doc)
        if "meta_fields" in changes:
            doc.meta_fields = changes["meta_fields"]
        enabled_changed = "enabled" in changes and bool(changes["enabled"]) != doc.enabled
        if "enabled" in changes:
            doc.enabled = bool(changes["enabled"])
        doc.save()
    if enabled_changed and doc.chunk_num:
        doc_store.update({"doc_id": doc.id}, {"available_int": int(doc.enabled)}, index_name(tenant_id), kb_id)
    if "name" in changes and doc.chunk_num:
        doc_store.update({"doc_id": doc.id}, {"docnm_kwd": doc.name}, index_name(tenant_id), kb_id)
    return to_api(doc)


def _requeue_for_new_chunking(tenant_id: str, kb_id: str, doc: Document) -> None:
    """A parsed document whose chunk method or settings changed is parsed again, so its chunks
    never disagree with the method it shows; the old chunks stay searchable until the new ones
    replace them."""
    doc.run, doc.progress, doc.progress_msg, doc.process_duration = RUN_RUNNING, 0.0, "Queued: chunking changed", 0.0
    task_service.enqueue_parse(tenant_id, kb_id, [doc.id])


def delete_many(tenant_id: str, kb_id: str, doc_ids: list[str] | None, doc_store: DocStoreConnection,
                storage: Storage) -> dict[str, Any]:
    """Delete documents (every one of the dataset when ``doc_ids`` is None), as RAGFlow does:
    a repeated id is reported in ``errors`` and deleted once; unknown ids are refused (102,
    naming them) after the documents that exist are deleted."""
    requested = list(dict.fromkeys(doc_ids)) if doc_ids is not None else None
    duplicates = sorted({item for item in doc_ids or [] if doc_ids.count(item) > 1})
    with Document._meta.database.atomic():
        get_owned_dataset(tenant_id, kb_id)
        query = Document.select().where((Document.kb_id == kb_id) & (Document.tenant_id == tenant_id))
        if requested is not None:
            query = query.where(Document.id.in_(requested))
        found = list(query) if requested != [] else []
        ids = [doc.id for doc in found]
        if ids:
            task_service.cancel_parse(tenant_id, ids)
            File.delete().where(File.id.in_([doc.file_id for doc in found if doc.file_id])).execute()
            Document.delete().where(Document.id.in_(ids)).execute()
            Knowledgebase.update(
                doc_num=Knowledgebase.doc_num - len(found),
                chunk_num=Knowledgebase.chunk_num - sum(doc.chunk_num for doc in found),
                token_num=Knowledgebase.token_num - sum(doc.token_num for doc in found),
            ).where(Knowledgebase.id == kb_id).execute()
    remove_artifacts(tenant_id, kb_id, found, doc_store, storage)
    missing = [item for item in requested or [] if item not in set(ids)]
    if missing:
        raise data_error(f"Documents not found: {missing}")
    errors = [f"Duplicate document ids: {', '.join(duplicates)}"] if duplicates else []
    return {"success_count": len(found), "errors": errors}


def remove_artifacts(tenant_id: str, kb_id: str, documents: list[Document], doc_store: DocStoreConnection,
                     storage: Storage) -> None:
    """Drop the chunks and stored files of documents whose rows are already gone."""
    if not documents:
        return
    if doc_store.index_exist(index_name(tenant_id), kb_id):
        doc_store.delete({"doc_id": [doc.id for doc in documents]}, index_name(tenant_id), kb_id)
    for doc in documents:
        storage.delete(doc.location)


def queue_parsing(tenant_id: str, kb_id: str, doc_ids: list[str]) -> None:
    """Mark the documents RUNNING and queue one parse task each (replacing unfinished ones).

    As RAGFlow does, the documents that exist are queued even when some ids are unknown; the
    unknown ones are then refused (102) in RAGFlow's words, naming them as a list."""
    if not doc_ids:
        raise data_error("`document_ids` is required")
    wanted = list(dict.fromkeys(doc_ids))
    with Document._meta.database.atomic():
        get_owned_dataset(tenant_id, kb_id)
        found = {doc.id for doc in Document.select(Document.id).where(
            (Document.kb_id == kb_id) & (Document.tenant_id == tenant_id) & (Document.id.in_(wanted)))}
        queued = [doc_id for doc_id in wanted if doc_id in found]
        if queued:
            Document.update(run=RUN_RUNNING, progress=0.0, progress_msg="Queued", process_duration=0.0).where(
                Document.id.in_(queued)
            ).execute()
            task_service.enqueue_parse(tenant_id, kb_id, queued)
    missing = [doc_id for doc_id in wanted if doc_id not in found]
    if missing:
        raise data_error(f"Documents not found: {missing}")


def cancel_parsing(tenant_id: str, kb_id: str, doc_ids: list[str]) -> None:
    if not doc_ids:
        raise data_error("`document_ids` is required")
    with Document._meta.database.atomic():
        documents = _owned_ids(tenant_id, kb_id, doc_ids)
        idle = [doc.name for doc in documents if doc.run != RUN_RUNNING]
        if idle:
            raise data_error(f"Can't stop parsing documents that are not being parsed: {', '.join(idle)}.")
        task_service.cancel_parse(tenant_id, doc_ids)
        Document.update(run=RUN_CANCEL, progress_msg="Cancelled").where(Document.id.in_(doc_ids)).execute()


def _owned_ids(tenant_id: str, kb_id: str, doc_ids: list[str]) -> list[Document]:
    get_owned_dataset(tenant_id, kb_id)
    found = list(Document.select().where(
        (Document.kb_id == kb_id) & (Document.tenant_id == tenant_id) & (Document.id.in_(doc_ids))
    ))
    require_all(doc_ids, (doc.id for doc in found), "You don't own the document(s)")
    return found

