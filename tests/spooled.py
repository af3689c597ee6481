"""Test helper: verdicts spooled as the agent spools them, through :meth:`Publisher.batch`."""

from __future__ import annotations

import json
from collections.abc import Callable

from edge_inspector.outbox import Publisher

__all__ = ["spool_verdicts"]


def _seq_json(seq: int) -> bytes:
    return json.dumps({"seq": seq}).encode()


def spool_verdicts(
    publisher: Publisher,
    count: int,
    verdict: Callable[[int], bytes] = _seq_json,
    heatmap: Callable[[int], bytes | None] = lambda _seq: None,
) -> list[int]:
    """``count`` verdicts in one batch (one transaction), each with its heatmap where ``heatmap`` gives one;
    returns their ``seq``."""
    seqs = []
    with publisher.batch() as batch:
        for _ in range(count):
            seq = batch.next_seq()
            batch.add("verdict", verdict(seq))
            if (picture := heatmap(seq)) is not None:
                batch.add("heatmap", picture)
            seqs.append(seq)
    return seqs
