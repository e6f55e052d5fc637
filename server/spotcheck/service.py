"""Spot checks, run: pick the terminals, send the roll calls, match the answers, judge.

``create`` runs on a web worker thread (the routes call it through ``asyncio.to_thread``);
``on_accepted`` runs on the ingest thread with every newly stored frame; reads run anywhere.
The store has its own lock; a second lock here makes matching answers (read the target,
decide, write) one step, so two batches can never both think they kept the first answer.

The organisation (units, terminals, shifts) is reached through ``OrgView``, the few calls of
``server.org.store.OrgStore`` this needs; tests hand in a small fake.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from protocol import RollCall, RollCallAnswer, Snapshot
from yijing.mqtt import LinkError

from ..errors import StoreError
from ..ingest import Accepted
from ..org.model import Shift, Terminal, Unit
from .errors import BadRequest, NobodyOnDuty, NotInUnit, UnknownUnit
from .model import (
    MAX_DEADLINE_S,
    MAX_TARGETS,
    MIN_DEADLINE_S,
    AnswerFix,
    SpotCheck,
    Target,
    TargetResult,
    judge,
    prefer_answer,
)
from .store import SpotCheckStore


class OrgView(Protocol):
    """What spot checks ask of the organisation (``server.org.store.OrgStore`` has it)."""

    def shifts(
        self,
        *,
        since_ms: int | None = ...,
        until_ms: int | None = ...,
        units: Collection[str] | None = ...,
        volunteer_id: str | None = ...,
        device_id: str | None = ...,
    ) -> list[Shift]: ...

    def subtree(self, unit_id: str, /) -> set[str]: ...

    def unit(self, unit_id: str, /) -> Unit | None: ...

    def terminal(self, device_id: str, /) -> Terminal | None: ...


Send = Callable[[str, RollCall], None]
#: A terminal picked for a check: (device, its unit, volunteer, shift).
Pick = tuple[str, str, str | None, str | None]


def _active(shifts: Sequence[Shift], now_ms: int) -> dict[str, Shift]:
    """The shift active at ``now_ms`` per device (the latest started, if a terminal is
    somehow on two at once)."""
    by_device: dict[str, Shift] = {}
    for s in sorted(shifts, key=lambda s: (s.start_ms, s.shift_id)):
        if s.device_id is not None and s.start_ms <= now_ms < s.end_ms:
            by_device[s.device_id] = s
    return by_device


class SpotChecks:
    def __init__(
        self,
        *,
        path: Path,
        org: OrgView,
        send: Send,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        """``send(device_id, roll_call)`` publishes one roll call; it raises
        ``yijing.mqtt.LinkError`` when the broker cannot take it. ``clock`` is in seconds."""
        self._store = SpotCheckStore(path)
        self._org = org
        self._send = send
        self._clock = clock
        self._rng = rng or random.Random()
        self._log = logger or logging.getLogger("yijing.spotcheck")
        self._answers = threading.Lock()

    def close(self) -> None:
        self._store.close()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # --- making a check -----------------------------------------------------------------------

    def create(
        self,
        *,
        by: str,
        unit_id: str,
        devices: Sequence[str] | None = None,
        sample: int | None = None,
        deadline_s: int = 120,
        want_snapshot: bool = False,
    ) -> SpotCheck:
        """Record a check of ``devices`` (or of a random ``sample`` of the terminals on duty
        now) in ``unit_id``'s subtree, then send each its roll call.

        Raises ``BadRequest`` (naming the field) for a check that cannot be made. A roll call
        the broker refuses does not fail the check: its target is ``not_sent``, with why.
        """
        if not isinstance(by, str) or not by.strip():
            raise BadRequest("by", "must name who makes the check")
        if (
            isinstance(deadline_s, bool)
            or not isinstance(deadline_s, int)
            or not MIN_DEADLINE_S <= deadline_s <= MAX_DEADLINE_S
        ):
            raise BadRequest(
                "deadline_s",
                f"{deadline_s!r} is not a whole number of seconds in "
                f"[{MIN_DEADLINE_S}, {MAX_DEADLINE_S}]",
            )
        if not isinstance(want_snapshot, bool):
            raise BadRequest("want_snapshot", f"{want_snapshot!r} is not true or false")
        if (devices is None) == (sample is None):
            raise BadRequest("devices", "give either devices or sample, not both or neither")
        if not isinstance(unit_id, str) or self._org.unit(unit_id) is None:
            raise UnknownUnit("unit", f"no unit {unit_id!r}")
        units = self._org.subtree(unit_id)
        now_ms = self._now_ms()
        if devices is not None:
            chosen = self._named(devices, unit_id, units, now_ms)
        else:
            chosen = self._sampled(sample, unit_id, units, now_ms)

        check_id = f"sc-{now_ms:x}-{secrets.token_hex(3)}"
        targets = tuple(
            Target(
                rollcall_id=f"{check_id}.{n}",
                device_id=device,
                unit_id=unit,
                sent_ms=now_ms,
                volunteer_id=volunteer,
                shift_id=shift_id,
            )
            for n, (device, unit, volunteer, shift_id) in enumerate(chosen, start=1)
        )
        check = SpotCheck(
            check_id=check_id,
            unit_id=unit_id,
            created_ms=now_ms,
            created_by=by,
            deadline_ms=now_ms + deadline_s * 1000,
            want_snapshot=want_snapshot,
            targets=targets,
        )
        # Recorded before anything is sent: an answer can only be matched to a target the
        # store already holds, and the ingest thread may have one within milliseconds.
        self._store.add(check)
        errors: dict[str, str] = {}
        for t in targets:
            call = RollCall(
                rollcall_id=t.rollcall_id,
                sent_ms=now_ms,
                deadline_ms=check.deadline_ms,
                want_snapshot=want_snapshot,
            )
            try:
                self._send(t.device_id, call)
            except LinkError as exc:
                errors[t.rollcall_id] = str(exc) or type(exc).__name__
        self._store.mark_not_sent(errors)
        self._log.info(
            "spot check %s of %s by %s: %d roll calls, %d not sent",
            check_id,
            unit_id,
            by,
            len(targets),
            len(errors),
        )
        found = self.check(check_id)
        assert found is not None
        return found

    def _named(
        self, devices: Sequence[str], unit_id: str, units: set[str], now_ms: int
    ) -> list[Pick]:
        """(device, its unit, volunteer, shift) for each named terminal, checked to be one of
        the unit's subtree; the volunteer is the active shift's, else the holder."""
        if isinstance(devices, str) or not devices:
            raise BadRequest("devices", "a non-empty list of device ids")
        if len(devices) > MAX_TARGETS:
            raise BadRequest("devices", f"at most {MAX_TARGETS} in one check")
        chosen: list[Pick] = []
        seen: set[str] = set()
        for device in devices:
            if not isinstance(device, str):
                raise BadRequest("devices", f"{device!r} is not a device id")
            if device in seen:
                raise BadRequest("devices", f"{device} is listed twice")
            seen.add(device)
            terminal = self._org.terminal(device)
            if terminal is None:
                raise NotInUnit("devices", f"{device} is not a known terminal")
            if terminal.unit_id not in units:
                raise NotInUnit(
                    "devices", f"{device} belongs to {terminal.unit_id}, outside {unit_id}"
                )
            shift = _active(
                self._org.shifts(since_ms=now_ms, until_ms=now_ms + 1, device_id=device), now_ms
            ).get(device)
            if shift is not None:
                chosen.append((device, terminal.unit_id, shift.volunteer_id, shift.shift_id))
            else:
                chosen.append((device, terminal.unit_id, terminal.holder, None))
        return chosen

    def _sampled(
        self, sample: int | None, unit_id: str, units: set[str], now_ms: int
    ) -> list[Pick]:
        """A random sample of the distinct terminals on a shift active now in the subtree;
        all of them when fewer are on duty than asked for."""
        if isinstance(sample, bool) or not isinstance(sample, int):
            raise BadRequest("sample", f"{sample!r} is not a whole number")
        if not 1 <= sample <= MAX_TARGETS:
            raise BadRequest("sample", f"{sample!r} is not a whole number in [1, {MAX_TARGETS}]")
        active = _active(
            self._org.shifts(since_ms=now_ms, until_ms=now_ms + 1, units=units), now_ms
        )
        if not active:
            raise NobodyOnDuty("sample", f"no terminal is on a shift in {unit_id} now")
        # Sorted before drawing: the same seed picks the same terminals whatever order the
        # organisation store returns its shifts in.
        population = sorted(active)
        picked = sorted(self._rng.sample(population, min(sample, len(population))))
        chosen: list[Pick] = []
        for device in picked:
            shift = active[device]
            terminal = self._org.terminal(device)
            unit = terminal.unit_id if terminal is not None else unit_id
            chosen.append((device, unit, shift.volunteer_id, shift.shift_id))
        return chosen

    # --- answers ------------------------------------------------------------------------------

    def on_accepted(self, batch: Sequence[Accepted]) -> None:
        """Match newly stored answers and pictures to roll calls (on the ingest thread).

        Unknown roll call ids, frames from a device other than the one called, and repeats
        are ignored. Never raises for a store failure: it is logged, and the ingest thread,
        which has already acknowledged the frames, goes on.
        """
        answers = [a for a in batch if isinstance(a.message, RollCallAnswer)]
        pictures = [
            a for a in batch if isinstance(a.message, Snapshot) and a.message.request_id is not None
        ]
        if not answers and not pictures:
            return
        try:
            with self._answers:
                self._match(answers, pictures)
        except StoreError as exc:
            self._log.error("spot-check answers not recorded: %s", exc)

    def _match(self, answers: list[Accepted], pictures: list[Accepted]) -> None:
        ids: set[str] = set()
        for a in answers:
            assert isinstance(a.message, RollCallAnswer)
            ids.add(a.message.rollcall_id)
        for a in pictures:
            assert isinstance(a.message, Snapshot) and a.message.request_id is not None
            ids.add(a.message.request_id)
        known = self._store.targets(ids)
        if not known:
            return
        keep_answers: dict[str, tuple[int, AnswerFix | None]] = {}
        keep_pictures: dict[str, tuple[int, str]] = {}
        for a in answers:
            answer = a.message
            assert isinstance(answer, RollCallAnswer)
            target = known.get(answer.rollcall_id)
            if target is None or not self._from_target(target, a.device_id):
                continue
            fix = None
            if answer.fix is not None:
                f = answer.fix
                fix = AnswerFix(lat=f.lat, lon=f.lon, time_ms=f.time_ms, accuracy_m=f.accuracy_m)
            if prefer_answer(target, a.received_ms, fix):
                keep_answers[target.rollcall_id] = (a.received_ms, fix)
                known[target.rollcall_id] = replace(target, answer_ms=a.received_ms, fix=fix)
        for a in pictures:
            picture = a.message
            assert isinstance(picture, Snapshot) and picture.request_id is not None
            target = known.get(picture.request_id)
            if target is None or not self._from_target(target, a.device_id):
                continue
            if target.snapshot_ms is None or a.received_ms < target.snapshot_ms:
                sha = picture.sha256.hex()
                keep_pictures[target.rollcall_id] = (a.received_ms, sha)
                known[target.rollcall_id] = replace(
                    target, snapshot_ms=a.received_ms, snapshot_sha256=sha
                )
        self._store.record(answers=keep_answers, snapshots=keep_pictures)

    def _from_target(self, target: Target, device_id: str) -> bool:
        if target.device_id == device_id:
            return True
        # Roll call ids are not secret; another terminal answering one is worth a look.
        self._log.warning(
            "%s answered roll call %s, which went to %s; ignored",
            device_id,
            target.rollcall_id,
            target.device_id,
        )
        return False

    # --- reading ------------------------------------------------------------------------------

    def check(self, check_id: str) -> SpotCheck | None:
        """The check with every target's result as of now (None: no such check)."""
        found = self._store.check(check_id)
        return found.judged(self._now_ms()) if found is not None else None

    def history(
        self,
        *,
        units: Collection[str] | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 100,
    ) -> list[SpotCheck]:
        """Checks made for one of ``units`` (None: any unit) and created in
        ``[since_ms, until_ms)``, newest first, judged as of now."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise BadRequest("limit", f"{limit!r} is not a positive whole number")
        now_ms = self._now_ms()
        checks = self._store.history(units=units, since_ms=since_ms, until_ms=until_ms, limit=limit)
        return [c.judged(now_ms) for c in checks]

    def _sent(
        self,
        *,
        units: Collection[str] | None = None,
        device_id: str | None = None,
        since_ms: int | None,
        until_ms: int | None,
    ) -> list[tuple[Target, int]]:
        """Judged targets sent in the window, each with its deadline."""
        now_ms = self._now_ms()
        return [
            (judge(t, deadline_ms=deadline, want_snapshot=want, now_ms=now_ms), deadline)
            for t, deadline, want in self._store.sent_targets(
                units=units, device_id=device_id, since_ms=since_ms, until_ms=until_ms
            )
        ]

    def answer_stats(
        self,
        *,
        units: Collection[str] | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> dict[str, tuple[int, int]]:
        """volunteer_id → (roll calls sent, answered on time), for roll calls sent in
        ``[since_ms, until_ms)`` to terminals of ``units`` (None: any).

        Roll calls not sent (the broker's failure) and those still pending are left out, and so
        are targets with no volunteer (a terminal nobody held and no shift)."""
        stats: dict[str, list[int]] = {}
        for t, _ in self._sent(units=units, since_ms=since_ms, until_ms=until_ms):
            if t.volunteer_id is None or t.result is TargetResult.PENDING:
                continue
            counts = stats.setdefault(t.volunteer_id, [0, 0])
            counts[0] += 1
            counts[1] += t.result is TargetResult.ANSWERED
        return {v: (sent, answered) for v, (sent, answered) in sorted(stats.items())}

    def requests(
        self, device_id: str, since_ms: int | None, until_ms: int | None
    ) -> list[tuple[int, int, int | None]]:
        """``(sent_ms, deadline_ms, answered_ms or None)`` for each roll call sent to the
        device in ``[since_ms, until_ms)``, oldest first. ``answered_ms`` is when the target
        became complete (rule 4 of ``server.spotcheck.model``), even if after the deadline;
        roll calls the broker refused are left out (the terminal was never asked)."""
        return [
            (t.sent_ms, deadline, t.answered_ms)
            for t, deadline in self._sent(device_id=device_id, since_ms=since_ms, until_ms=until_ms)
        ]
