"""Images (.png, .jpg/.jpeg, .webp, .bmp, .tif/.tiff): their text, by OCR.

The size is read from the header and checked before decoding (``ocr.check_pixels``); a
multi-frame TIFF contributes its first frame only (scanners put one page per file; a
multi-page scan belongs in a PDF).
"""

from __future__ import annotations

import io
import warnings

from rag.app.parsers.base import ParseError, Section, tidy_text
from rag.app.parsers.limits import SETTINGS, FormatLimitError, FormatLimits
from rag.app.parsers.ocr import check_pixels, image_text

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def parse(data: bytes, limits: FormatLimits) -> list[Section]:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            check_pixels(image.width, image.height, limits.max_image_pixels, "image")
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ParseError(f"The image is damaged or not in a known image format: {exc}") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise FormatLimitError(f"The image is over the limit of {limits.max_image_pixels / 1e6:.0f} megapixels "
                               f"per image ({SETTINGS['max_image_pixels']}); scale it down first ({exc}).") from exc
    text = tidy_text(image_text(image))
    if not text:
        raise ParseError("OCR found no text in the image.")
    return [Section(text, page=1)]
