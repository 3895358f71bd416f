"""Parse throughput per file type and template, and OCR pages per second.

Run: ``.venv/bin/python -m tests.bench.parse_throughput``. Each case builds its file with the
format's own library (``tests.ingest.office_files``), then times parse + chunk in this process
(one core; the server runs one parse child per preparation slot). OCR uses every core
onnxruntime is given (``OMP``/affinity), as a parse child does.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rag.app.chunking import chunk_document
from rag.app.parsers import FormatLimits
from rag.app.parsers.limits import ReadLimits
from tests.ingest import office_files as files
from tests.ingest.documents import pdf_with_pages

LIMITS = ReadLimits(formats=FormatLimits(max_rows=100_000, max_ocr_pages=100))


def measure(label: str, unit: str, count: int, method: str, name: str, data: bytes,
            repeat: int = 3) -> None:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        chunks = chunk_document(method, name, data, {}, LIMITS)
        best = min(best, time.perf_counter() - started)
    print(f"{label:<34} {count / best:>10,.2f} {unit}/s  ({count} {unit} in {best:.3f} s, {len(chunks)} chunks)")


def rows_xlsx(rows: int) -> bytes:
    return files.xlsx(("Data", [["Name", "Price", "Stock", "Note"]] +
                       [[f"item {i}", i * 1.5, i, f"note number {i} about the item"] for i in range(rows)]))


def main() -> None:
    cases: list[tuple[str, str, int, str, str, Callable[[], bytes]]] = [
        ("xlsx naive", "rows", 10_000, "naive", "a.xlsx", lambda: rows_xlsx(10_000)),
        ("xlsx table", "rows", 10_000, "table", "a.xlsx", lambda: rows_xlsx(10_000)),
        ("xlsx qa", "rows", 10_000, "qa", "a.xlsx",
         lambda: files.xlsx(("Q", [[f"Question {i}?", f"Answer {i}."] for i in range(10_000)]))),
        ("csv table", "rows", 10_000, "table", "a.csv",
         lambda: "\n".join(["Name,Price,Stock"] + [f"item {i},{i * 1.5},{i}" for i in range(10_000)]).encode()),
        ("pptx presentation", "slides", 200, "presentation", "a.pptx",
         lambda: files.pptx_deck(*[(f"Slide {i}", f"Point {i} of the talk. " * 5) for i in range(200)])),
        ("pdf (text layer) laws", "pages", 100, "laws", "a.pdf",
         lambda: pdf_with_pages(*[f"Article {i} The party shall comply with rule {i}." for i in range(100)])),
        ("eml email", "messages", 1, "email", "a.eml",
         lambda: files.eml_message({"a.txt": b"Attachment text. " * 200})),
    ]
    for label, unit, count, method, name, make in cases:
        measure(label, unit, count, method, name, make())
    image = files.text_image(["Invoice number 48213", "Total due 99 EUR"], size=(1240, 1754))  # A4 at 150 dpi
    chunk_document("picture", "warm.png", image, {}, LIMITS)  # loads the OCR models once, as a child does
    measure("png OCR (A4 page, 150 dpi)", "pages", 1, "picture", "a.png", image)
    measure("scanned pdf OCR (5 pages, 200 dpi)", "pages", 5, "naive", "scan.pdf",
            _scanned_pages(5))


def _scanned_pages(count: int) -> bytes:
    import io

    from PIL import Image

    pages = [Image.open(io.BytesIO(files.text_image([f"Page {n} warranty terms", "Five years of cover"],
                                                    size=(1240, 1754)))) for n in range(count)]
    out = io.BytesIO()
    pages[0].save(out, format="PDF", resolution=150, save_all=True, append_images=pages[1:])
    return out.getvalue()


if __name__ == "__main__":
    main()
