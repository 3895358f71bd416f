"""Tenants and their API keys.

A key is shown once and stored only as its SHA-256 digest: a leaked database does not leak
working keys. Keys carry 256 bits of randomness, so an unsalted digest is safe to index and
look up; the final comparison is constant-time all the same.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from api.db.models import ApiToken, Tenant

KEY_PREFIX = "ragline-"
DEFAULT_TENANT_NAME = "default"


@dataclass(frozen=True)
class IssuedKey:
    tenant_id: str
    tenant_name: str
    key: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def get_or_create_tenant(name: str) -> Tenant:
    tenant = Tenant.get_or_none(Tenant.name == name)
    return tenant if tenant is not None else Tenant.create(name=name)


def issue_key(tenant: Tenant, label: str = "") -> IssuedKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    ApiToken.create(tenant_id=tenant.id, token_hash=hash_key(key), prefix=key[:12], name=label)
    return IssuedKey(tenant_id=tenant.id, tenant_name=tenant.name, key=key)


def create_key_for(tenant_name: str, label: str = "") -> IssuedKey:
    """Create the tenant if it does not exist yet, then a new key for it."""
    with Tenant._meta.database.atomic():
        return issue_key(get_or_create_tenant(tenant_name), label)


def tenant_for_key(key: str) -> str | None:
    """The tenant id a presented key belongs to, or None."""
    if not key or len(key) > 256:
        return None
    digest = hash_key(key)
    token = ApiToken.get_or_none(ApiToken.token_hash == digest)
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    return token.tenant_id


def bootstrap_default_tenant() -> IssuedKey | None:
    """On an empty database, create the default tenant and one key so a newcomer can start.

    Returns the new key (to print once), or None when any tenant already exists.
    """
    with Tenant._meta.database.atomic():
        if Tenant.select().exists():
            return None
        return issue_key(get_or_create_tenant(DEFAULT_TENANT_NAME), "bootstrap")



def api_line_of(tenant_id: str) -> str | None:
    """The RAGFlow API line the tenant's client last showed (see ``api.utils.compat``), if any."""
    tenant = Tenant.get_or_none(Tenant.id == tenant_id)
    return tenant.api_line if tenant is not None else None


def set_api_line(tenant_id: str, line: str) -> None:
    Tenant.update(api_line=line).where(Tenant.id == tenant_id).execute()


def list_keys(tenant_id: str, current_digest: str = "") -> list[dict]:
    """The tenant's keys as an operator recognises them (prefix, label, age), newest first;
    ``current`` marks the key whose digest is ``current_digest`` (the one the caller used).

    The digest never leaves this function: a listing must not help anyone forge a key."""
    rows = ApiToken.select().where(ApiToken.tenant_id == tenant_id).order_by(ApiToken.create_time.desc(),
                                                                             ApiToken.id)
    return [{"id": row.id, "name": row.name, "prefix": row.prefix, "create_time": row.create_time,
             "current": hmac.compare_digest(row.token_hash, current_digest)} for row in rows]


class LastKeyError(ValueError):
    """Revoking the tenant's only key would lock it out for good (only the CLI could mint another)."""


def revoke_key(tenant_id: str, key_id: str) -> str | None:
    """Delete the tenant's key ``key_id``; returns its digest (for caches to forget), or None
    when the tenant has no such key. The tenant's last key is refused (``LastKeyError``)."""
    with ApiToken._meta.database.atomic():
        token = ApiToken.get_or_none((ApiToken.id == key_id) & (ApiToken.tenant_id == tenant_id))
        if token is None:
            return None
        if ApiToken.select().where(ApiToken.tenant_id == tenant_id).count() <= 1:
            raise LastKeyError("This is the tenant's last API key; mint another one before revoking it.")
        token.delete_instance()
        return token.token_hash
