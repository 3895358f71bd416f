"""E-mail (.eml, RFC 822/MIME, standard library): headers, body, and text attachments.

Sections, all under the subject as heading:
- the headers people search by (From, To, Cc, Date, Subject) as one section;
- the body: the text/plain part, else the text/html part as visible text;
- each attachment whose name has a text-like extension (``TEXT_ATTACHMENTS``), parsed by that
  format's parser, under ``Attachment: name``. Binary attachments are skipped: their parsers
  have limits of their own that an attachment would need again, and mail archives carry them
  as separate files anyway.
At most ``FormatLimits.max_attachments`` attachments are read; later ones are left out.
"""

from __future__ import annotations

import email
import os
from collections.abc import Callable
from email import policy
from email.message import EmailMessage

from rag.app.parsers import html
from rag.app.parsers.base import IngestError, ParseError, Section, tidy_text
from rag.app.parsers.limits import FormatLimits

HEADERS = ("From", "To", "Cc", "Date", "Subject")
TEXT_ATTACHMENTS = (".txt", ".md", ".markdown", ".csv", ".html", ".htm", ".json")
AttachmentParser = Callable[[str, bytes], list[Section]]


def parse(data: bytes, limits: FormatLimits, parse_attachment: AttachmentParser) -> list[Section]:
    message = _open(data)
    subject = " ".join(str(message.get("Subject", "") or "").split())
    path = (subject,) if subject else ()
    sections = []
    header_text = "\n".join(f"{name}: {message[name]}" for name in HEADERS if message.get(name))
    if header_text:
        sections.append(Section(header_text, path))
    body = _body(message)
    if body:
        sections.append(Section(body, path))
    sections.extend(_attachments(message, path, limits, parse_attachment))
    return sections


def _open(data: bytes) -> EmailMessage:
    try:
        message = email.message_from_bytes(data, policy=policy.default)
    except (ValueError, TypeError, IndexError) as exc:
        raise ParseError(f"The .eml file cannot be read as an e-mail: {exc}") from exc
    if not message.keys():
        raise ParseError("The .eml file has no e-mail headers (not an e-mail message?).")
    return message


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    text = _part_text(part)
    if part.get_content_subtype() == "html":
        return "\n\n".join(section.text for section in html.parse(text.encode("utf-8"))) if text.strip() else ""
    return tidy_text(text)


def _part_text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # an unknown charset or a damaged encoding
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", errors="replace")
    return content if isinstance(content, str) else content.decode("utf-8", errors="replace")


def _attachments(message: EmailMessage, path: tuple[str, ...], limits: FormatLimits,
                 parse_attachment: AttachmentParser) -> list[Section]:
    sections: list[Section] = []
    for index, part in enumerate(message.iter_attachments()):
        if index >= limits.max_attachments:
            break
        name = os.path.basename(part.get_filename() or "")
        if os.path.splitext(name)[1].lower() not in TEXT_ATTACHMENTS:
            continue
        payload = part.get_payload(decode=True) or b""
        try:
            parsed = parse_attachment(name, payload)
        except IngestError:
            continue  # an unreadable attachment leaves the mail itself readable
        heading = (*path, f"Attachment: {name}")
        sections.extend(Section(section.text, heading + section.title_path, section.page) for section in parsed)
    return sections
