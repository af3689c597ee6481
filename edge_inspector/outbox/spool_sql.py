"""The spool's rows and the SQLite statements that keep them: the table, inserts, deletes, evictions.

Functions take an open connection and run inside the caller's transaction;
:class:`~edge_inspector.outbox.spool.Spool` holds the lock, the byte count and the
``seq``. Evictions are counted in ``meta`` per kind.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "KINDS",
    "Kind",
    "Outgoing",
    "SpoolBatch",
    "SpoolItem",
    "count_evictions",
    "count_rows",
    "create_tables",
    "delete_rows",
    "disk_full",
    "evict_for_full_disk",
    "evict_oldest",
    "insert_rows",
    "select_pending",
]

Kind = Literal["verdict", "heatmap"]
KINDS: tuple[Kind, ...] = ("verdict", "heatmap")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    seq          INTEGER NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('verdict', 'heatmap')),
    topic        TEXT NOT NULL,
    payload      BLOB NOT NULL,
    qos          INTEGER NOT NULL,
    retain       INTEGER NOT NULL,
    content_type TEXT,
    created      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_kind ON messages (kind, id);
INSERT OR IGNORE INTO meta (key, value) VALUES ('seq', 0), ('evicted_verdict', 0), ('evicted_heatmap', 0);
"""
# AUTOINCREMENT: ids are never reused, even after the table empties, so a
# reader that remembers the last id it saw (``pending(after_id=...)``) never
# misses a new row.


def disk_full(exc: sqlite3.Error) -> bool:
    """Whether SQLite failed for lack of disk space."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)


@dataclass(frozen=True)
class Outgoing:
    """A message to spool, added to a :class:`SpoolBatch` under its ``seq``."""

    kind: Kind
    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    content_type: str | None = None


@dataclass
class SpoolBatch:
    """Messages written in one transaction (:meth:`Spool.batch`): a ``seq`` each verdict, in order.

    ``durable`` tells, once the batch is closed, whether they are on disk; when
    the disk is full they are not, and the caller sends ``messages`` itself.
    """

    first_seq: int
    seqs: list[int] = field(default_factory=list)
    messages: list[tuple[int, Outgoing]] = field(default_factory=list)
    durable: bool = False

    def next_seq(self) -> int:
        """Hand out the next ``seq``; the messages added after it carry it."""
        self.seqs.append(self.first_seq + len(self.seqs))
        return self.seqs[-1]

    def add(self, message: Outgoing) -> None:
        """Add a message under the last ``seq`` handed out.

        Raises:
            ValueError: no ``seq`` was handed out yet.
        """
        if not self.seqs:
            raise ValueError("next_seq() first: every spooled message carries a seq")
        self.messages.append((self.seqs[-1], message))


@dataclass(frozen=True)
class SpoolItem:
    """One spooled message, as read back for publishing."""

    id: int
    seq: int
    kind: Kind
    topic: str
    payload: bytes
    qos: int
    retain: bool
    content_type: str | None
    created: float


def insert_rows(conn: sqlite3.Connection, rows: Sequence[tuple[object, ...]], created: float) -> list[int]:
    """Rows ``(seq, kind, topic, payload, qos, retain, content_type)`` in; their ids, in order."""
    return [
        int(
            conn.execute(
                "INSERT INTO messages (seq, kind, topic, payload, qos, retain, content_type, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*row, created),
            ).lastrowid
            or 0
        )
        for row in rows
    ]


def evict_oldest(conn: sqlite3.Connection, need: int) -> tuple[dict[str, int], int]:
    """Delete the oldest rows, heatmaps first, until ``need`` payload bytes are freed; (evicted per kind, freed)."""
    evicted = dict.fromkeys(KINDS, 0)
    freed = 0
    for kind in ("heatmap", "verdict"):
        while freed < need:
            row = conn.execute(
                "SELECT id, LENGTH(payload) FROM messages WHERE kind = ? ORDER BY id LIMIT 1", (kind,)
            ).fetchone()
            if row is None:
                break
            conn.execute("DELETE FROM messages WHERE id = ?", (row[0],))
            freed += int(row[1])
            evicted[kind] += 1
    for kind, count in evicted.items():
        if count:
            conn.execute("UPDATE meta SET value = value + ? WHERE key = ?", (count, f"evicted_{kind}"))
    return evicted, freed


def evict_for_full_disk(conn: sqlite3.Connection) -> tuple[dict[str, int], int]:
    """Delete every heatmap, or else the oldest quarter of the verdicts; (evicted per kind, bytes freed)."""
    rows = conn.execute("SELECT id, LENGTH(payload) FROM messages WHERE kind = 'heatmap'").fetchall()
    kind: Kind = "heatmap"
    if not rows:
        count = int(conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
        rows = conn.execute(
            "SELECT id, LENGTH(payload) FROM messages ORDER BY id LIMIT ?", (max(1, count // 4),)
        ).fetchall()
        kind = "verdict"
    conn.executemany("DELETE FROM messages WHERE id = ?", [(r[0],) for r in rows])
    conn.execute("UPDATE meta SET value = value + ? WHERE key = ?", (len(rows), f"evicted_{kind}"))
    return {**dict.fromkeys(KINDS, 0), kind: len(rows)}, sum(int(r[1]) for r in rows)


def delete_rows(conn: sqlite3.Connection, row_ids: Sequence[int]) -> list[int]:
    """Delete rows by id; the payload sizes of those that were there."""
    return [
        int(found[0])
        for row_id in row_ids
        if (found := conn.execute("DELETE FROM messages WHERE id = ? RETURNING LENGTH(payload)", (row_id,)).fetchone())
    ]


def select_pending(conn: sqlite3.Connection, after_id: int, limit: int) -> list[SpoolItem]:
    """Up to ``limit`` rows with ``id > after_id``, oldest first."""
    rows = conn.execute(
        "SELECT id, seq, kind, topic, payload, qos, retain, content_type, created"
        " FROM messages WHERE id > ? ORDER BY id LIMIT ?",
        (after_id, limit),
    ).fetchall()
    return [
        SpoolItem(
            id=r[0],
            seq=r[1],
            kind=r[2],
            topic=r[3],
            payload=bytes(r[4]),
            qos=r[5],
            retain=bool(r[6]),
            content_type=r[7],
            created=r[8],
        )
        for r in rows
    ]


def create_tables(conn: sqlite3.Connection) -> tuple[int, int]:
    """Create what is missing; the payload bytes held and the last ``seq`` handed out."""
    conn.executescript(_SCHEMA)
    held = int(conn.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()[0])
    return held, int(conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])


def count_rows(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows waiting, per kind."""
    counts = dict(conn.execute("SELECT kind, COUNT(*) FROM messages GROUP BY kind").fetchall())
    return {kind: int(counts.get(kind, 0)) for kind in KINDS}


def count_evictions(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows evicted since the file was created, per kind."""
    meta = dict(conn.execute("SELECT key, value FROM meta WHERE key LIKE 'evicted_%'").fetchall())
    return {kind: int(meta.get(f"evicted_{kind}", 0)) for kind in KINDS}
