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
from edge_inspector.spool import Spool, SpoolItem

MB = 1 << 20


def _verdict(spool: Spool, seq: int, size: int = 100) -> int:
    return spool.put("verdict", "p/s/verdict", b"v" * size, seq=seq, qos=1, content_type="application/json")


def _heatmap(spool: Spool, seq: int, size: int = 100) -> int:
    return spool.put("heatmap", "p/s/heatmap", b"h" * size, seq=seq, qos=0, content_type="image/jpeg")


def test_seq_is_monotonic_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "spool.sqlite"
    with Spool(path, max_bytes=MB) as spool:
        assert [spool.next_seq() for _ in range(3)] == [1, 2, 3]
    with Spool(path, max_bytes=MB) as spool:
        assert spool.next_seq() == 4
        assert spool.path.with_name("spool.sqlite-wal").exists()  # WAL mode


def test_pending_in_write_order_with_cursor_and_limit(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite", max_bytes=MB) as spool:
        ids = []
        for seq in (1, 2, 3):
            ids.append(_verdict(spool, seq))
            ids.append(_heatmap(spool, seq))
        items = spool.pending(10)
        assert [(i.kind, i.seq) for i in items] == [(k, s) for s in (1, 2, 3) for k in ("verdict", "heatmap")]
        assert [i.id for i in items] == ids == sorted(ids)
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
        a, b = _verdict(spool, 1, 10), _heatmap(spool, 1, 30)
        assert spool.depth() == {"verdicts": 1, "heatmaps": 1, "bytes": 40}
        assert spool.ack(a) is True
        assert spool.ack(a) is False  # twice: harmless
        assert spool.depth() == {"verdicts": 0, "heatmaps": 1, "bytes": 30}
        spool.ack(b)
        assert spool.depth() == {"verdicts": 0, "heatmaps": 0, "bytes": 0}
        # A reader that remembers the last id it saw must see rows written after the table emptied.
        assert _verdict(spool, 2) > b


def test_pending_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path, max_bytes=MB) as spool:
        _verdict(spool, spool.next_seq(), 10)
        _heatmap(spool, 1, 20)
    with Spool(path, max_bytes=MB) as spool:
        assert [(i.kind, i.seq) for i in spool.pending(10)] == [("verdict", 1), ("heatmap", 1)]
        assert spool.depth()["bytes"] == 30


def test_eviction_heatmaps_first_then_verdicts_counted_logged_and_persisted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.sqlite"
    caplog.set_level(logging.WARNING, logger="edge_inspector.spool")
    with Spool(path, max_bytes=1000) as spool:
        for seq in (1, 2, 3):
            _verdict(spool, seq, 100)
            _heatmap(spool, seq, 200)
        assert spool.depth()["bytes"] == 900
        assert spool.evictions() == {"verdicts": 0, "heatmaps": 0}
        assert not caplog.records

        _verdict(spool, 4, 250)  # needs 150 more: the oldest heatmap goes
        assert [(i.kind, i.seq) for i in spool.pending(10) if i.kind == "heatmap"] == [("heatmap", 2), ("heatmap", 3)]
        assert spool.evictions() == {"verdicts": 0, "heatmaps": 1}
        assert "evicted 1 heatmap(s) and 0 verdict(s)" in caplog.text
        assert all(r.levelno == logging.WARNING for r in caplog.records)

        _verdict(spool, 5, 700)  # both remaining heatmaps, then verdicts 1..3 go
        assert [(i.kind, i.seq) for i in spool.pending(10)] == [("verdict", 4), ("verdict", 5)]
        assert spool.evictions() == {"verdicts": 3, "heatmaps": 3}
        assert spool.depth() == {"verdicts": 2, "heatmaps": 0, "bytes": 950}
    with Spool(path, max_bytes=1000) as spool:
        assert spool.evictions() == {"verdicts": 3, "heatmaps": 3}
        assert spool.depth()["bytes"] == 950


def test_a_payload_larger_than_the_spool_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite", max_bytes=100) as spool:
        _verdict(spool, 1, 50)
        with pytest.raises(SpoolError, match="cannot fit"):
            _heatmap(spool, 1, 101)
        assert spool.depth()["verdicts"] == 1  # nothing was evicted for it


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        Spool(tmp_path / "s.sqlite", max_bytes=0)
    with Spool(tmp_path / "s.sqlite", max_bytes=MB) as spool:
        with pytest.raises(ValueError, match="kind"):
            spool.put("image", "t", b"x", seq=1, qos=0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="qos"):
            spool.put("verdict", "t", b"x", seq=1, qos=3)


def test_closed_spool_raises(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=MB)
    spool.close()
    spool.close()  # idempotent
    with pytest.raises(SpoolError, match="closed"):
        spool.next_seq()


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


def test_full_disk_raises_spool_error_and_keeps_earlier_rows(tiny_disk: Path) -> None:
    with Spool(tiny_disk / "spool.sqlite", max_bytes=100 * MB) as spool:
        _verdict(spool, spool.next_seq())
        written = 0
        with pytest.raises(SpoolError, match="database or disk is full"):
            for _ in range(100):
                _heatmap(spool, spool.next_seq(), 20_000)
                written += 1
        assert written < 100
        assert spool.depth()["verdicts"] == 1
        assert spool.depth()["heatmaps"] == written
        assert spool.pending(1)[0].seq == 1


def test_concurrent_writers_get_unique_seqs(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite", max_bytes=MB) as spool:
        seqs: list[int] = []
        lock = threading.Lock()

        def work() -> None:
            for _ in range(25):
                seq = spool.next_seq()
                _verdict(spool, seq, 10)
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
from edge_inspector.spool import Outgoing, Spool

spool = Spool(Path(sys.argv[1]), max_bytes=1 << 30)
print("ready", flush=True)


def build(seq):
    return [Outgoing("verdict", "t/verdict", b"v%d" % seq, 1), Outgoing("heatmap", "t/heatmap", bytes(2000), 0)]


while True:  # batches of 3 inspections, each a verdict and a heatmap, until killed
    spool.record([build] * 3)
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
        assert spool.next_seq() == len(verdicts) + 1  # the persisted seq is the last one on disk
