"""The pipeline's output stage: order, backpressure, failures that reach the producer, thread priority."""

import os
import threading

import pytest
from polling import wait_until

from edge_inspector.priority import BACKGROUND_NICE
from edge_inspector.stage import Stage


def test_items_are_worked_in_order_on_the_stage_thread_and_close_finishes_them() -> None:
    done: list[tuple[int, str]] = []
    stage: Stage[int] = Stage("output", lambda item: done.append((item, threading.current_thread().name)))
    stage.start()
    stop = threading.Event()
    for item in range(10):
        assert stage.put(item, stop)
    assert stage.close(timeout=5)
    assert done == [(item, "output") for item in range(10)]


def test_a_full_stage_holds_the_producer_back_until_stopped() -> None:
    entered, release = threading.Event(), threading.Event()

    def work(_item: int) -> None:
        entered.set()
        release.wait()

    stage: Stage[int] = Stage("output", work, depth=1)
    stage.start()
    stop = threading.Event()
    assert stage.put(1, stop)  # taken by the worker, which waits
    assert entered.wait(5)
    assert stage.put(2, stop)  # fills the queue
    outcome: list[bool] = []
    producer = threading.Thread(target=lambda: outcome.append(stage.put(3, stop)))
    producer.start()
    producer.join(0.5)
    assert producer.is_alive()  # waiting for room, not dropping
    stop.set()
    producer.join(5)
    assert outcome == [False]
    release.set()
    assert stage.close(timeout=5)


def test_a_failure_in_the_stage_is_raised_in_the_producer() -> None:
    def work(item: int) -> None:
        if item == 2:
            raise OSError("disk I/O error")

    stage: Stage[int] = Stage("output", work)
    stage.start()
    stop = threading.Event()
    stage.put(1, stop)
    stage.put(2, stop)
    assert wait_until(lambda: stage.failure is not None, timeout=5)
    with pytest.raises(OSError, match="disk I/O error"):
        stage.put(3, stop)
    assert stage.close(timeout=5)


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice is Linux's")
def test_a_background_stage_runs_at_a_lower_cpu_priority() -> None:
    seen: list[int] = []
    stage: Stage[int] = Stage(
        "output", lambda _item: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())), background=True
    )
    stage.start()
    stage.put(1, threading.Event())
    assert stage.close(timeout=5)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen == [min(19, mine + BACKGROUND_NICE)]
