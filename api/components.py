"""The parts one Ragline process is made of, built once from the settings and handed down.

Routes reach them through ``components()``, never through module globals, so a test builds
its own set (its own data dir, its own database) and two apps never share state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from quart import current_app

from api.db.database import MetaDB
from api.observability import Metrics
from api.settings import Settings
from api.utils.auth import TenantResolver

EXTENSION_KEY = "ragline"


@dataclass
class Components:
    settings: Settings
    db: MetaDB
    tenant_resolver: TenantResolver
    metrics: Metrics = field(default_factory=Metrics)

    def health_checks(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """One probe per component, each raising when that component is unhealthy."""
        return {"database": lambda: self.db.run(self.db.ping)}


def build_components(settings: Settings) -> Components:
    """Open (lazily) everything the settings describe; nothing here touches the network."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = MetaDB(settings.resolved_database_url, max_connections=settings.worker_threads)
    return Components(settings=settings, db=db, tenant_resolver=TenantResolver(db))


def components() -> Components:
    """The running app's components (inside a request or the app's lifespan)."""
    return current_app.extensions[EXTENSION_KEY]
