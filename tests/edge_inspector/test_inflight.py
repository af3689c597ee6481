"""The publisher's in-flight bookkeeping on its own, no broker: epochs, cursor, early and refused answers."""

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge_inspector.outbox.inflight import InFlight

OK = ReasonCode(PacketTypes.PUBACK, "Success")
REFUSED = ReasonCode(PacketTypes.PUBACK, "Not authorized")


def test_rows_wait_for_their_answer_within_the_window() -> None:
    inflight = InFlight()
    assert inflight.handed(row=1, mid=11, epoch=0, qos=1) and inflight.handed(row=2, mid=12, epoch=0, qos=1)
    assert len(inflight) == 2 and inflight.room(3) == 1 and inflight.cursor == 2
    assert not inflight.answered and inflight.take() == ([], [])
    inflight.answer(12, OK)
    assert inflight.answered and inflight.take() == ([2], []) and len(inflight) == 1
    assert not inflight.answered  # taken once


def test_qos_0_is_held_once_written_until_a_barrier_answers() -> None:
    """Written to the socket is not received: a QoS 0 row is done only when a later barrier is answered."""
    inflight = InFlight()
    inflight.handed(row=5, mid=1, epoch=0, qos=0)
    assert len(inflight) == 1 and inflight.room(2) == 1 and not inflight.barrier_due
    inflight.answer(1, None)  # paho's on_publish after the socket write
    assert len(inflight) == 0 and inflight.held == 1 and inflight.room(2) == 2
    assert inflight.take() == ([], []) and inflight.barrier_due
    inflight.barrier_sent(mid=2, covers=1, epoch=0)
    assert not inflight.barrier_due
    inflight.handed(row=6, mid=3, epoch=0, qos=0)
    inflight.answer(3, None)  # written after the barrier went out: the next barrier's
    assert inflight.held == 2 and not inflight.barrier_due
    inflight.answer(2, None)  # the UNSUBACK
    assert inflight.take() == ([5], []) and inflight.held == 1 and inflight.barrier_due


def test_a_barrier_answered_before_it_is_registered_confirms_its_rows() -> None:
    inflight = InFlight()
    inflight.handed(row=1, mid=1, epoch=0, qos=0)
    inflight.answer(1, None)
    inflight.answer(2, None)  # the UNSUBACK beat the sender's registration
    inflight.barrier_sent(mid=2, covers=1, epoch=0)
    assert inflight.take() == ([1], []) and inflight.held == 0 and not inflight.barrier_due


def test_held_rows_go_again_when_the_connection_drops_before_their_barrier() -> None:
    inflight = InFlight()
    for row in (1, 2):
        inflight.handed(row=row, mid=row, epoch=0, qos=0)
        inflight.answer(row, None)
    inflight.barrier_sent(mid=3, covers=2, epoch=0)
    inflight.handed(row=3, mid=4, epoch=0, qos=1)
    assert inflight.lost() == 3  # two held, one unanswered: all three go again
    assert (inflight.held, len(inflight), inflight.cursor, inflight.barrier_due) == (0, 0, 0, False)
    inflight.answer(3, None)  # the old connection's barrier answer, late: it confirms nothing
    inflight.barrier_sent(mid=9, covers=1, epoch=0)  # nor does a barrier of the old epoch
    assert inflight.take() == ([], [])


def test_an_answer_that_beats_the_registration_is_applied_when_the_row_is_registered() -> None:
    inflight = InFlight()
    inflight.answer(7, OK)  # paho's network thread was faster than the sender
    assert not inflight.answered
    inflight.handed(row=3, mid=7, epoch=0, qos=1)
    assert inflight.take() == ([3], []) and len(inflight) == 0


def test_unmatched_answers_of_other_messages_are_forgotten() -> None:
    inflight = InFlight()
    inflight.answer(99, OK)  # the status message's PUBACK: not a spool row
    inflight.handed(row=1, mid=5, epoch=0, qos=1)
    inflight.handed(row=2, mid=99, epoch=0, qos=1)  # paho reuses mid 99 later
    assert len(inflight) == 2 and inflight.take() == ([], [])


def test_a_refused_row_is_reported_and_not_acknowledged() -> None:
    inflight = InFlight()
    inflight.handed(row=4, mid=8, epoch=0, qos=1)
    inflight.answer(8, REFUSED)
    acked, refused = inflight.take()
    assert acked == [] and refused == [(4, REFUSED)]


def test_a_lost_connection_starts_a_new_epoch_from_the_first_row() -> None:
    inflight = InFlight()
    inflight.handed(row=1, mid=1, epoch=0, qos=1)
    inflight.handed(row=2, mid=2, epoch=0, qos=1)
    assert inflight.lost() == 2
    assert (inflight.epoch, inflight.cursor, len(inflight)) == (1, 0, 0)
    inflight.answer(1, OK)  # an answer from the old connection matches nothing registered now
    assert not inflight.handed(row=3, mid=3, epoch=0, qos=1)  # the sender read this row before the drop
    assert inflight.cursor == 0 and len(inflight) == 0
    assert inflight.handed(row=1, mid=4, epoch=1, qos=1)  # sent again from the start
    assert inflight.take() == ([], [])


def test_skipping_an_unpublishable_row_moves_the_cursor_in_its_epoch_only() -> None:
    inflight = InFlight()
    inflight.skipped(6, epoch=0)
    assert inflight.cursor == 6
    inflight.lost()
    inflight.skipped(9, epoch=0)
    assert inflight.cursor == 0


def test_a_barrier_the_broker_never_answers_gives_its_rows_up_as_delivered() -> None:
    inflight = InFlight()
    assert inflight.barrier_expired() == 0  # none in flight
    for row in (1, 2):
        inflight.handed(row=row, mid=row, epoch=0, qos=0)
        inflight.answer(row, None)
    inflight.barrier_sent(mid=3, covers=2, epoch=0)
    assert inflight.barrier_pending and not inflight.barrier_due
    assert inflight.barrier_expired() == 2  # the sender's timeout: best effort, counted by the sender
    assert inflight.take() == ([1, 2], []) and not inflight.barrier_pending and inflight.held == 0


def test_a_stale_answer_never_settles_a_later_row_with_the_same_id() -> None:
    inflight = InFlight()
    inflight.answer(42, OK)  # the status message's PUBACK, long before mid 42 comes round again
    inflight.forget_unmatched()  # the sender starts a batch
    inflight.handed(row=7, mid=42, epoch=0, qos=1)
    assert len(inflight) == 1 and inflight.take() == ([], [])  # waits for its own PUBACK
