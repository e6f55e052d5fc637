"""Phone ingest: authenticate, decode, store in batches, then reply and tell the live feed.

Three doors lead here, all onto one thread that owns the phone registry's connection:

- OwnTracks over MQTT: ``owntracks/<user>/<device>`` (and ``…/event``), handed over by the
  phone link's thread (``server.phones.link``). The broker's password file and ACL
  (``provisioning.broker_config``) say who may publish there; on a plain development broker
  the topic's user is taken at its word.
- OwnTracks over HTTP: a POST with basic auth, checked here against the registry.
- Traccar Client (OsmAnd): the ``id`` parameter, an unguessable identifier, is the only
  credential the protocol has.

Each batch is stored in one transaction (``Store.store_frames``); an HTTP report is answered
only after that commit, so a phone deletes a report from its queue only once it is stored
(Traccar Client and OwnTracks in HTTP mode both resend until they get a 2xx). Over MQTT the
phone's QoS 1 PUBACK comes from the broker, so the phone link keeps a persistent session:
what arrives while the server is down waits at the broker.

Roll calls (spot checks) reach a phone as OwnTracks' ``reportLocation`` command; the first
fix the phone makes at or after the call answers it, as a ``RollCallAnswer`` the spot checks
take like a terminal's.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path

from protocol import ProtocolError, RollCall, RollCallAnswer, osmand, owntracks
from protocol.auth import REPLAY_WINDOW_MS
from protocol.phone import PhoneKind, PhoneReport
from provisioning.phones import Phone, PhoneApp, PhoneRegistry

from ..errors import StoreError
from ..ingest import Accepted, take_batch
from ..store import IncomingFrame, Outcome, Store
from .frames import OSMAND_TYPE, OWNTRACKS_TYPE, PhoneArrival

#: The most reports stored in one transaction, and the longest a report waits for others.
BATCH_MAX = 500
BATCH_WAIT_S = 0.02
#: How long MQTT reports wait before they are tried again while the store fails.
RETRY_PAUSE_S = 1.0
#: Phones kept looked up at most (more than any station enrols; the cache is then restarted).
MAX_CACHED = 200_000
_UNKNOWN = object()


def _settle(
    future: Future[bytes], *, result: bytes | None = None, error: Exception | None = None
) -> None:
    """Answer an HTTP report's future, unless its request went away meanwhile (a future
    cancelled at shutdown must not abort the batch's other answers)."""
    with contextlib.suppress(InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or b"")


class PhoneRefused(Exception):
    """A phone report not taken; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass
class PhoneStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)


def _no_ack() -> None:
    pass


@dataclass(frozen=True, slots=True)
class _Mqtt:
    topic: str
    payload: bytes
    received_ms: int
    #: Sends the PUBACK: called once the report is stored (or refused for good).
    ack: Callable[[], None] = _no_ack


@dataclass(frozen=True, slots=True)
class _OwnTracksHttp:
    user: str
    password: str
    body: bytes
    received_ms: int
    reply: Future[bytes]


@dataclass(frozen=True, slots=True)
class _OsmAnd:
    params: Mapping[str, str] | None  # a query string or form
    body: bytes | None  # the JSON mode
    received_ms: int
    reply: Future[bytes]


_Item = _Mqtt | _OwnTracksHttp | _OsmAnd


@dataclass(frozen=True, slots=True)
class _Call:
    call: RollCall
    phone: Phone


class PhoneIngress:
    def __init__(
        self,
        store: Store,
        registry_path: Path,
        *,
        on_stored: Callable[[list[IncomingFrame]], None] = lambda frames: None,
        on_accepted: Callable[[list[Accepted]], None] = lambda batch: None,
        publish_cmd: Callable[[str, bytes, int], None] | None = None,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
    ) -> None:
        self._store = store
        self._registry_path = registry_path
        # One registry connection per thread (SQLite connections stay on their thread): the
        # ingest thread's, and one per worker thread a roll call comes from.
        self._local = threading.local()
        self._on_stored = on_stored
        self._on_accepted = on_accepted
        #: (topic, payload, expiry_s): an OwnTracks command over MQTT (None: no phone link).
        self._publish_cmd = publish_cmd
        self._clock = clock
        self._log = logger or logging.getLogger("yijing.phones")
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._calls: dict[str, _Call] = {}
        self._calls_lock = threading.Lock()
        self._logged: set[str] = set()
        #: Phones looked up by (how, key), valid while the registry's version stays: the
        #: lookups were 25-42 % of a report's cost (docs/benchmarks.md, "Phones").
        self._phones: dict[tuple[str, str], Phone | None] = {}
        self._phones_version: int | None = None
        self.stats = PhoneStats()

    # --- doors (any thread) -------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def owntracks_mqtt(self, topic: str, payload: bytes, ack: Callable[[], None] = _no_ack) -> None:
        """On the phone link's thread: only enqueue. ``ack`` is called after the commit."""
        self._queue.put(_Mqtt(topic, payload, self._now_ms(), ack))

    def owntracks_http(self, user: str, password: str, body: bytes) -> Future[bytes]:
        """The reply body (a JSON array, OwnTracks' HTTP mode) once stored, or PhoneRefused."""
        reply: Future[bytes] = Future()
        self._queue.put(_OwnTracksHttp(user, password, body, self._now_ms(), reply))
        return reply

    def osmand(
        self, *, params: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> Future[bytes]:
        """The reply body once stored, or PhoneRefused."""
        reply: Future[bytes] = Future()
        self._queue.put(_OsmAnd(params, body, self._now_ms(), reply))
        return reply

    def queue_depth(self) -> int:
        return self._queue.qsize()

    # --- roll calls (the spot checks' thread) -------------------------------------------------

    def roll_call(self, phone_id: str, call: RollCall) -> None:
        """Ask a phone for its position now. OwnTracks gets ``reportLocation`` over MQTT and
        in the reply to its next HTTP post; Traccar Client has no command channel, so its
        next report (it reports on its own interval) answers if it comes before the
        deadline. Raises ``LookupError`` for an unknown or revoked phone."""
        phone = self.registry.get(phone_id)
        if phone is None or phone.revoked_ms is not None:
            raise LookupError(f"no enrolled phone {phone_id!r}")
        with self._calls_lock:
            self._calls[phone_id] = _Call(call, phone)
        if phone.app is PhoneApp.OWNTRACKS and self._publish_cmd is not None:
            expiry_s = max(1, -(-(call.deadline_ms - call.sent_ms) // 1000))
            topic = owntracks.cmd_topic(phone.mqtt_user, phone.owntracks_device)
            self._publish_cmd(topic, self._cmd_payload(phone), expiry_s)

    @property
    def registry(self) -> PhoneRegistry:
        registry: PhoneRegistry | None = getattr(self._local, "registry", None)
        if registry is None:
            registry = PhoneRegistry(self._registry_path)
            self._local.registry = registry
        return registry

    def close_registry(self) -> None:
        """Close this thread's registry connection, if it opened one."""
        registry = getattr(self._local, "registry", None)
        if registry is not None:
            registry.close()
            self._local.registry = None

    @staticmethod
    def _cmd_payload(phone: Phone) -> bytes:
        cmd = owntracks.cmd_report_location()
        if phone.secret_key is not None:
            # A phone with a payload key drops anything not encrypted with it.
            cmd = owntracks.encrypt(cmd, phone.secret_key)
        return cmd

    def pending_cmds(self, phone: Phone, now_ms: int) -> list[bytes]:
        with self._calls_lock:
            pending = self._calls.get(phone.phone_id)
        if pending is None or pending.call.deadline_ms < now_ms:
            return []
        return [self._cmd_payload(phone)]

    # --- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="phone-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self.close_registry()

    def _loop(self) -> None:
        while True:
            taken: tuple[list[_Item], bool] = take_batch(self._queue, BATCH_MAX, BATCH_WAIT_S)
            batch, stop = taken
            if not batch:
                return
            try:
                self.process(batch)
            except Exception as exc:  # the store, or a bug: nothing was answered as stored
                self._failed(batch, exc)
            if stop:
                return

    def _failed(self, batch: list[_Item], exc: Exception) -> None:
        """A batch not stored. HTTP reports are answered 503 (the app sends them again);
        MQTT ones, which the broker holds until we PUBACK, are taken again after a pause
        while the store fails (``StoreError``): without a PUBACK the broker would only send
        them again on the next connection. After a bug they stay unacknowledged, for that."""
        if isinstance(exc, StoreError):
            self._log.error("phone batch of %d not stored: %s", len(batch), exc)
        else:
            self._log.exception("phone batch of %d failed", len(batch))
        for item in batch:
            if not isinstance(item, _Mqtt):
                _settle(item.reply, error=PhoneRefused(503, f"not stored: {exc}"))
        again = [item for item in batch if isinstance(item, _Mqtt)]
        if again and isinstance(exc, StoreError):
            time.sleep(RETRY_PAUSE_S)
            for item in again:
                self._queue.put(item)

    # --- the work -----------------------------------------------------------------------------

    def _refuse(self, who: str, reason: str, rejected: Counter[tuple[str, str]]) -> None:
        self.stats.rejected[(who, reason)] += 1
        rejected[(who, reason)] += 1
        if reason not in self._logged:
            self._logged.add(reason)
            self._log.warning(
                "phone report from %s refused: %s (further ones counted)", who, reason
            )

    def _fresh_lookups(self) -> None:
        """Forget cached phones when the registry changed (an enrolment, a revocation):
        checked once a batch, so a revoked phone is refused from the next batch."""
        version = self.registry.version()
        if version != self._phones_version:
            self._phones.clear()
            self._phones_version = version

    def _phone(self, how: str, key: str) -> Phone | None:
        found = self._phones.get((how, key), _UNKNOWN)
        if found is _UNKNOWN:
            registry = self.registry
            lookup = {
                "user": registry.by_mqtt_user,
                "traccar": registry.by_traccar_id,
                "id": registry.get,
            }[how]
            found = lookup(key)
            if len(self._phones) >= MAX_CACHED:
                self._phones.clear()
            self._phones[(how, key)] = found
        assert found is None or isinstance(found, Phone)
        return found

    def _decode(self, item: _Item, now_ms: int) -> PhoneArrival:
        """Authenticate and decode one report; PhoneRefused names what was wrong."""
        registry = self.registry
        try:
            if isinstance(item, _Mqtt):
                user, device, _suffix = owntracks.topic_parts(item.topic)
                phone = self._phone("user", user)
                if phone is None or not phone.active or phone.app is not PhoneApp.OWNTRACKS:
                    raise PhoneRefused(403, f"{user}: no enrolled phone with this user")
                if device != phone.owntracks_device:
                    raise PhoneRefused(403, f"{user}: device {device!r} is not this phone's")
                report = owntracks.decode(item.payload, key=phone.secret_key)
                return self._arrival(phone, OWNTRACKS_TYPE, report, item.received_ms)
            if isinstance(item, _OwnTracksHttp):
                if not registry.verify_password(item.user, item.password):
                    raise PhoneRefused(401, "wrong user or password")
                phone = self._phone("user", item.user)
                if phone is None or phone.app is not PhoneApp.OWNTRACKS:
                    # (verify_password is False for an unknown or revoked user.)
                    raise PhoneRefused(403, f"{item.user}: enrolled for another app")
                report = owntracks.decode(item.body, key=phone.secret_key)
                return self._arrival(phone, OWNTRACKS_TYPE, report, item.received_ms)
            if item.body is not None:
                traccar_id, report = osmand.decode_json(item.body)
            else:
                traccar_id, report = osmand.decode_query(item.params or {})
            phone = self._phone("traccar", traccar_id)
            if phone is None or not phone.active or phone.app is not PhoneApp.TRACCAR:
                # The same answer for unknown and revoked: an id is not confirmed to a guesser.
                raise PhoneRefused(
                    403,
                    "unknown device id: enrol the phone with "
                    "`yijing provision phone` and scan its code",
                )
            return self._arrival(phone, OSMAND_TYPE, report, item.received_ms)
        except ProtocolError as exc:
            raise PhoneRefused(400, str(exc)) from exc

    def _arrival(
        self, phone: Phone, type_code: int, report: PhoneReport, received_ms: int
    ) -> PhoneArrival:
        if report.kind is PhoneKind.OTHER:
            raise PhoneRefused(202, f"{report.raw_type!r} reports carry nothing yijing keeps")
        if received_ms - report.time_ms > REPLAY_WINDOW_MS:
            # As for a terminal (protocol.auth.Stale): older than the replay window is refused.
            # Answered 200 over HTTP, counted: an app retries a refused report for ever.
            raise PhoneRefused(200, "report older than 30 days (stale)")
        return PhoneArrival(phone.phone_id, type_code, report.evidence, report, received_ms)

    def process(self, batch: list[_Item]) -> list[Accepted]:
        """Decode, store and answer one batch; return what the live feed was told."""
        now_ms = self._now_ms()
        self._fresh_lookups()
        self.stats.received += len(batch)
        rejected: Counter[tuple[str, str]] = Counter()
        arrivals: list[tuple[PhoneArrival, _Item]] = []
        for item in batch:
            try:
                arrivals.append((self._decode(item, now_ms), item))
            except PhoneRefused as exc:
                who = self._who(item)
                self._refuse(who, str(exc) if exc.status != 200 else "stale", rejected)
                if not isinstance(item, _Mqtt):
                    if exc.status in (200, 202):
                        empty = b"[]" if isinstance(item, _OwnTracksHttp) else b""
                        _settle(item.reply, result=empty)
                    else:
                        _settle(item.reply, error=exc)
        stored = [(a, item) for a, item in arrivals if a.stored]
        frames = [a.frame() for a, _ in stored]
        outcomes = self._store.store_frames(frames) if frames else []
        new_frames: list[IncomingFrame] = []
        accepted: list[Accepted] = []
        new_ids: set[int] = set()
        for (arrival, _item), frame, outcome in zip(stored, frames, outcomes, strict=True):
            if outcome is Outcome.NEW:
                new_frames.append(frame)
                new_ids.add(id(arrival))
            elif outcome is Outcome.DUPLICATE:
                self.stats.duplicates += 1
            else:
                self.stats.conflicts += 1
        self.stats.stored += len(new_frames)
        if rejected:
            self._count_rejections(now_ms, rejected)
        for arrival, item in arrivals:
            if not arrival.stored or id(arrival) in new_ids:
                accepted.extend(arrival.accepted())
                answer = self._answer(arrival)
                if answer is not None:
                    accepted.append(answer)
            if not isinstance(item, _Mqtt):
                _settle(item.reply, result=self._reply(item, arrival, now_ms))
        for item in batch:  # stored or refused for good: the broker may forget them
            if isinstance(item, _Mqtt):
                item.ack()
        if new_frames:
            self._hook("duty", self._on_stored, new_frames)
        if accepted:
            self._hook("live feed", self._on_accepted, accepted)
        return accepted

    def _hook(self, what: str, hook: Callable[[list], None], items: list) -> None:  # type: ignore[type-arg]
        try:
            hook(items)
        except Exception:  # stored and answered already: the next report will do
            self._log.exception("phone reports stored, but the %s failed", what)

    @staticmethod
    def _who(item: _Item) -> str:
        if isinstance(item, _Mqtt):
            parts = item.topic.split("/")
            return parts[1][:64] if len(parts) > 2 else "?"
        if isinstance(item, _OwnTracksHttp):
            return item.user[:64] or "?"
        return "traccar?"

    def _reply(self, item: _Item, arrival: PhoneArrival, now_ms: int) -> bytes:
        phone = self._phone("id", arrival.phone_id)
        cmds = [] if phone is None else self.pending_cmds(phone, now_ms)
        if isinstance(item, _OwnTracksHttp):
            # OwnTracks HTTP mode: the reply is a JSON array of messages for the phone.
            return owntracks.http_reply(cmds)
        # Traccar Client reads no command from the reply (protocol.osmand): an empty body.
        return osmand.reply_body()

    def _answer(self, arrival: PhoneArrival) -> Accepted | None:
        """A roll call's answer: the first fix made at or after the call, before its
        deadline (a fix from before the call is old news, however it is sent)."""
        fix = arrival.report.fix
        if fix is None or arrival.report.kind is not PhoneKind.LOCATION:
            return None
        with self._calls_lock:
            pending = self._calls.get(arrival.phone_id)
            if pending is None:
                return None
            call = pending.call
            if arrival.received_ms > call.deadline_ms:
                del self._calls[arrival.phone_id]
                return None
            if fix.time_ms < call.sent_ms - 1000:
                return None
            del self._calls[arrival.phone_id]
        answer = RollCallAnswer(rollcall_id=call.rollcall_id, time_ms=fix.time_ms, fix=fix)
        return Accepted(arrival.phone_id, arrival.seq, answer, arrival.received_ms)

    def _count_rejections(self, now_ms: int, rejected: Counter[tuple[str, str]]) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime(now_ms / 1000))
        try:
            self._store.add_rejections(day, dict(rejected))
        except StoreError as exc:
            self._log.error("phone rejections not counted: %s", exc)
