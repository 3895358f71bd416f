"""Local file storage: round trips, key safety, atomic writes; upload file-name sanitising."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest

from rag.utils import storage as storage_module
from rag.utils.storage import (
    MAX_FILENAME_BYTES,
    InvalidKeyError,
    LocalStorage,
    ObjectNotFoundError,
    Storage,
    new_key,
    sanitize_filename,
)


@pytest.fixture
def store(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "files")


def stored_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def test_put_get_exists_delete_round_trip(store: LocalStorage):
    key = new_key()
    assert not store.exists(key)
    store.put(key, b"\x00binary\xffdata")
    assert store.exists(key)
    assert store.get(key) == b"\x00binary\xffdata"
    store.put(key, b"replaced")
    assert store.get(key) == b"replaced"
    store.delete(key)
    assert not store.exists(key)
    store.delete(key)  # deleting twice is fine: deletes are retried
    with pytest.raises(ObjectNotFoundError):
        store.get(key)


def test_objects_are_files_named_by_key_under_root(store: LocalStorage):
    backend: Storage = store
    key = new_key()
    backend.put(key, b"x")
    [path] = stored_files(store.root)
    assert path.name == key and store.root in path.parents


def test_new_keys_are_unique_uuid_hex():
    keys = {new_key() for _ in range(1000)}
    assert len(keys) == 1000
    assert all(len(key) == 32 and int(key, 16) >= 0 and key == key.lower() for key in keys)


@pytest.mark.parametrize(
    "key",
    ["../escape", "..", "a/b", "a\\b", "/etc/passwd", "", ".hidden", "a\x00b", "a..b", "x" * 129, "naïve", None],
)
def test_unsafe_keys_are_refused_by_every_operation(store: LocalStorage, key):
    for operation in (lambda: store.put(key, b"x"), lambda: store.get(key), lambda: store.delete(key),
                      lambda: store.exists(key)):
        with pytest.raises(InvalidKeyError):
            operation()
    assert stored_files(store.root.parent) == []


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_keeps_the_old_object_and_leaves_no_temp_file(store, monkeypatch, failing):
    key = new_key()
    store.put(key, b"version one")

    def crash(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(storage_module.os, failing, crash)
    with pytest.raises(OSError, match="disk gone"):
        store.put(key, b"version two, never complete")
    monkeypatch.undo()
    assert store.get(key) == b"version one"
    assert [path.name for path in stored_files(store.root)] == [key]


def test_a_new_object_appears_only_complete(store, monkeypatch):
    """Until the rename, readers see no object at all — never a prefix of it."""
    key = new_key()
    seen_before_rename = []
    real_replace = os.replace

    def observing_replace(source, target):
        seen_before_rename.append((store.exists(key), Path(source).read_bytes()))
        real_replace(source, target)

    monkeypatch.setattr(storage_module.os, "replace", observing_replace)
    store.put(key, b"a" * 100_000)
    assert seen_before_rename == [(False, b"a" * 100_000)]
    assert store.get(key) == b"a" * 100_000


def test_temp_files_left_by_a_killed_writer_are_invisible(store):
    key = new_key()
    store.put(key, b"done")
    (store.root / key[:2] / f".tmp-{key}").write_bytes(b"half")
    assert store.get(key) == b"done"
    with pytest.raises(InvalidKeyError):
        store.get(f".tmp-{key}")


# --- sanitize_filename -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("report.pdf", "report.pdf"),
        ("Q3 report (final) v2.docx", "Q3 report (final) v2.docx"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\evil.txt", "evil.txt"),
        ("/abs/path/notes.md", "notes.md"),
        ("dir/../..", "unnamed"),
        ("a\x00b.txt", "ab.txt"),
        ("line\r\nbreak\t.txt", "linebreak.txt"),
        ("invoice\u202eexe.pdf", "invoiceexe.pdf"),
        ("...hidden.txt", "hidden.txt"),
        ("  spaced name.csv  ", "spaced name.csv"),
        ("trailing dots...", "trailing dots"),
        ("", "unnamed"),
        ("\x00\x01", "unnamed"),
        ("日本語のファイル.md", "日本語のファイル.md"),
    ],
)
def test_sanitize_filename(raw, clean):
    assert sanitize_filename(raw) == clean


def test_sanitize_filename_normalises_unicode_to_nfc():
    decomposed = unicodedata.normalize("NFD", "café.txt")
    assert sanitize_filename(decomposed) == unicodedata.normalize("NFC", "café.txt")


@pytest.mark.parametrize("stem", ["a" * 300, "é" * 300, "文" * 300, "🙂" * 100])
def test_long_names_are_cut_to_255_bytes_keeping_the_extension(stem):
    clean = sanitize_filename(stem + ".pdf")
    encoded = clean.encode("utf-8")
    assert len(encoded) <= MAX_FILENAME_BYTES
    assert len(encoded) > MAX_FILENAME_BYTES - 4  # cut at the last whole character, no further
    assert clean.endswith(".pdf") and clean[:-4] == stem[: len(clean) - 4]


def test_an_absurd_extension_is_not_kept_whole():
    clean = sanitize_filename("name." + "x" * 300)
    assert len(clean.encode("utf-8")) <= MAX_FILENAME_BYTES
    assert clean.startswith("name.")
