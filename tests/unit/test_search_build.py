"""The seed's search index built apart (app.store.bulk_load.SearchBuild): its batches go to
SQLite as JSON arrays, so every character of an email must come through, in every batch."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from app.store import bulk_load

# The tables as migration 0001 makes them, reduced to what the search index reads.
SCHEMA = (
    "CREATE TABLE sync_users (id INTEGER PRIMARY KEY, email TEXT, destination_email TEXT)",
    "CREATE VIRTUAL TABLE sync_users_search USING fts5(email, destination_email, "
    "content='sync_users', content_rowid='id', tokenize='trigram')",
)
ODD = (
    'o"brien@contoso.com',
    "back\\slash@contoso.com",
    "zoë.müller@exämple.de",
    "名前@例え.jp",
    "tab\there@contoso.com",
    "emoji😀@contoso.com",
    "nul\x00byte@contoso.com",
)


@pytest.fixture
def raw() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for statement in SCHEMA:
        conn.execute(statement)
    yield conn
    conn.close()


def _users() -> list[tuple[int, str, str]]:
    users = [(i + 1, f"user{i}@contoso.com", f"user{i}@fabrikam.com") for i in range(40)]
    for n, email in enumerate(ODD):
        users.append((100 + n, email, email.upper()))
    return users


def test_every_email_comes_through_json_in_every_batch(
    raw: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk_load, "SEARCH_BATCH", 7)  # several statements per add
    users = _users()
    raw.execute("BEGIN")
    raw.executemany("INSERT INTO sync_users VALUES (?, ?, ?)", users)
    with bulk_load.SearchBuild(raw) as search:
        search.add(users[:30])
        search.add(iter(users[30:]))  # any iterable, read once
        search.finish()
        search.copy_into(raw)
    raw.execute("COMMIT")
    # FTS5 compares its index with the content table, row by row and trigram by trigram.
    raw.execute(
        "INSERT INTO sync_users_search(sync_users_search, rank) VALUES ('integrity-check', 1)"
    )
    for user_id, email, destination in users:
        for column, text in (("email", email), ("destination_email", destination)):
            term = text[1:5]
            found = raw.execute(
                f"SELECT rowid FROM sync_users_search WHERE {column} LIKE ?", (f"%{term}%",)
            ).fetchall()
            assert (user_id,) in found, (column, text)
    assert raw.execute("SELECT count(*) FROM sync_users_search_docsize").fetchone() == (len(users),)


def test_an_empty_add_sends_nothing(raw: sqlite3.Connection) -> None:
    with bulk_load.SearchBuild(raw) as search:
        search.add([])
        search.finish()
        search.copy_into(raw)
    assert raw.execute("SELECT count(*) FROM sync_users_search_docsize").fetchone() == (0,)
