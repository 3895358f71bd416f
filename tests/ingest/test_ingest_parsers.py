"""Each format parses into sections with the right text, headings and pages; bad files fail typed."""

from __future__ import annotations

import json

import pytest

from rag.app.parsers import (
    SUPPORTED_EXTENSIONS,
    PackageLimits,
    ParseError,
    Section,
    UnsupportedFormatError,
    parse,
    require_supported,
)
from tests.ingest import documents


def texts(sections: list[Section]) -> list[str]:
    return [section.text for section in sections]


def test_supported_extensions_cover_every_required_format():
    for extension in (".txt", ".md", ".html", ".pdf", ".docx", ".csv", ".json"):
        assert extension in SUPPORTED_EXTENSIONS
    assert require_supported("Report.PDF") == ".pdf"


# --- text decoding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("Grüße aus Köln".encode(), "Grüße aus Köln"),
        ("\ufeffwith a BOM".encode(), "with a BOM"),
        ("UTF-16 wörds".encode("utf-16"), "UTF-16 wörds"),
        ("café naïve".encode("cp1252"), "café naïve"),
        ("这是一个测试文件，用于检查编码检测是否正确。我们需要更多的中文文本。".encode("gbk"),
         "这是一个测试文件，用于检查编码检测是否正确。我们需要更多的中文文本。"),
    ],
)
def test_txt_decodes_common_encodings(data, expected):
    assert texts(parse("notes.txt", data)) == [expected]


def test_txt_normalises_line_ends_and_blank_runs():
    assert texts(parse("a.txt", b"one  \r\ntwo\r\n\r\n\r\n\r\nthree\n")) == ["one\ntwo\n\nthree"]


# --- markdown --------------------------------------------------------------------------------


def test_markdown_headings_become_title_paths_and_code_fences_are_body():
    data = (
        b"Preface line.\n"
        b"# Guide\nIntro.\n"
        b"## Install ##\n```sh\n# not a heading\npip install x\n```\n"
        b"## Use\nRun it.\n"
        b"Appendix\n========\nExtra.\n"
    )
    sections = parse("guide.md", data)
    assert [(s.title_path, s.text) for s in sections] == [
        ((), "Preface line."),
        (("Guide",), "Intro."),
        (("Guide", "Install"), "```sh\n# not a heading\npip install x\n```"),
        (("Guide", "Use"), "Run it."),
        (("Appendix",), "Extra."),
    ]
    assert sections[2].heading == "Guide > Install"
    assert sections[2].level == 2


# --- html ------------------------------------------------------------------------------------


def test_html_keeps_visible_text_with_heading_paths_and_drops_chrome():
    data = b"""<!doctype html><html><head><title>T</title><style>p {color: red}</style></head>
    <body><nav><a href="/">Home</a> <a href="/x">Menu item</a></nav>
    <h1>Manual</h1><p>First   paragraph
       spans lines.</p><script>var secret = 1;</script><!-- a comment -->
    <h2>Prices</h2><table><tr><th>Item</th><th>Price</th></tr><tr><td>Tea</td><td>3</td></tr></table>
    </body></html>"""
    sections = parse("page.html", data)
    assert [(s.title_path, s.text) for s in sections] == [
        (("Manual",), "First paragraph spans lines."),
        (("Manual", "Prices"), "Item | Price\nTea | 3"),
    ]
    joined = " ".join(texts(sections))
    for dropped in ("Menu item", "secret", "color", "a comment"):
        assert dropped not in joined


def test_html_with_only_scripts_is_a_parse_error():
    with pytest.raises(ParseError, match="no visible text"):
        parse("empty.htm", b"<html><body><script>run()</script></body></html>")


# --- pdf -------------------------------------------------------------------------------------


def test_pdf_text_layer_one_section_per_page_with_page_numbers():
    data = documents.pdf_with_pages("Aspirin reduces fever.", "", "Ibuprofen reduces pain.")
    sections = parse("drugs.pdf", data)
    assert [(s.page, s.text) for s in sections] == [(1, "Aspirin reduces fever."), (3, "Ibuprofen reduces pain.")]


# --- docx ------------------------------------------------------------------------------------


def test_docx_headings_by_style_and_tables_in_order():
    sections = parse("handbook.docx", documents.docx_document())
    assert [(s.title_path, s.text) for s in sections] == [
        (("Handbook",), "Welcome to the handbook."),
        (("Handbook", "Setup"), "Install the package first."),
        (("Handbook", "Setup", "Linux"), "Use apt on Debian.\nTool | Version\napt | 2.6"),
        (("Handbook", "Support"), "Write to the help desk."),
    ]


# --- csv -------------------------------------------------------------------------------------


def test_csv_rows_carry_the_header_names():
    data = b"name,price,note\nTea,3,\nCoffee,4,strong\n\n"
    assert texts(parse("menu.csv", data)) == ["name: Tea; price: 3", "name: Coffee; price: 4; note: strong"]


def test_csv_sniffs_semicolons_and_names_unnamed_columns():
    data = "city;;country\nKöln;1;DE\n".encode()
    assert texts(parse("cities.csv", data)) == ["city: Köln; column2: 1; country: DE"]


# --- json ------------------------------------------------------------------------------------


def test_json_object_flattens_to_path_value_lines():
    data = json.dumps({"shop": {"name": "Tea Co", "open": True, "items": [{"sku": "t1", "price": 3.5}]},
                       "empty": None}).encode()
    assert texts(parse("shop.json", data)) == [
        "shop.name: Tea Co\nshop.open: true\nshop.items[0].sku: t1\nshop.items[0].price: 3.5"
    ]


def test_json_top_level_array_gives_one_section_per_record():
    data = json.dumps([{"id": 1, "title": "A"}, {"id": 2, "title": "B"}]).encode()
    assert texts(parse("records.json", data)) == ["[0].id: 1\n[0].title: A", "[1].id: 2\n[1].title: B"]


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("extension", SUPPORTED_EXTENSIONS)
@pytest.mark.parametrize("data", [b"", b"  \n\t "])
def test_empty_file_of_every_format_is_a_parse_error(extension, data):
    with pytest.raises(ParseError, match="empty"):
        parse(f"empty{extension}", data)


@pytest.mark.parametrize("data", [b"MZ\x90\x00\x03\x00\x00\x00\x04\x00", bytes(range(1, 32)) * 50])
def test_binary_named_txt_is_refused(data):
    with pytest.raises(ParseError, match="binary"):
        parse("program.txt", data)


def test_pdf_without_text_layer_says_so():
    with pytest.raises(ParseError, match="no text layer"):
        parse("scan.pdf", documents.pdf_without_text())


@pytest.mark.parametrize("data", [b"%PDF-1.7\n1 0 obj <<", b"just text named pdf"])
def test_damaged_pdf_is_a_parse_error(data):
    with pytest.raises(ParseError, match="PDF"):
        parse("broken.pdf", data)


@pytest.mark.parametrize(
    "make",
    [
        lambda: b"this is not a zip file at all",
        lambda: documents.docx_document()[:1500],
        documents.docx_with_broken_xml,
    ],
    ids=["not-zip", "truncated", "broken-xml"],
)
def test_corrupt_docx_is_a_parse_error(make):
    with pytest.raises(ParseError, match="docx"):
        parse("broken.docx", make())


def test_invalid_json_reports_where():
    with pytest.raises(ParseError, match="line 2 column"):
        parse("bad.json", b'{"a": 1,\n oops}')


def test_json_without_values_has_no_text():
    with pytest.raises(ParseError, match="no text"):
        parse("nothing.json", b'{"a": {}, "b": [], "c": null}')


@pytest.mark.parametrize(("name", "named"), [("photo.exe", "'.exe'"), ("archive.tar.gz", "'.gz'"),
                                             ("README", "no extension")])
def test_unsupported_extension_names_it(name, named):
    with pytest.raises(UnsupportedFormatError) as caught:
        parse(name, b"content")
    assert named in str(caught.value)
    assert ".pdf" in str(caught.value)


def test_json_nested_too_deeply_is_a_parse_error():
    with pytest.raises(ParseError, match="nested too deeply"):
        parse("deep.json", b"[" * 100_000 + b"]" * 100_000)


def test_docx_that_would_expand_beyond_the_limit_is_refused():
    with pytest.raises(ParseError, match="expands to"):
        parse("bomb.docx", documents.docx_document(), PackageLimits(max_expanded_bytes=1000))
