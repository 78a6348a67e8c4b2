"""What a decision can end as, and its one spelling on the daemon's wire.

Its own module, standard library only, so that checkpassword's relay path can turn a
daemon's answer into an exit status without importing the policy (and SQLAlchemy).
"""

from __future__ import annotations

import enum


class Outcome(enum.Enum):
    OK = "ok"
    REFUSED = "refused"  # known user, wrong password or not allowed
    UNKNOWN = "unknown"  # no such user (or not ours to answer for)
    TEMPFAIL = "tempfail"  # no verdict possible now

    @property
    def wire(self) -> str:
        """The verdict word of the daemon's protocol (``ncauth.protocol.VERDICTS``)."""
        return _WIRE[self]

    @classmethod
    def from_wire(cls, word: str) -> Outcome:
        """The outcome a daemon's verdict word means; anything else is TEMPFAIL."""
        return _FROM_WIRE.get(word, cls.TEMPFAIL)


_WIRE = {Outcome.OK: "OK", Outcome.REFUSED: "FAIL", Outcome.UNKNOWN: "UNKNOWN", Outcome.TEMPFAIL: "TEMPFAIL"}
_FROM_WIRE = {word: outcome for outcome, word in _WIRE.items()}
