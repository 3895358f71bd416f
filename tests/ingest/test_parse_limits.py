"""Hostile packages and parses over a limit fail their document with the reason, in bounded time
and memory, in a child process that is replaced afterwards (issue 18, item 2).

The hostile files are generated with python-docx and zipfile. Times are printed, not asserted.
"""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from api.components import Components
from rag.app.parsers import PackageLimitError, PackageLimits, ParseError, parse
from rag.svr.parse_processes import ParseLimits, ParseProcesses
from rag.svr.task_executor import TaskExecutor
from tests.ingest import documents
from tests.ingest.documents import docx_of_empty_paragraphs
from tests.ingest.parse_support import address_space_mb, eventually, running, slow_docx
from tests.ingest.worker_support import FakeEmbedding, document, queue, seed_documents


@pytest.fixture
def ready(parts: Components) -> Components:
    from api.db.migrate import upgrade

    upgrade(parts.db)
    return parts


def test_two_million_empty_paragraphs_in_50_kb_fail_unparsed_at_the_default_limits() -> None:
    bomb = docx_of_empty_paragraphs(2_000_000)
    assert len(bomb) < 100_000
    started = time.process_time()
    with pytest.raises(PackageLimitError, match=r"more than 1,000,000 XML elements.*RAGLINE_PARSE_MAX_XML_ELEMENTS"):
        parse("bomb.docx", bomb)
    print(f"refused a {len(bomb) // 1024} KB bomb after {time.process_time() - started:.2f} CPU-s")


def test_a_document_is_refused_below_its_element_count_and_parsed_above_it() -> None:
    package = docx_of_empty_paragraphs(3_000, text="A paragraph with words.")  # 9,000 elements and more
    with pytest.raises(PackageLimitError, match="XML elements"):
        parse("long.docx", package, PackageLimits(max_xml_elements=9_000))
    sections = parse("long.docx", package, PackageLimits(max_xml_elements=100_000))
    assert "A paragraph with words." in sections[0].text


def test_a_package_of_too_many_parts_fails_unparsed() -> None:
    source = zipfile.ZipFile(io.BytesIO(documents.docx_document()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        for item in source.infolist():
            package.writestr(item.filename, source.read(item.filename))
        for number in range(50):
            package.writestr(f"customXml/item{number}.bin", b"x")
    with pytest.raises(PackageLimitError, match="parts, over the limit of 20"):
        parse("many.docx", out.getvalue(), PackageLimits(max_entries=20))


def test_a_part_that_expands_past_the_limit_fails_unparsed() -> None:
    source = zipfile.ZipFile(io.BytesIO(documents.docx_document()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as package:
        for item in source.infolist():
            package.writestr(item.filename, source.read(item.filename))
        package.writestr("word/media/zeros.bin", bytes(4 * 2**20))
    assert len(out.getvalue()) < 64 * 1024
    with pytest.raises(PackageLimitError, match=r"expands to \d+ MiB, over the limit of 2 MiB"):
        parse("zeros.docx", out.getvalue(), PackageLimits(max_expanded_bytes=2 * 2**20))


async def test_a_parse_over_its_time_limit_fails_and_its_child_is_replaced() -> None:
    pool = ParseProcesses(1, ParseLimits(timeout=0.5, package=PackageLimits(max_xml_elements=10_000_000)))
    try:
        [first] = await pool.warm_up()
        started = time.monotonic()
        with pytest.raises(ParseError, match=r"stopped after 0.5 s.*RAGLINE_PARSE_TIMEOUT"):
            await pool.parse_and_chunk("doc", "slow.docx", slow_docx(400_000), {})
        print(f"failed after {time.monotonic() - started:.2f} s")
        await eventually(lambda: not running(first), 5, "the timed-out child to be killed")
        chunks = await pool.parse_and_chunk("doc", "fine.md", b"# Title\n\nSome text.", {})
        assert [c.content for c in chunks] == ["Title\nSome text."]
        [second] = await pool.warm_up()
        assert second != first
    finally:
        pool.close()


async def test_a_parse_over_its_memory_limit_fails_with_that_reason() -> None:
    probe = ParseProcesses(1)
    try:
        [pid] = await probe.warm_up()
        idle_mb = address_space_mb(pid)  # the libraries' share, before any document
    finally:
        probe.close()
    pool = ParseProcesses(1, ParseLimits(memory_mb=idle_mb + 100, package=PackageLimits(max_xml_elements=10_000_000)))
    try:
        with pytest.raises(ParseError, match=rf"more than {idle_mb + 100} MiB of memory.*RAGLINE_PARSE_MEMORY_MB"):
            await pool.parse_and_chunk("doc", "big.docx", slow_docx(900_000), {})
        chunks = await pool.parse_and_chunk("doc", "fine.txt", b"Small enough.", {})
        assert len(chunks) == 1
    finally:
        pool.close()


async def test_a_bomb_fails_its_document_with_the_reason_and_the_others_finish(ready: Components) -> None:
    files = {"bomb.docx": docx_of_empty_paragraphs(2_000_000), "fine.md": b"# Fine\n\nKingfishers dive for fish."}
    tenant_id, kb_id, doc_ids = seed_documents(ready, files)
    queue(ready, tenant_id, kb_id, doc_ids)
    executor = TaskExecutor(ready, worker_id="test-worker", embedder=lambda _t, _n: FakeEmbedding())
    try:
        while await executor.run_once():
            pass
    finally:
        await executor.stop()
    bomb, fine = (document(ready, doc_id) for doc_id in doc_ids)
    assert bomb.run == "FAIL"
    assert "XML elements" in bomb.progress_msg and "RAGLINE_PARSE_MAX_XML_ELEMENTS" in bomb.progress_msg
    assert (fine.run, fine.chunk_num) == ("DONE", 1)


def test_the_per_format_limits_are_read_from_the_environment() -> None:
    from api.settings import load_settings
    from rag.app.parsers import FormatLimits

    environ = {"RAGLINE_PARSE_MAX_ROWS": "3", "RAGLINE_PARSE_MAX_SLIDES": "4", "RAGLINE_PARSE_MAX_PAGES": "5",
               "RAGLINE_PARSE_MAX_OCR_PAGES": "0", "RAGLINE_PARSE_MAX_IMAGE_MEGAPIXELS": "0.5",
               "RAGLINE_PARSE_MAX_ATTACHMENTS": "7"}
    formats = ParseLimits.from_settings(load_settings(environ=environ)).formats
    assert formats == FormatLimits(max_rows=3, max_slides=4, max_pages=5, max_ocr_pages=0,
                                   max_image_pixels=500_000, max_attachments=7)
    assert ParseLimits.from_settings(load_settings(environ={})).formats == FormatLimits()
    with pytest.raises(ValueError, match="RAGLINE_PARSE_MAX_ROWS"):
        load_settings(environ={"RAGLINE_PARSE_MAX_ROWS": "0"})


async def test_a_sheet_over_the_configured_rows_fails_naming_the_setting(make_settings, make_parts) -> None:
    from api.db.migrate import upgrade
    from tests.ingest import office_files

    parts = make_parts(make_settings(parse_max_rows=2))
    upgrade(parts.db)
    files = {"faq.xlsx": office_files.faq_xlsx(), "fine.md": b"# Fine\n\nKingfishers dive for fish."}
    tenant_id, kb_id, doc_ids = seed_documents(parts, files)
    queue(parts, tenant_id, kb_id, doc_ids)
    executor = TaskExecutor(parts, worker_id="test-worker", embedder=lambda _t, _n: FakeEmbedding())
    try:
        while await executor.run_once():
            pass
    finally:
        await executor.stop()
    sheet, fine = (document(parts, doc_id) for doc_id in doc_ids)
    assert sheet.run == "FAIL"
    assert "more than 2 rows" in sheet.progress_msg and "RAGLINE_PARSE_MAX_ROWS" in sheet.progress_msg
    assert (fine.run, fine.chunk_num) == ("DONE", 1)
