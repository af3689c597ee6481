"""The publisher's in-flight bookkeeping: which spool rows paho holds, and what the broker answered.

Pure and not thread-safe: :class:`~edge_inspector.publisher.Publisher` calls it
under its own lock, from the sender thread (rows handed to paho) and from
paho's network thread (acknowledgements, disconnects). No I/O, no paho calls.

A connection is an *epoch*. Rows are handed to paho in spool order; the
*cursor* is the last row handed in this epoch, so the sender asks the spool
for what comes after it. When the connection drops, the epoch changes, the
cursor goes back to the start and the unacknowledged rows are forgotten:
they are still in the spool and go again. An acknowledgement can beat the
sender's registration of its message id; it is held as *unmatched* until
the sender registers that id.
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
        self._outstanding: dict[int, int] = {}  # paho message id -> spool row
        self._unmatched: dict[int, Answer | None] = {}  # answers that arrived before their id was registered
        self._acked: list[int] = []
        self._refused: list[tuple[int, Answer]] = []

    def __len__(self) -> int:
        """Rows awaiting the broker's answer."""
        return len(self._outstanding)

    def room(self, window: int) -> int:
        """How many more rows may be handed to paho with at most ``window`` unanswered."""
        return window - len(self._outstanding)

    @property
    def answered(self) -> bool:
        """True when acknowledged or refused rows wait for :meth:`take`."""
        return bool(self._acked or self._refused)

    def handed(self, row: int, mid: int, epoch: int) -> bool:
        """Paho took ``row`` as message ``mid`` in ``epoch``; False when that epoch has ended (it goes again).

        Every row waits for its answer, unless that answer already came: the
        broker's PUBACK or PUBCOMP for QoS >= 1, paho's word that it wrote a
        QoS 0 message to the socket (a QoS 0 message still queued in paho when
        the connection drops is gone, so its row must stay until then). So
        ``window`` bounds what paho holds whatever the QoS. Everything the
        sender handed out is registered after this call, so unmatched answers
        left belong to other messages (status, older epochs) and are forgotten.
        """
        if epoch != self.epoch:
            return False
        self.cursor = row
        if mid in self._unmatched:
            self._settle(row, self._unmatched[mid])
        else:
            self._outstanding[mid] = row
        self._unmatched.clear()
        return True

    def skipped(self, row: int, epoch: int) -> None:
        """``row`` can never be sent (and is deleted by the caller): move the cursor past it."""
        if epoch == self.epoch:
            self.cursor = row

    def answer(self, mid: int, reason: Answer | None) -> None:
        """Message ``mid`` was answered: PUBACK or PUBCOMP, a refusal, or for QoS 0 written to the socket."""
        row = self._outstanding.pop(mid, None)
        if row is None:
            self._unmatched[mid] = reason
        else:
            self._settle(row, reason)

    def lost(self) -> int:
        """The connection dropped: a new epoch from the first row; returns how many rows were unanswered."""
        unanswered = len(self._outstanding)
        self.epoch += 1
        self.cursor = 0
        self._outstanding.clear()
        self._unmatched.clear()
        return unanswered

    def take(self) -> tuple[list[int], list[tuple[int, Answer]]]:
        """The rows acknowledged (to delete) and refused (they stay) since the last call."""
        acked, refused = self._acked, self._refused
        self._acked, self._refused = [], []
        return acked, refused

    def _settle(self, row: int, reason: Answer | None) -> None:
        if reason is not None and reason.is_failure:
            self._refused.append((row, reason))
        else:
            self._acked.append(row)
