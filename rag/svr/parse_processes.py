"""Parsing and chunking of one document at a time in child processes that can be stopped.

Why children, not threads of the serving process: a parse is Python from end to end (python-docx,
pypdf, the chunker's token counts). In a thread it held the serving process's GIL against the
event loop (20 concurrent cheap requests went from 0.13 s to 2.4 s while a hostile .docx
parsed), and nothing could stop it: a cancelled document, a deleted dataset and a server
shutting down all waited minutes for it. In a child it has a GIL of its own, runs below the
loop's priority, and is killed when its document no longer wants it.

Each child is bounded: ``ParseLimits.timeout`` seconds of wall clock per document (the parent
kills the child), ``memory_mb`` of address space (``RLIMIT_AS`` inside the child: an allocation
past it fails with ``MemoryError`` instead of swapping the host), and the package limits of
ZIP-based formats (``rag.app.parsers.package``), and the rows, slides, pages and pixels a
document may hold (``rag.app.parsers.limits.FormatLimits``). Every way a limit ends a parse is a
``ParseError`` whose message says which limit and which setting raises it.

The document is chunked by the template of its ``chunk_method`` (``rag.app.chunking``); OCR of
images and scanned pages runs here too, never in the serving process.
"""

from __future__ import annotations

import ctypes
import resource
from dataclasses import dataclass, field
from typing import Any

from rag.app.chunking import chunk_document
from rag.app.naive import ChunkText
from rag.app.parsers import FormatLimits, PackageLimits, ParseError
from rag.app.parsers.limits import MEGAPIXEL, ReadLimits
from rag.utils.child_process import ChildDied, StoppablePool, settle_in_child
from rag.utils.doc_store_conn import chunk_id

PARSE_NICENESS = 10  # how much lower than the serving process's priority the children's is
MIB = 2**20


@dataclass(frozen=True)
class ParseLimits:
    """Per-document bounds of a parse; the defaults are the settings' defaults."""

    timeout: float = 300.0  # seconds of wall clock for parse + chunk
    memory_mb: int = 2048  # address space of a parse child
    package: PackageLimits = field(default_factory=PackageLimits)
    formats: FormatLimits = field(default_factory=FormatLimits)

    @classmethod
    def from_settings(cls, settings: Any) -> ParseLimits:
        """The limits an ``api.settings.Settings`` names; the defaults for anything else."""
        if settings is None:
            return cls()
        package = PackageLimits(max_expanded_bytes=settings.parse_max_expanded_mb * MIB,
                                max_entries=settings.parse_max_package_entries,
                                max_xml_elements=settings.parse_max_xml_elements)
        return cls(timeout=settings.parse_timeout, memory_mb=settings.parse_memory_mb, package=package,
                   formats=_format_limits(settings))

    @property
    def read(self) -> ReadLimits:
        return ReadLimits(self.package, self.formats)


def _format_limits(settings: Any) -> FormatLimits:
    """The settings' ``parse_max_rows`` etc. (``RAGLINE_PARSE_MAX_ROWS`` ...) as ``FormatLimits``."""
    return FormatLimits(max_rows=settings.parse_max_rows, max_slides=settings.parse_max_slides,
                        max_pages=settings.parse_max_pages, max_ocr_pages=settings.parse_max_ocr_pages,
                        max_image_pixels=int(settings.parse_max_image_megapixels * MEGAPIXEL),
                        max_attachments=settings.parse_max_attachments)


M_ARENA_MAX = -8  # glibc's mallopt parameter number

# -- inside a child -------------------------------------------------------------------------------


def _open_child(niceness: int, memory_bytes: int) -> None:
    """Settle as a quiet child, load the tokenizer the chunker counts with, then cap the
    address space (after the imports, so the cap is about documents, not libraries)."""
    settle_in_child(niceness)
    _few_malloc_arenas()
    from rag.utils.token_utils import encoder

    encoder()
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def _few_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas: each thread a library starts (OCR's ONNX runtime starts one per
    core) otherwise reserves an arena of 64 MiB of address space, which counts against the
    ``RLIMIT_AS`` cap without being used, and failed a one-page scan at 1.9 GiB of 2. No-op off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        pass


def parse_and_chunk_in_child(doc_id: str, filename: str, data: bytes, parser_config: dict,
                             limits: ReadLimits, chunk_method: str = "naive") -> list[ChunkText]:
    """``parse_and_chunk_unique``, where a failure that came from the address-space cap is a
    ``MemoryError`` whatever the library made of it (lxml reports a failed allocation as
    "unknown error" XML, which would read as a damaged file)."""
    try:
        return parse_and_chunk_unique(doc_id, filename, data, parser_config, limits, chunk_method)
    except Exception:
        if _address_space_exhausted():
            raise MemoryError("address space limit reached") from None
        raise


def _address_space_exhausted(margin: float = 0.9) -> bool:
    """Whether this process's peak address space came within ``margin`` of its cap (Linux)."""
    cap = resource.getrlimit(resource.RLIMIT_AS)[0]
    if cap == resource.RLIM_INFINITY:
        return False
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmPeak:"))
    except (OSError, StopIteration, ValueError):
        return False
    return peak_kb * 1024 >= margin * cap


def parse_and_chunk_unique(doc_id: str, filename: str, data: bytes, parser_config: dict,
                           limits: ReadLimits, chunk_method: str = "naive") -> list[ChunkText]:
    """The document's chunks with distinct ids: two equal chunks would be one row anyway."""
    seen: set[str] = set()
    unique = []
    for piece in chunk_document(chunk_method, filename, data, parser_config, limits):
        key = chunk_id(doc_id, piece.content)
        if key not in seen:
            seen.add(key)
            unique.append(piece)
    return unique


# -- in the serving process -----------------------------------------------------------------------


class ParseProcesses:
    """``processes`` children parsing and chunking documents (``StoppablePool``: warm, killed
    and replaced when a parse is given up on).

    The caller runs at most ``processes`` parses at once (the executor's preparation slots).
    Cancelling the task that awaits ``parse_and_chunk`` kills its child: that is how a
    cancelled document, a deleted dataset and a shutdown stop a parse.
    """

    def __init__(self, processes: int, limits: ParseLimits | None = None, niceness: int = PARSE_NICENESS) -> None:
        self.limits = limits or ParseLimits()
        self._children = StoppablePool(processes, _open_child, (niceness, self.limits.memory_mb * MIB),
                                       name="ragline-parse")

    @property
    def processes(self) -> int:
        return self._children.processes

    async def warm_up(self) -> list[int]:
        """Start every child now instead of on the first documents; returns their pids."""
        return await self._children.warm_up()

    async def parse_and_chunk(self, doc_id: str, filename: str, data: bytes,
                              parser_config: dict, chunk_method: str = "naive") -> list[ChunkText]:
        """The document's distinct chunks under ``chunk_method``, computed in a child within ``limits``.

        Raises the parsers' ``IngestError``s, ``ValueError`` for a parser_config the chunker
        refuses, and ``ParseError`` naming the limit for a parse stopped by one.
        """
        limits = self.limits
        try:
            return await self._children.run(parse_and_chunk_in_child, doc_id, filename, data, parser_config,
                                            limits.read, chunk_method, time_limit=limits.timeout)
        except TimeoutError:
            raise ParseError(f"Parsing stopped after {limits.timeout:g} s, the limit per document "
                             "(RAGLINE_PARSE_TIMEOUT): the file is too large or too complex.") from None
        except MemoryError:
            raise ParseError(f"Parsing needed more than {limits.memory_mb} MiB of memory, the limit per "
                             "document (RAGLINE_PARSE_MEMORY_MB): the file is too large or too complex.") from None
        except ChildDied as died:
            raise ParseError(f"The parser stopped: {died} (over the {limits.memory_mb} MiB memory limit, "
                             "RAGLINE_PARSE_MEMORY_MB, or a damaged file).") from None

    def close(self) -> None:
        """Kill every child; a parse in progress fails with ``ChildDied`` (its task is handed back)."""
        self._children.close()
