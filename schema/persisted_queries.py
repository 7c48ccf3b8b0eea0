"""Apollo's automatic persisted queries: a request may send only the document's SHA-256
(`extensions.persistedQuery.sha256Hash`); unknown, it gets PERSISTED_QUERY_NOT_FOUND and the
client sends the document with its hash once, which is kept (bounded in entries and bytes)."""

from __future__ import annotations

import hashlib
from typing import Any

from schema.document_cache import BoundedCache
from schema.limits import DocumentLimits

NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
MAX_ENTRIES = 1000
MAX_BYTES = 8 * 1024 * 1024


class PersistedQueryError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PersistedQueries:
    def __init__(self, limits: DocumentLimits) -> None:
        self.limits = limits
        self.cache: BoundedCache[str] = BoundedCache(MAX_ENTRIES, MAX_BYTES)

    def resolve(self, query: str | None, extensions: dict[str, Any] | None) -> str | None:
        """The document to run: the one sent, or the one stored under the hash sent."""
        persisted = (extensions or {}).get("persistedQuery")
        if persisted is None:
            return query
        if not isinstance(persisted, dict) or persisted.get("version") != 1:
            raise PersistedQueryError("BAD_USER_INPUT", "Unsupported persistedQuery version.")
        digest = persisted.get("sha256Hash")
        if not isinstance(digest, str) or len(digest) != 64:
            raise PersistedQueryError("BAD_USER_INPUT", "persistedQuery.sha256Hash is malformed.")
        digest = digest.lower()
        if query is None:
            stored = self.cache.get(digest)
            if stored is None:
                # Apollo's clients recognise this message and retry with the document.
                raise PersistedQueryError(NOT_FOUND, "PersistedQueryNotFound")
            return stored
        if hashlib.sha256(query.encode("utf-8", "surrogatepass")).hexdigest() != digest:
            raise PersistedQueryError("BAD_USER_INPUT", "provided sha does not match query")
        if len(query) <= self.limits.max_document_bytes:  # a longer one is refused anyway
            self.cache.put(digest, query, 2 * len(query) + 200)
        return query
