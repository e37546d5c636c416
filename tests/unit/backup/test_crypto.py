"""Client-side encryption of backup files: round trips, bounded chunks, and every way a
stored file can be wrong (another key, changed bytes, cut, reordered, another file's chunks)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from metalcast_backup.crypto import MAGIC, KeyRing, key_id, new_key, parse_key
from metalcast_backup.errors import DecryptionError

KEY = parse_key(new_key())
CHUNK = 1024  # small chunks so a few KiB cross many boundaries


def _file(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def _roundtrip(tmp: Path, data: bytes, ring: KeyRing | None = None) -> bytes:
    ring = ring or KeyRing(KEY)
    src = _file(tmp, "plain", data)
    ring.encrypt_file(src, tmp / "sealed", chunk_bytes=CHUNK)
    ring.decrypt_file(tmp / "sealed", tmp / "opened")
    return (tmp / "opened").read_bytes()


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17, 200_003]
)
def test_every_size_round_trips(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    assert _roundtrip(tmp_path, data) == data


def test_the_stored_file_is_not_the_plaintext_and_grows_by_one_tag_per_chunk(
    tmp_path: Path,
) -> None:
    data = b"PGDMP" + b"secret prices " * 1000  # 14,005 bytes: 14 chunks of 1 KiB
    src = _file(tmp_path, "plain", data)
    KeyRing(KEY).encrypt_file(src, tmp_path / "sealed", chunk_bytes=CHUNK)
    sealed = (tmp_path / "sealed").read_bytes()
    assert sealed.startswith(MAGIC)
    assert b"secret prices" not in sealed
    chunks = -(-len(data) // CHUNK)
    assert len(sealed) == 27 + len(data) + 16 * chunks
    # Two encryptions of the same file differ (random nonce prefix per file).
    KeyRing(KEY).encrypt_file(src, tmp_path / "again", chunk_bytes=CHUNK)
    assert (tmp_path / "again").read_bytes() != sealed


def _sealed(tmp: Path, data: bytes, name: str = "sealed") -> Path:
    src = _file(tmp, f"{name}.plain", data)
    KeyRing(KEY).encrypt_file(src, tmp / name, chunk_bytes=CHUNK)
    return tmp / name


def _refused(tmp: Path, sealed: bytes, match: str, ring: KeyRing | None = None) -> None:
    path = _file(tmp, "tampered", sealed)
    with pytest.raises(DecryptionError, match=match):
        (ring or KeyRing(KEY)).decrypt_file(path, tmp / "out")
    assert not (tmp / "out").exists()  # nothing half-decrypted is left behind


def test_another_key_is_named_not_guessed(tmp_path: Path) -> None:
    sealed = _sealed(tmp_path, b"x" * 5000).read_bytes()
    other = KeyRing(parse_key(new_key()))
    _refused(tmp_path, sealed, f"encrypted with key {key_id(KEY)}", other)


def test_an_old_key_in_the_ring_still_decrypts(tmp_path: Path) -> None:
    data = os.urandom(5000)
    path = _sealed(tmp_path, data)
    rotated = KeyRing(parse_key(new_key()), older=[KEY])
    rotated.decrypt_file(path, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
    assert key_id(KEY) in rotated.key_ids


def test_a_changed_byte_fails(tmp_path: Path) -> None:
    sealed = bytearray(_sealed(tmp_path, os.urandom(5000)).read_bytes())
    sealed[27 + CHUNK + 40] ^= 1  # inside the second chunk
    _refused(tmp_path, bytes(sealed), "chunk 1 does not authenticate")


def test_a_changed_header_fails(tmp_path: Path) -> None:
    sealed = bytearray(_sealed(tmp_path, os.urandom(5000)).read_bytes())
    sealed[8 + 8 + 3] ^= 1  # the chunk size in the header
    _refused(tmp_path, bytes(sealed), "does not authenticate")


def test_a_file_cut_at_a_chunk_boundary_fails(tmp_path: Path) -> None:
    sealed = _sealed(tmp_path, os.urandom(4 * CHUNK)).read_bytes()
    cut = sealed[: 27 + 2 * (CHUNK + 16)]  # two whole chunks, neither marked last
    _refused(tmp_path, cut, "chunk 1 does not authenticate")
    _refused(tmp_path, sealed[:27], "chunk 0 does not authenticate")
    _refused(tmp_path, sealed[:10], "too short")


def test_reordered_chunks_and_chunks_from_another_file_fail(tmp_path: Path) -> None:
    sealed = _sealed(tmp_path, os.urandom(4 * CHUNK)).read_bytes()
    head, size = 27, CHUNK + 16
    chunks = [sealed[head + i * size : head + (i + 1) * size] for i in range(4)]
    swapped = (
        sealed[:head] + chunks[1] + chunks[0] + chunks[2] + chunks[3] + sealed[head + 4 * size :]
    )
    _refused(tmp_path, swapped, "chunk 0 does not authenticate")
    other = _sealed(tmp_path, os.urandom(4 * CHUNK), name="other").read_bytes()
    spliced = (
        sealed[: head + size] + other[head + size : head + 2 * size] + sealed[head + 2 * size :]
    )
    _refused(tmp_path, spliced, "chunk 1 does not authenticate")


def test_not_an_encrypted_file(tmp_path: Path) -> None:
    _refused(tmp_path, b"PGDMP" + b"\0" * 100, "not an encrypted backup file")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"k" * 16).decode(), "16 bytes; AES-256 needs 32"),
    ],
)
def test_a_bad_key_is_refused_without_showing_it(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as refused:
        parse_key(text)
    assert text not in str(refused.value)


def test_the_key_id_is_stable_and_is_not_the_key() -> None:
    assert key_id(KEY) == key_id(KEY)
    assert len(key_id(KEY)) == 16
    assert key_id(KEY) not in KEY.hex()
    assert KeyRing(KEY).key_id == key_id(KEY)
