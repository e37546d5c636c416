"""Client-side encryption of a backup's files: AES-256-GCM in chunks, with a key from the
settings (``METALCAST_BACKUP__ENCRYPTION_KEY``: base64 of 32 random bytes).

Why not Fernet: it encrypts a whole message in memory and base64-encodes it (a third larger),
so a dump of gigabytes would need gigabytes of memory. Here a file is read and written one
chunk (1 MiB) at a time, so memory stays bounded whatever the dump's size.

The format (the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár, as in
``age`` and Tink's streaming AEAD)::

    header   b"MCBKENC1" | key id (8 bytes) | chunk size (4 bytes, big-endian) | nonce prefix (7)
    chunks   AES-256-GCM(chunk), nonce = prefix | counter (4 bytes) | last (1 byte: 0 or 1),
             associated data = the header; each chunk is its plaintext plus a 16-byte tag

Every chunk is authenticated together with the header and its position; the last chunk is
marked, so a file cut at a chunk boundary, chunks reordered or swapped between files, or a
changed header all fail to decrypt. The nonce prefix is random per file, so one key encrypts
up to 2**32 chunks per file and very many files without repeating a nonce.

The key id (a sha256 fingerprint of the key, never the key) goes into the header and the
manifest, so a restore says which key it needs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from metalcast_backup.errors import DecryptionError

ALGORITHM = "AES-256-GCM-STREAM"
MAGIC = b"MCBKENC1"
KEY_BYTES = 32
CHUNK_BYTES = 1 << 20
_TAG = 16
_PREFIX = 7
_HEADER = struct.Struct(f">{len(MAGIC)}s8sI{_PREFIX}s")

__all__ = [
    "ALGORITHM",
    "CHUNK_BYTES",
    "DecryptionError",
    "KeyRing",
    "key_id",
    "new_key",
    "parse_key",
]


def parse_key(text: str) -> bytes:
    """The 32 bytes of a base64 key; ``ValueError`` (never showing the key) otherwise."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the encryption key is not base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"the encryption key is {len(key)} bytes; AES-256 needs {KEY_BYTES}")
    return key


def new_key() -> str:
    """A fresh random key, base64 (what ``METALCAST_BACKUP__ENCRYPTION_KEY`` takes)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def _fingerprint(key: bytes) -> bytes:
    return hashlib.sha256(b"metalcast-backup key id\0" + key).digest()[:8]


def key_id(key: bytes) -> str:
    """A short public name of a key (16 hex digits of a sha256 of it)."""
    return _fingerprint(key).hex()


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= 1 << 32:
        raise ValueError("file too large for one encryption stream")
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _blocks(fh: BinaryIO, size: int) -> Iterator[tuple[bytes, bool]]:
    """Blocks of ``size`` bytes (the last may be shorter or empty), each with whether it is
    the last: one block of read-ahead, so memory stays two blocks."""
    current = fh.read(size)
    while True:
        following = fh.read(size) if len(current) == size else b""
        last = not following
        yield current, last
        if last:
            return
        current = following


class KeyRing:
    """The key new backups are encrypted with, and older keys that still decrypt old ones."""

    def __init__(self, current: bytes, older: Iterable[bytes] = ()) -> None:
        self._current = current
        self._aead = AESGCM(current)
        self._by_id = {_fingerprint(k): k for k in (*older, current)}

    @property
    def key_id(self) -> str:
        return key_id(self._current)

    @property
    def key_ids(self) -> list[str]:
        return sorted(k.hex() for k in self._by_id)

    def encrypt_file(self, src: Path, dst: Path, chunk_bytes: int = CHUNK_BYTES) -> None:
        header = _HEADER.pack(MAGIC, _fingerprint(self._current), chunk_bytes, os.urandom(_PREFIX))
        prefix = header[-_PREFIX:]
        with src.open("rb") as inp, dst.open("wb") as out:
            out.write(header)
            for counter, (block, last) in enumerate(_blocks(inp, chunk_bytes)):
                out.write(self._aead.encrypt(_nonce(prefix, counter, last), block, header))

    def decrypt_file(self, src: Path, dst: Path) -> None:
        """Decrypt ``src`` into ``dst``; :class:`DecryptionError` (and no ``dst``) if it does
        not decrypt whole."""
        try:
            with src.open("rb") as inp, dst.open("wb") as out:
                header = inp.read(_HEADER.size)
                if len(header) != _HEADER.size:
                    raise DecryptionError(f"{src.name}: too short to be an encrypted backup file")
                magic, fingerprint, chunk_bytes, prefix = _HEADER.unpack(header)
                if magic != MAGIC:
                    raise DecryptionError(f"{src.name}: not an encrypted backup file")
                key = self._by_id.get(fingerprint)
                if key is None:
                    raise DecryptionError(
                        f"{src.name} is encrypted with key {fingerprint.hex()}; the keys "
                        f"configured are {', '.join(self.key_ids)} (set "
                        "METALCAST_BACKUP__ENCRYPTION_KEY or __OLD_ENCRYPTION_KEYS)"
                    )
                aead = AESGCM(key)
                for counter, (block, last) in enumerate(_blocks(inp, chunk_bytes + _TAG)):
                    try:
                        out.write(aead.decrypt(_nonce(prefix, counter, last), block, header))
                    except (InvalidTag, ValueError):
                        raise DecryptionError(
                            f"{src.name}: chunk {counter} does not authenticate (the file "
                            "was changed or cut)"
                        ) from None
        except BaseException:
            dst.unlink(missing_ok=True)
            raise
