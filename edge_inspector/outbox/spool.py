"""Store and forward: verdicts and heatmaps wait on disk until the broker has them.

One SQLite file in WAL mode (its tables and statements: :mod:`edge_inspector.outbox.spool_sql`).
A verdict is written here before it is published and deleted only when the
broker acknowledges it, so a crash, a power cut or a broker outage loses
nothing that was spooled. Rows are read back in ``id`` order, which is the
order they were written (a verdict before its heatmap). The spool is bounded
by the bytes of its payloads: when a new message does not fit, the oldest
heatmaps go first, then the oldest verdicts, each eviction counted per kind,
persisted and logged at WARNING.

A full disk is not a full spool: SQLite then refuses every write
(:class:`SpoolFullError`). :meth:`Spool.batch` first frees room as the bound
does (heatmaps, then the oldest verdicts, each eviction counted) and retries;
when nothing more can go, the caller publishes without durability until the
disk has room again. ``seq`` goes on in memory meanwhile and is persisted by
the next write that succeeds, so it never repeats while the process lives (a
crash while the disk is full can repeat the ``seq`` handed out since).

``synchronous=FULL``: in WAL mode ``NORMAL`` is safe against a crash of the
process but may lose the last commits on a power cut, which on a production
line is an ordinary event. Losing a commit would lose a verdict or, worse, hand
out a ``seq`` twice, and the MES drops a repeated ``seq`` as a duplicate. One
fsync per commit is cheap at inspection rates.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from edge_inspector.errors import SpoolError, SpoolFullError
from edge_inspector.outbox.spool_sql import (
    KINDS,
    Kind,
    Outgoing,
    SpoolBatch,
    SpoolItem,
    count_evictions,
    count_rows,
    create_tables,
    delete_rows,
    disk_full,
    evict_for_full_disk,
    evict_oldest,
    insert_rows,
    select_pending,
)

__all__ = ["KINDS", "Kind", "Outgoing", "Spool", "SpoolBatch", "SpoolItem"]

log = logging.getLogger(__name__)


class Spool:
    """A bounded, persistent FIFO of outgoing MQTT messages.

    Thread-safe: one connection shared by all threads behind a lock. Use as a
    context manager or call :meth:`close`.

    Args:
        path: the SQLite file; its folder is created when missing.
        max_bytes: most payload bytes kept; older messages are evicted beyond it.

    Raises:
        SpoolError: the file cannot be created or opened.
        ValueError: ``max_bytes`` is not positive.
    """

    def __init__(self, path: Path, *, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"spool {self.path}: cannot create its folder ({exc.strerror or exc})") from exc
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5.0)
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {self.path}: cannot open ({exc}); is the folder writable?") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise SpoolError(f"spool {self.path}: the file system does not support WAL (got {mode!r})")
            conn.execute("PRAGMA synchronous=FULL")
            self._bytes, self._seq = create_tables(conn)
            self._seq_saved = self._seq
        except sqlite3.Error as exc:
            conn.close()
            raise SpoolError(f"spool {self.path}: cannot initialise ({exc})") from exc
        except SpoolError:
            conn.close()
            raise
        self._conn = conn
        if (depth := self.depth())["verdicts"] or depth["heatmaps"]:
            left = f"{depth['verdicts']} verdict(s) and {depth['heatmaps']} heatmap(s)"
            log.info("spool %s holds %s from before; they are sent first", self.path, left)

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file; later calls raise :class:`SpoolError`. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- internals ---------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise SpoolError(f"spool {self.path} is closed")
        return self._conn

    def _fail(self, what: str, exc: sqlite3.Error) -> SpoolError:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.debug("rollback after a failed %s also failed", what, exc_info=True)
        if disk_full(exc):
            return SpoolFullError(f"spool {self.path}: {what} failed: the disk is full ({exc})")
        return SpoolError(f"spool {self.path}: {what} failed: {exc}")

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` .. ``COMMIT``; an SQLite error rolls back and becomes :class:`SpoolError`.

        The caller holds ``self._lock``.
        """
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            if self._seq != self._seq_saved:  # seq handed out while the disk was full
                conn.execute("UPDATE meta SET value = MAX(value, ?) WHERE key = 'seq'", (self._seq,))
            conn.execute("COMMIT")
            self._seq_saved = self._seq
        except sqlite3.Error as exc:
            raise self._fail(what, exc) from exc

    # -- writing -----------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[SpoolBatch]:
        """Hand out ``seq`` and collect messages, then write them all in one transaction.

        ``with spool.batch() as b: seq = b.next_seq(); b.add(Outgoing(...))``.
        A kill at any point leaves either all of it or none of it: no gap and
        no repeat in the ``seq`` on disk. When the spool is full, older
        messages are evicted first (heatmaps before verdicts, oldest first,
        counted and logged at WARNING). On a full disk nothing is spooled and
        ``durable`` stays False: the ``seq`` are handed out from memory
        (persisted by the next write that succeeds) and the caller sends the
        messages itself. An exception in the block writes nothing and hands
        out no ``seq``.

        Raises:
            SpoolError: the file cannot be written for another reason, or one
                message is larger than ``max_bytes``.
            ValueError: a message's ``kind`` or ``qos`` is not valid.
        """
        with self._lock:
            batch = SpoolBatch(first_seq=self._seq + 1)
            yield batch
            for _, message in batch.messages:
                self._check(message)
            rows = [
                (seq, m.kind, m.topic, bytes(m.payload), m.qos, int(m.retain), m.content_type)
                for seq, m in batch.messages
            ]
            self._seq += len(batch.seqs)
            evicted = dict.fromkeys(KINDS, 0)
            try:
                if rows:
                    evicted = self._insert_freeing_disk(rows, sum(len(m.payload) for _, m in batch.messages))
                else:
                    with self._transaction("persisting seq"):
                        pass  # the commit persists self._seq
                batch.durable = True
            except SpoolFullError:
                batch.durable = False
        self._log_evictions(evicted, self._seq)

    def _insert(self, rows: list[tuple[object, ...]], size: int) -> dict[str, int]:
        """Rows (seq, kind, topic, payload, qos, retain, content_type) in, one transaction, room made first;
        returns the evictions by kind. The caller holds ``self._lock``."""
        with self._transaction(
            f"writing {rows[0][1]} seq={rows[0][0]}" + (" and more" if len(rows) > 1 else "")
        ) as conn:
            evicted, freed = evict_oldest(conn, self._bytes + size - self.max_bytes)
            insert_rows(conn, rows, time.time())
        self._bytes += size - freed
        return evicted

    def _insert_freeing_disk(self, rows: list[tuple[object, ...]], size: int) -> dict[str, int]:
        """:meth:`_insert`; on a full disk, give up what the bound would and try once more."""
        try:
            return self._insert(rows, size)
        except SpoolFullError:
            freed = self._free_disk()
            if not any(freed.values()):
                raise
            evicted = self._insert(rows, size)
            return {k: evicted[k] + freed[k] for k in KINDS}

    def _check(self, message: Outgoing) -> None:
        if message.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {message.kind!r}")
        if message.qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {message.qos!r}")
        if len(message.payload) > self.max_bytes:
            raise SpoolError(
                f"spool {self.path}: a {message.kind} of {len(message.payload)} bytes cannot fit in "
                f"max_bytes={self.max_bytes}; raise spool.max_mb"
            )

    def _log_evictions(self, evicted: dict[str, int], seq: int) -> None:
        if any(evicted.values()):
            log.warning(
                "spool full (%d bytes max): evicted %d heatmap(s) and %d verdict(s) to keep seq=%d",
                self.max_bytes,
                evicted["heatmap"],
                evicted["verdict"],
                seq,
            )

    def _free_disk(self) -> dict[str, int]:
        """On a full disk: drop every heatmap, or else the oldest quarter of the verdicts (counted)."""
        try:
            with self._transaction("freeing room on a full disk") as conn:
                evicted, freed = evict_for_full_disk(conn)
        except SpoolFullError:  # not even a delete fits: nothing to do but wait for room
            return dict.fromkeys(KINDS, 0)
        self._bytes -= freed
        return evicted

    def ack_many(self, row_ids: Sequence[int]) -> int:
        """Delete delivered rows in one transaction; returns how many were still there.

        Raises:
            SpoolError: the file cannot be written (:class:`SpoolFullError` on a full disk).
        """
        with self._lock:
            with self._transaction(f"ack of {len(row_ids)} row(s)") as conn:
                sizes = delete_rows(conn, row_ids)
            self._bytes -= sum(sizes)
            return len(sizes)

    def ack(self, row_id: int) -> bool:
        """Delete a delivered row.

        Returns:
            False when the row was already gone (acknowledged twice, or evicted).

        Raises:
            SpoolError: the file cannot be written.
        """
        return self.ack_many([row_id]) == 1

    # -- reading -----------------------------------------------------------
    def pending(self, limit: int, after_id: int = 0) -> list[SpoolItem]:
        """Up to ``limit`` rows with ``id > after_id``, oldest first.

        Raises:
            SpoolError: the file cannot be read.
        """
        with self._lock:
            conn = self._db()
            try:
                return select_pending(conn, after_id, limit)
            except sqlite3.Error as exc:
                raise self._fail("reading pending rows", exc) from exc

    def depth(self) -> dict[str, int]:
        """What waits: ``verdicts``, ``heatmaps`` and payload ``bytes``."""
        with self._lock:
            conn = self._db()
            try:
                counts = count_rows(conn)
            except sqlite3.Error as exc:
                raise self._fail("counting rows", exc) from exc
            return {"verdicts": counts["verdict"], "heatmaps": counts["heatmap"], "bytes": self._bytes}

    def evictions(self) -> dict[str, int]:
        """Messages evicted to make room since the file was created: ``verdicts`` and ``heatmaps``."""
        with self._lock:
            conn = self._db()
            try:
                evicted = count_evictions(conn)
            except sqlite3.Error as exc:
                raise self._fail("reading eviction counters", exc) from exc
        return {"verdicts": evicted["verdict"], "heatmaps": evicted["heatmap"]}
