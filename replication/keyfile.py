"""The cluster key file: read it, or create it (0600, beside the config) when it is missing.

The key is 32 random bytes written as 64 hex characters (base64 is accepted when reading).
It is never committed (`.gitignore` has `*.key`). Creation is atomic — written to a private
temporary file, then hard-linked into place — so workers started together with one config
end up sharing the key one of them made, and none reads a half-written file.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import stat
from pathlib import Path

from .seal import KEY_BYTES

log = logging.getLogger("pyjk.cluster")


class KeyFileError(Exception):
    """The key file cannot be read, created or understood; says which file and why."""


def parse_key(text: str, path: Path) -> bytes:
    text = text.strip()
    try:
        key = (
            bytes.fromhex(text)
            if len(text) == 2 * KEY_BYTES
            else base64.b64decode(text, validate=True)
        )
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyFileError(
            f"{path}: expected {KEY_BYTES} bytes as {2 * KEY_BYTES} hex characters (or base64)"
        )
    return key


def create_key(path: Path) -> bool:
    """Create `path` with a fresh key unless it exists; True if this call created it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_bytes(KEY_BYTES).hex() + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def load_or_create_key(path: Path) -> bytes:
    """The cluster key from `path`, creating the file first when it does not exist."""
    try:
        if not path.exists() and create_key(path):
            log.warning("cluster key created path=%s mode=0600 (share it with every member)", path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("cluster key path=%s mode=%04o is readable by others; use 0600", path, mode)
        return parse_key(path.read_text(encoding="ascii", errors="replace"), path)
    except OSError as exc:
        raise KeyFileError(
            f"{path}: cannot read or create the cluster key: {exc.strerror}"
        ) from exc


def load_key(path: Path) -> bytes:
    """The cluster key from `path`, which must exist: for a process that only talks to
    members already keyed (a key made here could seal nothing they can open)."""
    if not path.exists():
        raise KeyFileError(
            f"{path}: no cluster key file; this process must use the cluster's key "
            "(copy the file from a member, mode 0600)"
        )
    return load_or_create_key(path)
