"""Text from pixels: RapidOCR (PP-OCRv4 detection and recognition on ONNX Runtime).

The models ship inside the ``rapidocr-onnxruntime`` wheel, so OCR runs offline. Loading them
takes about half a second, so each parse child loads the engine once, on its first image, and
keeps it (``engine``); OCR never runs in the serving process: parsers run in the parse
children (``rag.svr.parse_processes``).

Every image's size is checked from its header, before any pixel is decoded, against
``FormatLimits.max_image_pixels``: a 40,000 × 40,000 PNG of a few kilobytes would otherwise
decode to gigabytes.
"""

from __future__ import annotations

import functools
from typing import Any

from rag.app.parsers.base import ParseError
from rag.app.parsers.limits import SETTINGS, FormatLimitError

MIN_SCORE = 0.5  # recognitions below this confidence are mostly noise on photos and rules


@functools.cache
def engine() -> Any:
    """The process's OCR engine, loaded on first use."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as exc:  # the dependency is declared; this names it when an install lacks it
        raise ParseError(f"OCR is not available on this server (rapidocr-onnxruntime: {exc}).") from exc
    # One thread: a parse child is one core's share, and ONNX's per-core pool would only
    # compete with the other parse children (and reserve address space under their cap).
    return RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)


def check_pixels(width: int, height: int, limit: int, what: str) -> None:
    """Raise ``FormatLimitError`` when ``width`` × ``height`` is over ``limit`` pixels."""
    if width * height > limit:
        raise FormatLimitError(f"The {what} is {width:,} × {height:,} pixels, over the limit of "
                               f"{limit / 1e6:g} megapixels per image ({SETTINGS['max_image_pixels']}); scale it down first.")


def image_text(image: Any) -> str:
    """The text of a PIL image, one recognized line per line, in the engine's reading order."""
    import numpy as np

    result, _ = engine()(np.asarray(image.convert("RGB")))
    lines = [text for _box, text, score in result or () if float(score) >= MIN_SCORE and text.strip()]
    return "\n".join(lines)
