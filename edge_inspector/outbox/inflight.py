"""The sender's in-flight bookkeeping: which spool rows paho holds, and what the broker answered.

Pure and not thread-safe: :class:`~edge_inspector.outbox.sender.SpoolSender`
calls it under its own lock, from the sender thread (rows handed to paho) and
from paho's network thread (acknowledgements, disconnects). No I/O, no paho
calls.

A connection is an *epoch*. Rows are handed to paho in spool order; the
*cursor* is the last row handed in this epoch, so the sender asks the spool
for what comes after it. When the connection drops, the epoch changes, the
cursor goes back to the start and the unacknowledged rows are forgotten:
they are still in the spool and go again. An acknowledgement can beat the
sender's registration of its message id; it is held as *unmatched* until
the sender registers that id.

QoS 0 has no acknowledgement, and "written to the socket" is not "received":
bytes written in the moment before a connection dies (a broker killed, a link
cut) vanish with it. So a written QoS 0 row is *held*, not done, until a
*barrier* proves the broker read past it: the sender sends a packet the broker
must answer (an UNSUBSCRIBE), and since the broker reads one connection in
order, its answer confirms every row written before. Rows still held when the
connection drops go again on the next one.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Answer", "InFlight"]


class Answer(Protocol):
    """The broker's reason code for a message (paho's ``ReasonCode``)."""

    @property
    def is_failure(self) -> bool: ...


class InFlight:
    """Spool rows handed to paho and not yet answered, and the answers waiting to be applied."""

    def __init__(self) -> None:
        self.epoch = 0
        self.cursor = 0  # last spool row handed to paho in this epoch
        self._outstanding: dict[int, tuple[int, int]] = {}  # paho message id -> (spool row, QoS)
        self._held: list[int] = []  # QoS 0 rows written to the socket, in order, not yet past a barrier
        self._barrier: tuple[int, int] | None = None  # (message id, rows of _held it confirms), unanswered
        self._unmatched: dict[int, Answer | None] = {}  # answers that arrived before their id was registered
        self._acked: list[int] = []
        self._refused: list[tuple[int, Answer]] = []

    def __len__(self) -> int:
        """Rows awaiting the broker's answer (written QoS 0 rows waiting for a barrier are :attr:`held`)."""
        return len(self._outstanding)

    @property
    def held(self) -> int:
        """QoS 0 rows written to the socket and not yet confirmed by a barrier."""
        return len(self._held)

    @property
    def barrier_due(self) -> bool:
        """Whether rows are held that no barrier in flight covers, and none is in flight."""
        return self._barrier is None and bool(self._held)

    @property
    def barrier_pending(self) -> bool:
        """Whether a barrier went out and is not answered yet."""
        return self._barrier is not None

    def barrier_expired(self) -> int:
        """The broker never answered the barrier: its rows count as delivered (best effort); returns how many."""
        if self._barrier is None:
            return 0
        covers = self._barrier[1]
        self._confirm(covers)
        return covers

    def forget_unmatched(self) -> None:
        """Drop answers no registration claimed: called before the sender hands out more, so a stale answer
        (another message's, its id reused much later) never settles a new row."""
        self._unmatched.clear()

    def barrier_sent(self, mid: int, covers: int, epoch: int) -> None:
        """A barrier went out as message ``mid`` after the first ``covers`` held rows were written."""
        if epoch != self.epoch:
            return
        if mid in self._unmatched:  # answered before it was registered
            del self._unmatched[mid]
            self._confirm(covers)
        else:
            self._barrier = (mid, covers)

    def room(self, window: int) -> int:
        """How many more rows may be handed to paho with at most ``window`` unanswered."""
        return window - len(self._outstanding)

    @property
    def answered(self) -> bool:
        """True when acknowledged or refused rows wait for :meth:`take`."""
        return bool(self._acked or self._refused)

    def handed(self, row: int, mid: int, epoch: int, qos: int) -> bool:
        """Paho took ``row`` as message ``mid`` at ``qos`` in ``epoch``; False when that epoch has ended.

        Every row waits for its answer, unless that answer already came: the
        broker's PUBACK or PUBCOMP for QoS >= 1, paho's word that it wrote a
        QoS 0 message to the socket, which makes the row held. So ``window``
        bounds what paho holds whatever the QoS. Everything the sender handed
        out is registered after this call, so unmatched answers left belong to
        other messages (status, older epochs) and are forgotten.
        """
        if epoch != self.epoch:
            return False
        self.cursor = row
        if mid in self._unmatched:
            self._settle(row, qos, self._unmatched[mid])
        else:
            self._outstanding[mid] = (row, qos)
        self._unmatched.clear()
        return True

    def skipped(self, row: int, epoch: int) -> None:
        """``row`` can never be sent (and is deleted by the caller): move the cursor past it."""
        if epoch == self.epoch:
            self.cursor = row

    def answer(self, mid: int, reason: Answer | None) -> None:
        """Message ``mid`` was answered: PUBACK or PUBCOMP, a refusal, for QoS 0 written to the socket,
        or the barrier's UNSUBACK."""
        if self._barrier is not None and self._barrier[0] == mid:
            self._confirm(self._barrier[1])
            return
        handed = self._outstanding.pop(mid, None)
        if handed is None:
            self._unmatched[mid] = reason
        else:
            self._settle(*handed, reason)

    def lost(self) -> int:
        """The connection dropped: a new epoch from the first row; returns how many rows go again
        (unanswered, or held for want of a barrier)."""
        again = len(self._outstanding) + len(self._held)
        self.epoch += 1
        self.cursor = 0
        self._outstanding.clear()
        self._unmatched.clear()
        self._held.clear()
        self._barrier = None
        return again

    def take(self) -> tuple[list[int], list[tuple[int, Answer]]]:
        """The rows acknowledged (to delete) and refused (they stay) since the last call."""
        acked, refused = self._acked, self._refused
        self._acked, self._refused = [], []
        return acked, refused

    def _settle(self, row: int, qos: int, reason: Answer | None) -> None:
        if reason is not None and reason.is_failure:
            self._refused.append((row, reason))
        elif qos == 0:
            self._held.append(row)
        else:
            self._acked.append(row)

    def _confirm(self, covers: int) -> None:
        self._acked.extend(self._held[:covers])
        del self._held[:covers]
        self._barrier = None
