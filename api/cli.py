"""The ``ragline`` command: serve, keys, database upgrades, ingestion workers and bulk ingest.

A bad setting ends any command with exit status 2 and one line naming it, before anything
is opened or started.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from api.settings import Settings, SettingsError, load_settings

_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} docs [{elapsed}<{remaining}{postfix}]"


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        print(f"ragline: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(_: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    from api.observability import configure_logging
    from api.server import run

    configure_logging(settings.log_level)
    run(settings)
    return 0


def _migrated_database(settings: Settings):
    """The metadata database, brought up to date; returns it and the migrations applied."""
    from api.db.database import MetaDB
    from api.db.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = MetaDB(settings.resolved_database_url, max_connections=2)
    return db, upgrade(db)


def described_database(settings: Settings) -> str:
    """Where the metadata database is, for a person: the SQLite file, or the URL sans password."""
    url = settings.resolved_database_url
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    parsed = urlsplit(url)
    if parsed.password is None:
        return url
    return urlunsplit(parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)))


def missing_sqlite_database(settings: Settings) -> Path | None:
    """The SQLite file the settings name when it does not exist yet (no server ever ran there)."""
    url = settings.resolved_database_url
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    return None if path.exists() else path


def cmd_token_create(args: argparse.Namespace) -> int:
    """A key is only useful in the database the server reads, so a database that does not exist
    yet (the usual sign of running from another directory than ``make run``) is refused unless
    ``--init`` says to create it, and the database written is always named."""
    from api.db.services import tenant_service

    settings = _settings_or_exit()
    missing = missing_sqlite_database(settings)
    if missing is not None and not args.init:
        print(f"ragline: no Ragline database at {missing}. Run this where `make run` runs (its data is "
              f"./data there), or set RAGLINE_DATA_DIR or DATABASE_URL as the server has them; "
              f"--init creates a new database here.", file=sys.stderr)
        return 2
    db, _ = _migrated_database(settings)
    try:
        issued = db.call(tenant_service.create_key_for, args.tenant, args.name)
    finally:
        db.close()
    print(f"database: {described_database(settings)}", file=sys.stderr)
    print(f"tenant {issued.tenant_name} ({issued.tenant_id}): new API key, shown once:")
    print(issued.key)
    return 0


def cmd_db_upgrade(_: argparse.Namespace) -> int:
    db, applied = _migrated_database(_settings_or_exit())
    db.close()
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


@asynccontextmanager
async def _worker_runtime(settings: Settings, threads: int) -> AsyncIterator:
    """Components on a migrated database with a bounded thread pool, as the server sets them up."""
    from concurrent.futures import ThreadPoolExecutor

    from api.components import build_components
    from api.db.migrate import upgrade

    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ragline-worker"))
    parts = build_components(settings)
    try:
        await loop.run_in_executor(None, upgrade, parts.db)
        yield parts
    finally:
        await parts.aclose()


async def _run_worker(settings: Settings, args: argparse.Namespace) -> None:
    from api.apps.llm_app import run_job
    from api.db.services.job_service import KIND_LLM_JOB
    from rag.svr.task_executor import TaskExecutor

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with _worker_runtime(settings, settings.worker_threads) as parts:
        executor = TaskExecutor(parts, concurrency=args.concurrency, worker_id=args.id,
                                poll_interval=args.poll, lease_ms=int(args.lease * 1000),
                                handlers={KIND_LLM_JOB: run_job})
        executor.start()
        print(f"ragline worker {executor.worker_id}: {args.concurrency} parsing at once, "
              f"database {parts.db.backend}", flush=True)
        await stop.wait()
        await executor.stop(grace=settings.graceful_timeout)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    from api.observability import configure_logging

    configure_logging(settings.log_level)
    asyncio.run(_run_worker(settings, args))
    return 0


class IngestAbort(Exception):
    """``ragline ingest`` cannot start: the message says why (bad path, unknown key...)."""


@dataclass
class IngestReport:
    """What one ``ragline ingest`` did, document by document."""

    documents: dict[str, dict] = field(default_factory=dict)  # id -> {name, run, chunk_num, msg}
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) not uploaded
    skipped: list[str] = field(default_factory=list)  # unsupported types found in a folder
    seconds: float = 0.0

    def by_run(self, run: str) -> list[dict]:
        return [doc for doc in self.documents.values() if doc["run"] == run]

    @property
    def failed(self) -> bool:
        return bool(self.refused or self.by_run("FAIL") or self.by_run("CANCEL"))

    def summary(self) -> str:
        done = self.by_run("DONE")
        lines = [
            f"documents: {len(self.documents)} uploaded, {len(done)} done, {len(self.by_run('FAIL'))} failed, "
            f"{len(self.by_run('CANCEL'))} cancelled, {len(self.refused)} refused, {len(self.skipped)} skipped",
            f"chunks: {sum(doc['chunk_num'] for doc in done)} in {self.seconds:.1f}s",
        ]
        lines += [f"FAIL {doc['name']}: {doc['msg']}" for doc in self.by_run("FAIL")]
        lines += [f"CANCEL {doc['name']}: {doc['msg']}" for doc in self.by_run("CANCEL")]
        lines += [f"REFUSED {name}: {reason}" for name, reason in self.refused]
        lines += [f"SKIPPED {name}: unsupported file type" for name in self.skipped]
        return "\n".join(lines)


def _files_to_ingest(path: Path) -> tuple[list[Path], list[str]]:
    """The files to upload and the unsupported ones skipped; a single file is taken as given."""
    from rag.app.parsers import SUPPORTED_EXTENSIONS, file_extension

    if path.is_file():
        return [path], []
    if not path.is_dir():
        raise IngestAbort(f"{path} is neither a file nor a folder")
    found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    wanted = [p for p in found if file_extension(p.name) in SUPPORTED_EXTENSIONS]
    return wanted, [str(p.relative_to(path)) for p in found if p not in set(wanted)]


def _ingest_target(tenant: str | None, key: str | None, dataset: str, embedding_model: str) -> tuple[str, str]:
    """(tenant id, dataset id): the key's or the named tenant; the dataset, created if missing."""
    from api.db.models import Knowledgebase
    from api.db.services import knowledgebase_service, tenant_service

    if key is not None:
        tenant_id = tenant_service.tenant_for_key(key)
        if tenant_id is None:
            raise IngestAbort("the API key is not valid")
    else:
        tenant_id = tenant_service.get_or_create_tenant(tenant or tenant_service.DEFAULT_TENANT_NAME).id
    kb = Knowledgebase.get_or_none((Knowledgebase.tenant_id == tenant_id) & (Knowledgebase.name_key == dataset.lower()))
    if kb is not None:
        return tenant_id, kb.id
    return tenant_id, knowledgebase_service.create(tenant_id, {"name": dataset, "embedding_model": embedding_model})["id"]


def _upload_one(parts, tenant_id: str, kb_id: str, path: Path) -> str:
    """Upload one file (one transaction, so one refused file never takes others with it)."""
    from api.db.services import document_service

    upload = document_service.Upload(filename=path.name, data=path.read_bytes())
    return document_service.upload(tenant_id, kb_id, [upload], parts.storage)[0]["id"]


def _document_states(doc_ids: list[str]) -> dict[str, dict]:
    from api.db.models import Document

    states = {}
    for start in range(0, len(doc_ids), 500):
        query = Document.select(Document.id, Document.name, Document.run, Document.progress,
                                Document.chunk_num, Document.progress_msg).where(Document.id.in_(doc_ids[start:start + 500]))
        for doc in query:
            states[doc.id] = {"name": doc.name, "run": doc.run, "progress": doc.progress,
                              "chunk_num": doc.chunk_num, "msg": doc.progress_msg}
    return states


async def _ingest(settings: Settings, args: argparse.Namespace) -> IngestReport:
    from tqdm import tqdm

    from api.db.services import document_service
    from api.errors import ApiError
    from rag.svr.task_executor import TaskExecutor

    files, skipped = _files_to_ingest(Path(args.path))
    report = IngestReport(skipped=skipped)
    started = time.monotonic()
    async with _worker_runtime(settings, max(4, 2 * args.workers)) as parts:
        db = parts.db
        tenant_id, kb_id = await db.run(_ingest_target, args.tenant, args.key, args.dataset, settings.embedding_model)
        doc_ids = []
        for path in tqdm(files, desc="upload", unit="file", disable=len(files) < 2):
            try:
                doc_ids.append(await db.run(_upload_one, parts, tenant_id, kb_id, path))
            except (ApiError, OSError) as error:
                report.refused.append((str(path), getattr(error, "message", None) or str(error)))
        for start in range(0, len(doc_ids), 500):
            await db.run(document_service.queue_parsing, tenant_id, kb_id, doc_ids[start:start + 500])
        executor = TaskExecutor(parts, concurrency=args.workers) if args.workers > 0 else None
        if executor:
            executor.start()
        try:
            report.documents = await _wait_for_parsing(db, doc_ids)
        finally:
            if executor:
                await executor.stop()
    report.seconds = time.monotonic() - started
    return report


async def _wait_for_parsing(db, doc_ids: list[str]) -> dict[str, dict]:
    """Poll the documents, drawing a bar of overall progress, until each is DONE, FAIL or CANCEL."""
    from tqdm import tqdm

    terminal = {"DONE", "FAIL", "CANCEL"}
    with tqdm(total=len(doc_ids), desc="parse", unit="doc", bar_format=_BAR) as bar:
        while True:
            states = await db.run(_document_states, doc_ids)
            finished = [s for s in states.values() if s["run"] in terminal]
            bar.n = round(len(finished) + sum(s["progress"] for s in states.values() if s["run"] not in terminal), 2)
            bar.set_postfix(chunks=sum(s["chunk_num"] for s in finished if s["run"] == "DONE"),
                            failed=sum(1 for s in finished if s["run"] != "DONE"), refresh=False)
            bar.refresh()
            if len(finished) == len(states):
                return states
            await asyncio.sleep(0.5)


def cmd_ingest(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    try:
        report = asyncio.run(_ingest(settings, args))
    except IngestAbort as error:
        print(f"ragline: {error}", file=sys.stderr)
        return 2
    print(report.summary())
    return 1 if report.failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragline", description="Ragline, a self-hosted async RAG server.")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("serve", help="serve the HTTP API (settings from conf/ and the environment)").set_defaults(
        handler=cmd_serve
    )

    token = commands.add_parser("token", help="API keys").add_subparsers(dest="token_command", required=True)
    create = token.add_parser("create", help="create a key for a tenant (created if needed); prints the key last")
    create.add_argument("--tenant", required=True, help="tenant name")
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument("--init", action="store_true",
                        help="create the database when it does not exist yet (otherwise refused: the key "
                             "would land where no server reads it)")
    create.set_defaults(handler=cmd_token_create)

    db = commands.add_parser("db", help="metadata database").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply pending schema migrations").set_defaults(handler=cmd_db_upgrade)
    _add_worker_parser(commands)
    _add_ingest_parser(commands)
    return parser


def _add_worker_parser(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser(
        "worker", help="run ingestion workers against the configured database until SIGTERM/SIGINT",
        description="Parse, chunk, embed and index queued documents. Any number of workers (and servers) "
                    "may share one database; a task whose worker died is picked up again after its lease.",
    )
    worker.add_argument("--concurrency", type=int, default=2, help="documents parsed and chunked at once (default 2); how many wait for the model is RAGLINE_INGEST_DOCUMENTS_IN_FLIGHT")
    worker.add_argument("--id", default=None, help="worker id shown in the task table (default host:pid:random)")
    worker.add_argument("--poll", type=float, default=0.5, help="seconds between polls of an empty queue")
    worker.add_argument("--lease", type=float, default=60.0,
                        help="seconds without a heartbeat after which a running task counts as abandoned")
    worker.set_defaults(handler=cmd_worker)


def _add_ingest_parser(commands: argparse._SubParsersAction) -> None:
    ingest = commands.add_parser(
        "ingest", help="upload a file or a folder into a dataset, parse it and print a summary",
        description="Uploads through the service layer straight into the configured database and storage "
                    "(not over HTTP), queues parsing, shows a progress bar until every document is DONE, "
                    "FAIL or CANCEL, then prints a summary. Folders are walked recursively; files of "
                    "unsupported types are skipped and listed. The dataset is created if it does not exist. "
                    "Exit status: 0 all parsed, 1 some documents failed, 2 nothing could be done.",
    )
    ingest.add_argument("path", help="a file or a folder")
    ingest.add_argument("--dataset", required=True, help="dataset name (created when missing)")
    who = ingest.add_mutually_exclusive_group()
    who.add_argument("--tenant", default=None, help="tenant name (created when missing; default: 'default')")
    who.add_argument("--key", default=None, help="an API key; its tenant owns the dataset")
    ingest.add_argument("--workers", type=int, default=1,
                        help="parsing pipelines run by this command (default 1); 0 leaves the parsing to "
                             "running `ragline worker` or `ragline serve` processes")
    ingest.set_defaults(handler=cmd_ingest)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)
