"""Secrets at rest: webhook signing secrets are sealed with a server key (AES-256-GCM), so a
database dump alone neither reveals them nor lets one forge deliveries.

The key comes from SYNCSTATUS_SECRET_KEY (any random string of at least 32 characters; every
API process of a deployment needs the same one). Without it the embedded SQLite default keeps
a key file beside the database file (`<file>.key`, created with mode 0600 on first use); on
PostgreSQL there is no such default (processes on several hosts would each make their own key),
so webhooks need SYNCSTATUS_SECRET_KEY there.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import make_url

from app.store.engine import is_sqlite, normalize_url

MIN_KEY_CHARS = 32
_VERSION = "v1."


class SecretKeyMissing(Exception):
    """No server key is configured (PostgreSQL without SYNCSTATUS_SECRET_KEY)."""


class SecretBox:
    def __init__(self, key_material: str) -> None:
        if len(key_material) < MIN_KEY_CHARS:
            raise ValueError(f"SYNCSTATUS_SECRET_KEY needs at least {MIN_KEY_CHARS} characters.")
        self._aead = AESGCM(hashlib.sha256(key_material.encode()).digest())

    def seal(self, plain: bytes, context: bytes) -> str:
        """`context` (e.g. the tenant) is authenticated: a sealed value copied elsewhere fails."""
        nonce = secrets.token_bytes(12)
        sealed = nonce + self._aead.encrypt(nonce, plain, context)
        return _VERSION + base64.b64encode(sealed).decode()

    def open(self, sealed: str, context: bytes) -> bytes:
        if not sealed.startswith(_VERSION):
            raise ValueError("unknown sealed secret format")
        raw = base64.b64decode(sealed[len(_VERSION) :])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context)
        except InvalidTag:
            raise ValueError("sealed with another key, or altered") from None


def _key_file(database_url: str) -> Path | None:
    url = make_url(normalize_url(database_url))
    if not is_sqlite(database_url) or not url.database or url.database == ":memory:":
        return None
    return Path(url.database + ".key")


def _read_or_create(path: Path) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(48) + "\n")
    return path.read_text().strip()


def load_secret_box(database_url: str, env: dict[str, str] | None = None) -> SecretBox | None:
    """The server's box, or None when no key is configured (see the module docstring)."""
    env = dict(os.environ) if env is None else env
    configured = env.get("SYNCSTATUS_SECRET_KEY")
    if configured:
        return SecretBox(configured)
    path = _key_file(database_url)
    return SecretBox(_read_or_create(path)) if path is not None else None
