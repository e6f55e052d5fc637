"""Spot checks (抽查) as records, and the rules that judge each roll call.

An inspector picks terminals of a unit (or has a random sample of those on duty drawn); each
gets a ``RollCall`` with one deadline for the whole check. A target is one roll call to one
terminal. What the server learns about it (sent, answer received, picture received) is kept
as facts; the result is computed from the facts whenever it is read, so a target "pending"
now is "missed" once the clock passes its deadline, without anything rewriting the store.

The rules, all on the **server's** clock (a terminal's clock is not trusted, and a volunteer
could set it to look punctual):

1. A roll call that the broker link refused is ``not_sent``, whatever follows: the terminal
   was never asked, so it cannot be blamed.
2. An answer **qualifies** when it carries a fix taken no earlier than ``FRESH_FIX_S`` before
   the roll call was sent, and not more than ``FUTURE_TOLERANCE_MS`` after the answer was
   received (a fix from the future is a wrong clock or a forgery, not a position).
3. When a picture was asked for, the target is complete only once a ``Snapshot`` from the
   same terminal with ``request_id`` equal to the roll call's id has been received too. (The
   agent answers at once and takes the picture afterwards, so the answer cannot name the
   picture's hash; the request id is the link.)
4. The target's ``answered_ms`` is the receive time of whatever completed it (the later of
   the qualifying answer and the picture). ``answered`` if that is at or before the deadline,
   ``late`` if after; with nothing complete, ``pending`` until the deadline and ``missed``
   after it. A missed target becomes late if the rest arrives afterwards.
5. Only the terminal the roll call went to can answer it: roll call ids are not secret, and
   an answer or picture from any other device is ignored.

Of several answers to one roll call (a resent command is answered again), the first that
qualifies is kept; while none qualifies, the first one is kept as evidence. Of several
pictures, the first.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, replace

from protocol.messages import ID_PATTERN

from ..store import FUTURE_TOLERANCE_MS

#: An answer's fix must have been taken at most this long before the roll call was sent.
#: The agent answers with the freshest fix it holds, and samples its receiver every second
#: while moving and every few seconds when still; 30 s lets a receiver that just regained
#: the sky answer, while a terminal left in a drawer (its last fix minutes old) cannot.
FRESH_FIX_S = 30
#: The shortest and longest deadline an inspector may give. Under 10 s a 4G terminal waking
#: from power save cannot answer; over an hour it is no longer "right now" (the question an
#: inspector asks is "can we raise this volunteer right now?").
MIN_DEADLINE_S = 10
MAX_DEADLINE_S = 3600
DEFAULT_DEADLINE_S = 120
#: Terminals in one check. A drill of a whole station is several checks; one check with
#: thousands of targets would be one SQLite transaction and one burst on the broker.
MAX_TARGETS = 100
#: Check ids leave room for ".<n>" within a roll call id's 64 characters.
MAX_CHECK_ID = 40

_ID = re.compile(ID_PATTERN)


def _check_id(name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"{name}: {value!r} is not an id")


def _check_ms(name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**53:
        raise ValueError(f"{name}: {value!r} is not a time in epoch milliseconds")


class TargetResult(enum.StrEnum):
    PENDING = "pending"  # before the deadline, not complete yet
    ANSWERED = "answered"  # complete at or before the deadline
    LATE = "late"  # complete, after the deadline
    MISSED = "missed"  # past the deadline, not complete
    NOT_SENT = "not_sent"  # the broker link refused the roll call


@dataclass(frozen=True, slots=True)
class AnswerFix:
    """The position an answer carried: what an inspector needs to see where the volunteer was."""

    lat: float
    lon: float
    time_ms: int
    accuracy_m: float | None = None

    def __post_init__(self) -> None:
        for name, lo, hi in (("lat", -90.0, 90.0), ("lon", -180.0, 180.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
                raise ValueError(f"{name}: {v!r} is outside [{lo}, {hi}]")
        _check_ms("time_ms", self.time_ms)
        a = self.accuracy_m
        if a is not None and (
            isinstance(a, bool) or not isinstance(a, int | float) or not math.isfinite(a) or a < 0
        ):
            raise ValueError(f"accuracy_m: {a!r} is not a distance in metres")


def fresh_fix_problem(fix: AnswerFix | None, *, sent_ms: int, received_ms: int) -> str | None:
    """Why an answer with this fix does not qualify (rule 2), or None if it does."""
    if fix is None:
        return "the answer carried no fix"
    oldest = sent_ms - FRESH_FIX_S * 1000
    if fix.time_ms < oldest:
        age_s = (sent_ms - fix.time_ms) / 1000
        return (
            f"the answer's fix was taken {age_s:.0f} s before the roll call (limit {FRESH_FIX_S} s)"
        )
    if fix.time_ms > received_ms + FUTURE_TOLERANCE_MS:
        ahead_s = (fix.time_ms - received_ms) / 1000
        return f"the answer's fix is timed {ahead_s:.0f} s ahead of the server's clock"
    return None


@dataclass(frozen=True, slots=True)
class Target:
    """One roll call to one terminal: the facts, and (after ``judge``) the result.

    ``volunteer_id`` and ``shift_id`` are who was on duty with the terminal when the check was
    made (the shift's volunteer, else the terminal's holder); fixed then, so a terminal
    changing hands later does not move the record. ``unit_id`` is the terminal's unit, which
    reports filter by. ``error`` is why the roll call was not sent.
    """

    rollcall_id: str
    device_id: str
    unit_id: str
    sent_ms: int
    volunteer_id: str | None = None
    shift_id: str | None = None
    error: str | None = None
    answer_ms: int | None = None  # server receive time of the answer kept
    fix: AnswerFix | None = None  # the fix of the answer kept
    snapshot_ms: int | None = None  # server receive time of the picture
    snapshot_sha256: str | None = None  # its SHA-256, lowercase hex
    # Set by ``judge``:
    result: TargetResult = TargetResult.PENDING
    reason: str | None = None  # why it is not "answered", in a sentence
    answered_ms: int | None = None  # when it became complete (rule 4)

    def __post_init__(self) -> None:
        _check_id("rollcall_id", self.rollcall_id)
        _check_id("device_id", self.device_id)
        _check_id("unit_id", self.unit_id)
        _check_ms("sent_ms", self.sent_ms)
        _check_id("volunteer_id", self.volunteer_id, optional=True)
        _check_id("shift_id", self.shift_id, optional=True)
        _check_ms("answer_ms", self.answer_ms, optional=True)
        _check_ms("snapshot_ms", self.snapshot_ms, optional=True)
        if self.fix is not None and self.answer_ms is None:
            raise ValueError("fix: a fix without an answer")
        sha = self.snapshot_sha256
        if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ValueError(f"snapshot_sha256: {sha!r} is not a SHA-256 in lowercase hex")
        if (sha is None) != (self.snapshot_ms is None):
            raise ValueError("snapshot_sha256: given exactly when snapshot_ms is")
        if not isinstance(self.result, TargetResult):
            raise ValueError(f"result: {self.result!r} is not a TargetResult")

    @property
    def answer_problem(self) -> str | None:
        """Why the kept answer does not qualify; "no answer" without one."""
        if self.answer_ms is None:
            return "no answer"
        return fresh_fix_problem(self.fix, sent_ms=self.sent_ms, received_ms=self.answer_ms)


def judge(target: Target, *, deadline_ms: int, want_snapshot: bool, now_ms: int) -> Target:
    """``target`` with ``result``, ``reason`` and ``answered_ms`` set by the rules above."""
    if target.error is not None:
        return replace(
            target,
            result=TargetResult.NOT_SENT,
            reason=f"not sent: {target.error}",
            answered_ms=None,
        )
    problem = target.answer_problem
    done: int | None = None
    if problem is None:
        assert target.answer_ms is not None
        done = target.answer_ms
        if want_snapshot:
            done = None if target.snapshot_ms is None else max(done, target.snapshot_ms)
            if done is None:
                problem = "no picture with the roll call's id"
    if done is not None:
        if done <= deadline_ms:
            return replace(target, result=TargetResult.ANSWERED, reason=None, answered_ms=done)
        late_s = (done - deadline_ms) / 1000
        reason = f"complete {late_s:.0f} s after the deadline"
        return replace(target, result=TargetResult.LATE, reason=reason, answered_ms=done)
    if now_ms <= deadline_ms:
        return replace(target, result=TargetResult.PENDING, reason=None, answered_ms=None)
    return replace(target, result=TargetResult.MISSED, reason=problem, answered_ms=None)


def prefer_answer(target: Target, received_ms: int, fix: AnswerFix | None) -> bool:
    """Whether a newly received answer should replace the one ``target`` keeps."""
    if target.answer_ms is None:
        return True
    if target.answer_problem is None:
        return False  # the first qualifying answer stays
    return fresh_fix_problem(fix, sent_ms=target.sent_ms, received_ms=received_ms) is None


@dataclass(frozen=True, slots=True)
class SpotCheck:
    """One inspector's roll call of some terminals of a unit, with one deadline for all."""

    check_id: str
    unit_id: str
    created_ms: int
    created_by: str
    deadline_ms: int
    want_snapshot: bool = False
    targets: tuple[Target, ...] = ()

    def __post_init__(self) -> None:
        _check_id("check_id", self.check_id)
        if len(self.check_id) > MAX_CHECK_ID:
            raise ValueError(f"check_id: longer than {MAX_CHECK_ID} characters")
        _check_id("unit_id", self.unit_id)
        _check_ms("created_ms", self.created_ms)
        if not isinstance(self.created_by, str) or not self.created_by.strip():
            raise ValueError("created_by: must name who made the check")
        if len(self.created_by) > 200:
            raise ValueError("created_by: longer than 200 characters")
        _check_ms("deadline_ms", self.deadline_ms)
        if self.deadline_ms <= self.created_ms:
            raise ValueError("deadline_ms: must be after created_ms")
        if not isinstance(self.want_snapshot, bool):
            raise ValueError(f"want_snapshot: {self.want_snapshot!r} is not a bool")
        if len(self.targets) > MAX_TARGETS:
            raise ValueError(f"targets: more than {MAX_TARGETS}")
        if len({t.device_id for t in self.targets}) != len(self.targets):
            raise ValueError("targets: a device is called twice")

    def judged(self, now_ms: int) -> SpotCheck:
        """This check with every target's result as of ``now_ms``."""
        targets = tuple(
            judge(t, deadline_ms=self.deadline_ms, want_snapshot=self.want_snapshot, now_ms=now_ms)
            for t in self.targets
        )
        return replace(self, targets=targets)

    @property
    def total(self) -> int:
        return len(self.targets)

    @property
    def sent(self) -> int:
        return sum(1 for t in self.targets if t.result is not TargetResult.NOT_SENT)

    @property
    def answered(self) -> int:
        return sum(1 for t in self.targets if t.result is TargetResult.ANSWERED)

    @property
    def answer_rate(self) -> float | None:
        """Answered on time over roll calls sent (a broker outage is not the volunteers'
        failure); None when nothing was sent."""
        return self.answered / self.sent if self.sent else None

    @property
    def counts(self) -> dict[str, int]:
        counts = {r.value: 0 for r in TargetResult}
        for t in self.targets:
            counts[t.result.value] += 1
        return counts
