"""Document metadata: the filter language of RAGFlow's ``metadata_condition``, the dataset
summaries built from ``Document.meta_fields``, and batch edits of those fields.

Filtering works on the metadata database only: a condition becomes the set of documents it
matches, and retrieval passes that set on as its ``doc_ids`` filter, which the embedded index
and Elasticsearch both already apply. So one evaluation serves every doc store.

The evaluation (``document_matches``) is pure and follows RAGFlow's ``meta_filter`` in names and
semantics: operator aliases (``is`` → ``=``, ``not is`` → ``≠``, ``>=`` → ``≥``...), strings
compared without case, numbers compared as numbers, ``YYYY-MM-DD`` dates compared only with
dates. Where RAGFlow's results depend on an accident of its implementation, Ragline chooses the
reading a user expects, and says so below:

- a list-valued field matches a positive operator when *any* element does, and a negative one
  (``≠``, ``not contains``, ``not in``) when *no* element matches its positive twin;
- a document without the field never matches, except ``empty``, which a missing field is;
- ``in``/``not in`` take a list, or a comma-separated string, of values (RAGFlow tests a
  substring of that string);
- a condition with no conditions filters nothing; ``logic: and`` with a first condition that
  matches nothing matches nothing (RAGFlow then keeps the next condition's documents).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from api.db.models import Document, Knowledgebase
from api.db.services.knowledgebase_service import get_owned as get_owned_dataset
from api.errors import ApiError, RetCode, argument_error, data_error

OPERATOR_ALIASES = {
    "is": "=", "==": "=", "equals": "=", "not is": "≠", "!=": "≠", "<>": "≠", ">=": "≥", "<=": "≤",
    "starts with": "start with", "ends with": "end with", "is empty": "empty", "is not empty": "not empty",
}
OPERATORS = frozenset({"contains", "not contains", "in", "not in", "start with", "end with", "empty", "not empty",
                       "=", "≠", ">", "<", "≥", "≤"})
NEGATIONS = {"≠": "=", "not contains": "contains", "not in": "in"}
ORDERINGS = {">", "<", "≥", "≤"}
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_CONDITIONS = 256


class MetadataRule(BaseModel):
    """One comparison; RAGFlow's API spells it ``name``/``comparison_operator``, its chat
    filters ``key``/``op``; both are read."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(..., min_length=1, max_length=255)
    comparison_operator: str
    value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = dict(data)
            data.setdefault("name", data.get("key"))
            data.setdefault("comparison_operator", data.get("op"))
            if data["comparison_operator"] is None:
                # A batch-edit selector names only ``key`` and ``value``: a list is "one of", a value equality.
                data["comparison_operator"] = "in" if isinstance(data.get("value"), list) else "="
        return data

    @model_validator(mode="after")
    def _known_operator(self) -> MetadataRule:
        operator = self.comparison_operator.strip().lower() if self.comparison_operator else ""
        operator = OPERATOR_ALIASES.get(operator, operator)
        if operator not in OPERATORS:
            raise ValueError(f"unknown comparison_operator '{self.comparison_operator}'; "
                             f"use one of: {', '.join(sorted(OPERATORS | set(OPERATOR_ALIASES)))}")
        self.comparison_operator = operator
        return self


class MetadataCondition(BaseModel):
    """``{"logic": "and"|"or", "conditions": [rule...]}``; a chat's ``meta_data_filter``
    (``{"method": "manual", "manual": [...], "logic"}``) is read as the same thing."""

    model_config = ConfigDict(extra="ignore")

    logic: Literal["and", "or"] = "and"
    conditions: list[MetadataRule] = Field(default_factory=list, max_length=MAX_CONDITIONS)

    @model_validator(mode="before")
    @classmethod
    def _chat_filter_shape(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = dict(data)
            if "conditions" not in data and isinstance(data.get("manual"), list):
                data["conditions"] = data["manual"]
            if isinstance(data.get("logic"), str):
                data["logic"] = data["logic"].strip().lower() or "and"
            elif data.get("logic") is None:
                data.pop("logic", None)
        return data


def parse_condition(raw: Any) -> MetadataCondition | None:
    """The condition a request carries (``None`` when it carries none); bad ones are 101."""
    if raw is None or isinstance(raw, MetadataCondition):
        return raw
    if not isinstance(raw, Mapping):
        raise argument_error("metadata_condition must be an object.")
    try:
        condition = MetadataCondition.model_validate(raw)
    except ValidationError as error:
        details = "; ".join(f"{'.'.join(str(p) for p in item['loc']) or 'metadata_condition'}: "
                            f"{item['msg'].removeprefix('Value error, ')}" for item in error.errors())
        raise argument_error(f"metadata_condition: {details}") from None
    return condition


def is_filtering(condition: MetadataCondition | None) -> bool:
    return condition is not None and bool(condition.conditions)


# ---- evaluation (pure) ---------------------------------------------------------------------

def document_matches(meta_fields: Mapping[str, Any] | None, condition: MetadataCondition | None) -> bool:
    """Whether one document's metadata satisfies the condition (no condition: it does)."""
    if not is_filtering(condition):
        return True
    meta = meta_fields or {}
    results = (rule_matches(meta, rule) for rule in condition.conditions)
    return all(results) if condition.logic == "and" else any(results)


def rule_matches(meta: Mapping[str, Any], rule: MetadataRule) -> bool:
    operator = rule.comparison_operator
    present = rule.name in meta and meta[rule.name] is not None
    if operator in ("empty", "not empty"):
        empty = not present or _is_empty(meta[rule.name])
        return empty if operator == "empty" else not empty
    if not present:
        return False
    values = meta[rule.name] if isinstance(meta[rule.name], list) else [meta[rule.name]]
    if operator in NEGATIONS:
        positive = NEGATIONS[operator]
        return not any(_value_matches(v, positive, rule.value) for v in values)
    return any(_value_matches(v, operator, rule.value) for v in values)


def _is_empty(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value in ([], {}) or value is None


def _value_matches(stored: Any, operator: str, wanted: Any) -> bool:
    if operator == "contains":
        return _text(wanted) in _text(stored)
    if operator == "start with":
        return _text(stored).startswith(_text(wanted))
    if operator == "end with":
        return _text(stored).endswith(_text(wanted))
    if operator == "in":
        return _text(stored) in {_text(item) for item in _members(wanted)}
    return _compare(stored, operator, wanted)


def _members(wanted: Any) -> list[Any]:
    if isinstance(wanted, (list, tuple, set)):
        return list(wanted)
    if isinstance(wanted, str):
        return [part.strip() for part in wanted.split(",")]
    return [wanted]


def _compare(stored: Any, operator: str, wanted: Any) -> bool:
    """``=``, ``>``... : dates with dates, numbers with numbers, else text without case."""
    if _is_date(wanted):
        if not _is_date(stored):
            return False
        left, right = str(stored).strip(), str(wanted).strip()
    else:
        left, right = _number(stored), _number(wanted)
        if left is None or right is None:
            if operator in ORDERINGS and (left is None) != (right is None):
                return False  # a number and a word have no order
            left, right = _text(stored), _text(wanted)
    if operator == "=":
        return left == right
    if operator == ">":
        return left > right
    if operator == "<":
        return left < right
    if operator == "≥":
        return left >= right
    return left <= right  # "≤"


def _is_date(value: Any) -> bool:
    return isinstance(value, str) and bool(DATE.match(value.strip()))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
        if isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
            return float(parsed)
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip().lower()


# ---- the metadata database ---------------------------------------------------------------

def _documents(tenant_id: str, kb_ids: Iterable[str]) -> Iterable[tuple[str, dict[str, Any] | None]]:
    query = Document.select(Document.id, Document.meta_fields).where(
        (Document.tenant_id == tenant_id) & Document.kb_id.in_(list(kb_ids)))
    return query.tuples().iterator()


def matching_document_ids(tenant_id: str, kb_ids: list[str], condition: Any) -> list[str]:
    """The ids of the tenant's documents in ``kb_ids`` whose ``meta_fields`` match ``condition``.

    ``condition`` is a ``MetadataCondition`` or its JSON (either RAGFlow shape); without
    conditions every document matches. An empty list means no document matches: callers must
    then return nothing, not search unfiltered. Synchronous: run it in the worker pool.
    """
    parsed = parse_condition(condition)
    if not kb_ids:
        return []
    return [doc_id for doc_id, meta in _documents(tenant_id, kb_ids) if document_matches(meta, parsed)]


def flattened(tenant_id: str, kb_ids: list[str]) -> dict[str, dict[str, list[str]]]:
    """``{field: {value: [doc_id...]}}`` over the datasets, the shape RAGFlow's
    ``/datasets/metadata/flattened`` answers (list values count once per element)."""
    result: dict[str, dict[str, list[str]]] = {}
    for doc_id, meta in _documents(tenant_id, kb_ids):
        for key, value in (meta or {}).items():
            for item in _summary_values(value):
                result.setdefault(key, {}).setdefault(item, []).append(doc_id)
    return result


def summary(tenant_id: str, kb_id: str) -> dict[str, dict[str, Any]]:
    """``{field: {"type", "values": [[value, count]...]}}``, most frequent values first."""
    counters: dict[str, Counter[str]] = {}
    kinds: dict[str, set[str]] = {}
    for _, meta in _documents(tenant_id, [kb_id]):
        for key, value in (meta or {}).items():
            items = [v for v in (value if isinstance(value, list) else [value]) if not _is_blank(v)]
            for item in items:
                counters.setdefault(key, Counter())[str(item)] += 1
                kinds.setdefault(key, set()).add(_kind(item))
    return {
        key: {"type": _field_type(kinds[key]),
              "values": [[value, count] for value, count in sorted(counts.items(), key=lambda vc: (-vc[1], vc[0]))]}
        for key, counts in counters.items()
    }


def _summary_values(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [str(item) for item in items if not _is_blank(item) and not isinstance(item, (list, dict))]


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _kind(value: Any) -> str:
    if _number(value) is not None:
        return "number"
    if _is_date(value):
        return "time"
    return "string"


def _field_type(kinds: set[str]) -> str:
    return kinds.pop() if len(kinds) == 1 else "string"


# ---- batch edits ---------------------------------------------------------------------------

class MetadataUpdate(BaseModel):
    """Set ``key`` to ``value``; with ``match`` given (even null), only where it holds ``match``."""

    model_config = ConfigDict(extra="ignore")
    key: str = Field(..., min_length=1)
    value: Any
    match: Any = None


class MetadataDelete(BaseModel):
    """Drop ``key``; with ``value`` given (even null), only that value."""

    model_config = ConfigDict(extra="ignore")
    key: str = Field(..., min_length=1)
    value: Any = None


def selected_documents(tenant_id: str, kb_id: str, document_ids: list[str] | None,
                       condition: MetadataCondition | None) -> list[str]:
    """The dataset's documents a batch edit selects: all of them without ids (an empty list
    selects none), narrowed by the ids and by the condition (both given: the intersection).
    Foreign ids are refused, in RAGFlow's words and code."""
    if document_ids == []:
        return []
    owned = [doc_id for doc_id, meta in _documents(tenant_id, [kb_id]) if document_matches(meta, condition)]
    if document_ids is None:
        return owned
    in_dataset = {doc_id for (doc_id,) in Document.select(Document.id).where(
        (Document.tenant_id == tenant_id) & (Document.kb_id == kb_id) & Document.id.in_(document_ids)).tuples()}
    missing = [doc_id for doc_id in dict.fromkeys(document_ids) if doc_id not in in_dataset]
    if missing:
        raise batch_edit_error(f"These documents do not belong to dataset {kb_id}: {', '.join(missing)}")
    wanted = set(document_ids)
    return [doc_id for doc_id in owned if doc_id in wanted]


def batch_update(tenant_id: str, kb_id: str, doc_ids: list[str], updates: list[MetadataUpdate],
                 deletes: list[MetadataDelete]) -> int:
    """Apply the edits to each selected document; the number of documents that changed."""
    changed = 0
    with Document._meta.database.atomic():
        rows = Document.select(Document.id, Document.meta_fields).where(
            (Document.tenant_id == tenant_id) & (Document.kb_id == kb_id) & Document.id.in_(doc_ids))
        for doc_id, meta in list(rows.tuples()):
            edited = edit_metadata(meta or {}, updates, deletes)
            if edited != (meta or {}):
                Document.update(meta_fields=edited).where(Document.id == doc_id).execute()
                changed += 1
    return changed


def edit_metadata(meta: Mapping[str, Any], updates: list[MetadataUpdate],
                  deletes: list[MetadataDelete]) -> dict[str, Any]:
    """One document's metadata after the edits (pure).

    An update without ``match`` sets the key; with ``match`` it replaces that value only (an
    element, in a list). A delete without ``value`` drops the key; with one, only that value.
    """
    result = {key: list(value) if isinstance(value, list) else value for key, value in meta.items()}
    for update in updates:
        if "match" not in update.model_fields_set:
            result[update.key] = update.value
        elif isinstance(result.get(update.key), list):
            result[update.key] = [update.value if _same(item, update.match) else item for item in result[update.key]]
        elif update.key in result and _same(result[update.key], update.match):
            result[update.key] = update.value
    for delete in deletes:
        if delete.key not in result:
            continue
        if "value" not in delete.model_fields_set:
            del result[delete.key]
        elif isinstance(result[delete.key], list):
            kept = [item for item in result[delete.key] if not _same(item, delete.value)]
            if kept:
                result[delete.key] = kept
            else:
                del result[delete.key]
        elif _same(result[delete.key], delete.value):
            del result[delete.key]
    return result


def _same(stored: Any, given: Any) -> bool:
    return stored == given or _text(stored) == _text(given)


# ---- the routes' units of work (synchronous, run in the worker pool) ----------------------

DEFAULT_CONFIG: dict[str, Any] = {"enabled": False, "fields": []}


def get_config(tenant_id: str, kb_id: str) -> dict[str, Any]:
    """The dataset's auto-metadata config; ``{"enabled": false, "fields": []}`` until set."""
    kb = get_owned_dataset(tenant_id, kb_id)
    return {**DEFAULT_CONFIG, **(kb.auto_metadata_config or {})}


def set_config(tenant_id: str, kb_id: str, config: dict[str, Any]) -> dict[str, Any]:
    """Replace the config (stored in ``Knowledgebase.auto_metadata_config``) and return it."""
    with Knowledgebase._meta.database.atomic():
        kb = get_owned_dataset(tenant_id, kb_id)
        kb.auto_metadata_config = config
        kb.save()
    return {**DEFAULT_CONFIG, **config}


def dataset_summary(tenant_id: str, kb_id: str) -> dict[str, dict[str, Any]]:
    get_owned_dataset(tenant_id, kb_id)
    return summary(tenant_id, kb_id)


def flattened_for(tenant_id: str, kb_ids: list[str]) -> dict[str, dict[str, list[str]]]:
    owned = {kb_id for (kb_id,) in Knowledgebase.select(Knowledgebase.id).where(
        (Knowledgebase.tenant_id == tenant_id) & Knowledgebase.id.in_(kb_ids)).tuples()}
    for kb_id in kb_ids:
        if kb_id not in owned:
            raise data_error(f"No authorization for dataset '{kb_id}'")
    return flattened(tenant_id, list(dict.fromkeys(kb_ids)))


def set_document_config(tenant_id: str, kb_id: str, doc_id: str, metadata: Any) -> dict[str, Any]:
    """A document's own extraction settings, kept in its ``parser_config["metadata"]``."""
    from api.db.services.document_service import to_api as document_to_api

    if Knowledgebase.get_or_none((Knowledgebase.id == kb_id) & (Knowledgebase.tenant_id == tenant_id)) is None:
        raise data_error("You don't own the dataset.")
    with Document._meta.database.atomic():
        doc = Document.get_or_none((Document.id == doc_id) & (Document.kb_id == kb_id)
                                   & (Document.tenant_id == tenant_id))
        if doc is None:
            raise data_error(f"Document {doc_id} not found in dataset {kb_id}")
        doc.parser_config = {**(doc.parser_config or {}), "metadata": metadata}
        doc.save()
    return document_to_api(doc)


@dataclass(frozen=True)
class BatchEdit:
    document_ids: list[str] | None  # None: not given (every document); []: none
    condition: MetadataCondition | None
    updates: list[MetadataUpdate]
    deletes: list[MetadataDelete]


def batch_edit_error(message: str) -> ApiError:
    """RAGFlow refuses a malformed batch edit with code 100 (its HTTP cases assert it)."""
    return ApiError(RetCode.EXCEPTION_ERROR, message)


def batch_edit_of(body: Mapping[str, Any]) -> BatchEdit:
    """A batch edit request checked the way RAGFlow checks it (code 100 and its messages)."""
    selector = body.get("selector") or {}
    updates, deletes = body.get("updates") or [], body.get("deletes") or []
    if not isinstance(selector, Mapping):
        raise batch_edit_error("selector must be an object.")
    if not isinstance(updates, list) or not isinstance(deletes, list):
        raise batch_edit_error("updates and deletes must be lists.")
    raw_condition = selector.get("metadata_condition") or None
    if raw_condition is not None and not isinstance(raw_condition, Mapping):
        raise batch_edit_error("metadata_condition must be an object.")
    document_ids = selector.get("document_ids")
    if document_ids is not None and (not isinstance(document_ids, list)
                                     or not all(isinstance(d, str) for d in document_ids)):
        raise batch_edit_error("document_ids must be a list.")
    if any(not isinstance(u, Mapping) or not u.get("key") or not isinstance(u["key"], str) or "value" not in u
           for u in updates):
        raise batch_edit_error("Each update requires key and value.")
    if any(not isinstance(d, Mapping) or not d.get("key") or not isinstance(d["key"], str) for d in deletes):
        raise batch_edit_error("Each delete requires key.")
    return BatchEdit(document_ids, parse_condition(raw_condition),
                     [MetadataUpdate.model_validate(u) for u in updates],
                     [MetadataDelete.model_validate(d) for d in deletes])


def apply_batch_edit(tenant_id: str, kb_id: str, body: Mapping[str, Any]) -> dict[str, int]:
    """``{"updated": documents changed, "matched_docs": documents selected}``."""
    get_owned_dataset(tenant_id, kb_id)
    edit = batch_edit_of(body)
    doc_ids = selected_documents(tenant_id, kb_id, edit.document_ids, edit.condition)
    if not doc_ids:
        return {"updated": 0, "matched_docs": 0}
    return {"updated": batch_update(tenant_id, kb_id, doc_ids, edit.updates, edit.deletes),
            "matched_docs": len(doc_ids)}
