"""The uplink received by Mosquitto's own C client, ``mosquitto_sub``, instead of paho.

Why: paho is pure Python. Receiving one QoS 1 message costs it a packet parse, an
``MQTTMessage``, a callback and a PUBACK written from Python — about 70 µs of one core, which
caps a paho subscriber near 14,000 messages/s (``shared/MEASUREMENTS.md``) and took half of
an ingest worker's CPU in the ingest benchmark (``docs/benchmarks.md``). ``mosquitto_sub``
(from the Mosquitto project's ``mosquitto-clients``, libmosquitto) does the MQTT work in C in
its own process, on the other core, and hands us a byte stream that Python reads a megabyte
at a time: about 2 µs per message on our side.

What it does not change: the delivery guarantee. paho and libmosquitto alike send the QoS 1
PUBACK when a message arrives, before ingest has stored it (MQTT 5 §4.3.2); what makes a
frame safe is the end-to-end ``StoredAck`` after the commit. A frame that dies in the pipe
with a crashed worker is resent by its terminal, like one that died in paho's queue.

The stream: ``-F '%t\\0%x'`` prints the topic, a NUL (MQTT 5 §1.5.4: a topic never holds
U+0000) and the payload in hex (never a newline), and ``mosquitto_sub`` ends each record with
a newline. So a record is unambiguous even for a topic that contains a newline.

Is it subscribed? ``mosquitto_sub`` says nothing when it connects. Each subscriber also
listens on a private probe topic and its owner's ``probe`` callback publishes a nonce there
(through the owner's paho link, which only publishes): the nonce coming back proves the
connection is up and the subscription in place. Until then ``wait_subscribed`` blocks; after
that a probe every ``probe_every_s`` seconds, and a subscriber whose probes stop coming back
is restarted (a hung process must not silently hold a share of the uplink).

Errors: it is an adapter of this package's ``yijing.mqtt`` tree. A missing executable is a
``LinkConfigError`` at construction; a process that exits (refused connection, TLS failure,
broker gone before the first connect) is started again with ``Backoff``, its last line of
stderr logged once per distinct reason and kept as ``last_failure``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from .mqtt import (
    Backoff,
    LinkConfigError,
    LinkError,
    LinkTlsError,
    Reasons,
    TlsFiles,
    check_endpoint,
)

#: One record of ``-F '%t\0%x'``: topic, NUL, hex payload, newline.
_RECORD = re.compile(rb"([^\0]*)\0([0-9a-fA-F]*)\n")
#: How much of the pipe one read takes.
READ_SIZE = 1 << 20
#: Where the probes go (the server's identity may publish and read ``yj/1/#``).
PROBE_ROOT = "yj/1/sys/probe"

BatchHandler = Callable[[list[tuple[str, bytes]]], None]
Prober = Callable[[str, bytes], None]


def parse_records(data: bytes) -> tuple[list[tuple[str, bytes]], bytes, int]:
    """The complete ``-F '%t\\0%x'`` records in ``data``, the incomplete tail to keep for
    the next read, and how many bytes were not part of any record (skipped)."""
    records: list[tuple[str, bytes]] = []
    skipped = end = 0
    for match in _RECORD.finditer(data):
        skipped += match.start() - end
        end = match.end()
        try:
            payload = bytes.fromhex(match.group(2).decode("ascii"))
        except ValueError:  # an odd number of hex digits
            skipped += end - match.start()
            continue
        records.append((match.group(1).decode("utf-8", "replace"), payload))
    return records, data[end:], skipped


def find_executable(name: str = "mosquitto_sub") -> str | None:
    """The C client's path, or None (then the caller receives with paho)."""
    return shutil.which(name)


#: This process's own symbols, libc's prctl among them: loaded now, not in the forked child
#: (which may only make async-signal-safe calls).
_LIBC = ctypes.CDLL(None)


def _die_with_parent() -> None:
    # Linux prctl(PR_SET_PDEATHSIG, SIGTERM), in the child between fork and exec: if the
    # worker is killed with -9, its mosquitto_sub must not live on, acknowledging messages
    # that nobody will store.
    _LIBC.prctl(1, int(signal.SIGTERM))


class CSubscriber:
    """One ``mosquitto_sub`` process, kept running; messages reach ``on_messages`` in batches.

    ``on_messages`` runs on the subscriber's reader thread with everything one read of the
    pipe held; keep it short (hand work to a queue).
    """

    def __init__(
        self,
        *,
        client_id: str,
        topic_filters: list[str],
        on_messages: BatchHandler,
        probe: Prober,
        host: str = "127.0.0.1",
        port: int = 1883,
        protocol: str = "5",
        qos: int = 1,
        keepalive: int = 30,
        tls: TlsFiles | None = None,
        executable: str | None = None,
        probe_every_s: float = 5.0,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        check_endpoint(protocol, port)
        if qos not in (0, 1, 2):
            raise LinkConfigError(f"qos must be 0, 1 or 2, got {qos}")
        if not topic_filters:
            raise LinkConfigError("a subscriber needs at least one topic filter")
        exe = executable or find_executable()
        if exe is None or not os.access(exe, os.X_OK):
            raise LinkConfigError(
                f"mosquitto_sub not found ({executable or 'on PATH'}): install Mosquitto's "
                "clients (Debian: mosquitto-clients) or receive with paho"
            )
        if tls is not None:
            for path in (tls.ca_file, tls.cert_file, tls.key_file):
                if not path.is_file():
                    raise LinkTlsError(f"TLS file {path} does not exist")
        self.client_id = client_id
        self.probe_topic = f"{PROBE_ROOT}/{client_id}"
        self._args = [exe, "-h", host, "-p", str(port), "-i", client_id, "-k", str(keepalive)]
        self._args += ["-V", "mqttv5" if protocol == "5" else "mqttv311", "-q", str(qos)]
        # No newline in the format: mosquitto_sub adds one after each record.
        self._args += ["-F", "%t\\0%x"]
        if tls is not None:
            self._args += ["--cafile", str(tls.ca_file), "--cert", str(tls.cert_file)]
            self._args += ["--key", str(tls.key_file)]
        for topic_filter in [*topic_filters, self.probe_topic]:
            self._args += ["-t", topic_filter]
        self._on_messages = on_messages
        self._probe = probe
        self._probe_every_s = probe_every_s
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._log = logger or logging.getLogger("yijing.mqtt_csub")
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._nonce = b""
        self._probe_seen = 0.0
        self._thread: threading.Thread | None = None
        self._prober: threading.Thread | None = None
        self._warned = Reasons()
        self.last_failure: str | None = None
        self.starts = 0
        self.received = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise LinkError("subscriber already started")
        self._thread = threading.Thread(target=self._run, name=f"csub-{self.client_id}")
        self._thread.daemon = True
        self._thread.start()
        self._prober = threading.Thread(target=self._probe_loop, name="csub-probe", daemon=True)
        self._prober.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._kill()
        for thread in (self._thread, self._prober):
            if thread is not None:
                thread.join(timeout)
        self._thread = self._prober = None

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout: float) -> bool:
        """True once a probe came back through the running process's subscription."""
        return self._subscribed.wait(timeout)

    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _kill(self) -> None:
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.terminate()

    # --- the process ---------------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        try:
            proc = subprocess.Popen(
                self._args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            raise LinkError(f"cannot start {self._args[0]}: {exc}") from exc
        with self._lock:
            self._proc = proc
            self._nonce = secrets.token_hex(8).encode()
        self.starts += 1
        return proc

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self._clock()
            try:
                proc = self._spawn()
            except LinkError as exc:
                self._failed(str(exc), started)
                continue
            stderr: list[bytes] = []
            errs = threading.Thread(target=self._drain_stderr, args=(proc, stderr), daemon=True)
            errs.start()
            assert proc.stdout is not None
            self._read(proc.stdout.fileno())
            self._subscribed.clear()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2)
            if proc.poll() is None:  # stdout closed but still running: make sure it ends
                proc.kill()
                proc.wait()
            errs.join(2)
            proc.stdout.close()
            if self._stop.is_set():
                break
            last = stderr[-1].decode("utf-8", "replace").strip() if stderr else ""
            self._failed(f"mosquitto_sub exited with {proc.returncode}: {last}", started)

    def _failed(self, reason: str, started: float) -> None:
        self._backoff.connected_for(self._clock() - started)
        delay = self._backoff.next_delay()
        self.last_failure = reason
        if self._warned.first(reason):
            self._log.warning("%s: %s (restarting with backoff)", self.client_id, reason)
        else:
            self._log.debug("%s: %s; restart in %.1fs", self.client_id, reason, delay)
        self._stop.wait(delay)

    @staticmethod
    def _drain_stderr(proc: subprocess.Popen[bytes], into: list[bytes]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            into.append(line)
            del into[:-5]
        proc.stderr.close()

    def _read(self, fd: int) -> None:
        rest = b""
        while True:
            try:
                chunk = os.read(fd, READ_SIZE)
            except OSError:
                return
            if not chunk:
                return
            records, rest, skipped = parse_records(rest + chunk if rest else chunk)
            if skipped:  # never from mosquitto_sub's format: say so, go on at the next record
                self._log.warning("skipped %d unparseable bytes from mosquitto_sub", skipped)
            batch: list[tuple[str, bytes]] = []
            for topic, payload in records:
                if topic == self.probe_topic:
                    self._probe_came_back(payload)
                else:
                    batch.append((topic, payload))
            if batch:
                self.received += len(batch)
                try:
                    self._on_messages(batch)
                except Exception:  # the owner's bug must not stop the uplink
                    self._log.exception("on_messages failed for %d messages", len(batch))

    # --- probes ----------------------------------------------------------------------------------

    def _probe_came_back(self, payload: bytes) -> None:
        with self._lock:
            current = payload == self._nonce
        if current:
            self._probe_seen = self._clock()
            if not self._subscribed.is_set():
                self.last_failure = None
                self._warned.clear()
                self._subscribed.set()

    def _probe_loop(self) -> None:
        while not self._stop.is_set():
            subscribed = self._subscribed.is_set()
            with self._lock:
                nonce, running = self._nonce, self._proc is not None
            if running:
                sent = self._clock()
                try:
                    self._probe(self.probe_topic, nonce)
                except LinkError:  # the owner's link is down: no verdict on ours
                    self._probe_seen = sent
                if subscribed and sent - self._probe_seen > 4 * self._probe_every_s:
                    self._log.warning(
                        "%s: no probe came back for %.0f s; restarting mosquitto_sub",
                        self.client_id,
                        sent - self._probe_seen,
                    )
                    self._probe_seen = sent
                    self._kill()
            self._stop.wait(self._probe_every_s if subscribed else 0.2)
