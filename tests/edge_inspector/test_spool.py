"""The store-and-forward spool on a real SQLite file."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_inspector.errors import EdgeInspectorError, SpoolError
from edge_inspector.outbox.spool import Outgoing, Spool, SpoolItem

MB = 1 << 20


def _inspection(spool: Spool, verdict: int = 100, heatmap: int | None = None) -> int:
    """One batch as the agent writes it: a new ``seq``, its verdict of ``verdict`` bytes and maybe a heatmap."""
    with spool.batch() as batch:
        seq = batch.next_seq()
        batch.add(Outgoing("verdict", "p/s/verdict", b"v" * verdict, 1, content_type="application/json"))
        if heatmap is not None:
            batch.add(Outgoing("heatmap", "p/s/heatmap", b"h" * heatmap, 0, content_type="image/jpeg"))
    return seq


def test_seq_is_monotonic_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "spool.sqlite"
    with Spool(path, max_bytes=MB) as spool:
        assert [_inspection(spool) for _ in range(3)] == [1, 2, 3]
        with spool.batch() as batch:  # a seq without messages is kept too
            assert batch.next_seq() == 4
        assert batch.durable
    with Spool(path, max_bytes=MB) as spool:
        assert _inspection(spool) == 5
        assert spool.path.with_name("spool.sqlite-wal").exists()  # WAL mode


def test_a_batch_that_raises_writes_nothing_and_hands_out_no_seq(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite", max_bytes=MB) as spool:
        with pytest.raises(RuntimeError, match="building the verdict failed"), spool.batch() as batch:
            batch.next_seq()
            batch.add(Outgoing("verdict", "t", b"x", 1))
            raise RuntimeError("building the verdict failed")
        assert spool.depth()["verdicts"] == 0
        assert _inspection(spool) == 1
        with pytest.raises(ValueError, match="next_seq"), spool.batch() as batch:
            batch.add(Outgoing("verdict", "t", b"x", 1))  # every message carries a seq


def test_pending_in_write_order_with_cursor_and_limit(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite", max_bytes=MB) as spool:
        for _ in (1, 2, 3):
            _inspection(spool, 100, 100)
        items = spool.pending(10)
        ids = [i.id for i in items]
        assert [(i.kind, i.seq) for i in items] == [(k, s) for s in (1, 2, 3) for k in ("verdict", "heatmap")]
        assert ids == sorted(ids)
        first = items[0]
        assert isinstance(first, SpoolItem)
        assert (first.topic, first.payload, first.qos, first.retain, first.content_type) == (
            "p/s/verdict",
            b"v" * 100,
            1,
            False,
            "application/json",
        )
        assert [i.id for i in spool.pending(2, after_id=ids[1])] == ids[2:4]
        assert spool.pending(10, after_id=ids[-1]) == []


def test_ack_deletes_and_ids_are_never_reused(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite", max_bytes=MB) as spool:
        _inspection(spool, 10, 30)
        a, b = (item.id for item in spool.pending(2))
        assert spool.depth() == {"verdicts": 1, "heatmaps": 1, "bytes": 40}
        assert spool.ack(a) is True
        assert spool.ack(a) is False  # twice: harmless
        assert spool.depth() == {"verdicts": 0, "heatmaps": 1, "bytes": 30}
        spool.ack(b)
        assert spool.depth() == {"verdicts": 0, "heatmaps": 0, "bytes": 0}
        # A reader that remembers the last id it saw must see rows written after the table emptied.
        _inspection(spool)
        assert spool.pending(1)[0].id > b


def test_pending_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path, max_bytes=MB) as spool:
        _inspection(spool, 10, 20)
    with Spool(path, max_bytes=MB) as spool:
        assert [(i.kind, i.seq) for i in spool.pending(10)] == [("verdict", 1), ("heatmap", 1)]
        assert spool.depth()["bytes"] == 30


def test_eviction_heatmaps_first_then_verdicts_counted_logged_and_persisted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.sqlite"
    caplog.set_level(logging.WARNING, logger="edge_inspector.outbox.spool")
    with Spool(path, max_bytes=1000) as spool:
        for _ in (1, 2, 3):
            _inspection(spool, 100, 200)
        assert spool.depth()["bytes"] == 900
        assert spool.evictions() == {"verdicts": 0, "heatmaps": 0}
        assert not caplog.records

        _inspection(spool, 250)  # needs 150 more: the oldest heatmap goes
        assert [(i.kind, i.seq) for i in spool.pending(10) if i.kind == "heatmap"] == [("heatmap", 2), ("heatmap", 3)]
        assert spool.evictions() == {"verdicts": 0, "heatmaps": 1}
        assert "evicted 1 heatmap(s) and 0 verdict(s)" in caplog.text
        assert all(r.levelno == logging.WARNING for r in caplog.records)

        _inspection(spool, 700)  # both remaining heatmaps, then verdicts 1..3 go
        assert [(i.kind, i.seq) for i in spool.pending(10)] == [("verdict", 4), ("verdict", 5)]
        assert spool.evictions() == {"verdicts": 3, "heatmaps": 3}
        assert spool.depth() == {"verdicts": 2, "heatmaps": 0, "bytes": 950}
    with Spool(path, max_bytes=1000) as spool:
        assert spool.evictions() == {"verdicts": 3, "heatmaps": 3}
        assert spool.depth()["bytes"] == 950


def test_a_payload_larger_than_the_spool_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite", max_bytes=100) as spool:
        _inspection(spool, 50)
        with pytest.raises(SpoolError, match="cannot fit"):
            _inspection(spool, 10, 101)
        assert spool.depth()["verdicts"] == 1  # nothing was evicted for it, nor written
        assert _inspection(spool, 10) == 2  # and its seq was not handed out


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        Spool(tmp_path / "s.sqlite", max_bytes=0)
    with Spool(tmp_path / "s.sqlite", max_bytes=MB) as spool:
        for wrong, problem in ((Outgoing("image", "t", b"x", 0), "kind"), (Outgoing("verdict", "t", b"x", 3), "qos")):  # type: ignore[arg-type]
            with pytest.raises(ValueError, match=problem), spool.batch() as batch:
                batch.next_seq()
                batch.add(wrong)


def test_closed_spool_raises(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=MB)
    spool.close()
    spool.close()  # idempotent
    with pytest.raises(SpoolError, match="closed"):
        _inspection(spool)


def test_unwritable_paths_raise_spool_error(tmp_path: Path) -> None:
    # Permission bits do not stop root, so use paths no user can write a database to.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SpoolError, match="cannot create its folder") as info:
        Spool(blocker / "spool.sqlite", max_bytes=MB)
    assert isinstance(info.value, EdgeInspectorError)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(SpoolError, match=str(folder)):
        Spool(folder, max_bytes=MB)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 192 KiB tmpfs: SQLite hits ENOSPC like on a full SD card (needs root and mount rights)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs to fill the disk needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_leaves_the_batch_undurable_and_keeps_earlier_rows(tiny_disk: Path) -> None:
    with Spool(tiny_disk / "spool.sqlite", max_bytes=100 * MB) as spool:
        _inspection(spool)
        written = 0
        for _ in range(100):
            with spool.batch() as batch:
                batch.next_seq()
                batch.add(Outgoing("verdict", "p/s/verdict", b"v", 1))
                batch.add(Outgoing("heatmap", "p/s/heatmap", bytes(20_000), 0))
            if not batch.durable:  # the caller publishes its messages itself
                break
            written += 1
        assert not batch.durable and written < 100
        assert spool.depth()["verdicts"] == 1 + written
        assert spool.depth()["heatmaps"] == written
        assert spool.pending(1)[0].seq == 1
        assert batch.seqs == [written + 2] and [seq for seq, _ in batch.messages] == [written + 2] * 2


def test_concurrent_writers_get_unique_seqs(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite", max_bytes=MB) as spool:
        seqs: list[int] = []
        lock = threading.Lock()

        def work() -> None:
            for _ in range(25):
                seq = _inspection(spool, 10)
                with lock:
                    seqs.append(seq)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(seqs) == list(range(1, 101))
        assert spool.depth() == {"verdicts": 100, "heatmaps": 0, "bytes": 1000}


_WRITER = """
import sys
from pathlib import Path
from edge_inspector.outbox.spool import Outgoing, Spool

spool = Spool(Path(sys.argv[1]), max_bytes=1 << 30)
print("ready", flush=True)


while True:  # batches of 3 inspections, each a verdict and a heatmap, until killed
    with spool.batch() as batch:
        for _ in range(3):
            seq = batch.next_seq()
            batch.add(Outgoing("verdict", "t/verdict", b"v%d" % seq, 1))
            batch.add(Outgoing("heatmap", "t/heatmap", bytes(2000), 0))
"""


def test_a_kill_at_any_point_leaves_no_gap_and_no_repeat_in_seq(tmp_path: Path) -> None:
    """SIGKILL a process recording batches, again and again: the seq on disk stay 1..n, once each."""
    import random
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "spool.sqlite"
    rng = random.Random(7)
    for _ in range(12):
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.15))
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(10)
    with Spool(path, max_bytes=1 << 30) as spool:
        rows = spool.pending(1_000_000)
        verdicts = [r.seq for r in rows if r.kind == "verdict"]
        heatmaps = [r.seq for r in rows if r.kind == "heatmap"]
        assert verdicts, "the writers recorded nothing before being killed"
        assert verdicts == list(range(1, len(verdicts) + 1))  # no gap, no repeat, in order
        assert heatmaps == verdicts  # every verdict with its heatmap, or neither
        assert len(verdicts) % 3 == 0  # whole batches only
        assert _inspection(spool) == len(verdicts) + 1  # the persisted seq is the last one on disk
