"""Acknowledgements published by libmosquitto, Mosquitto's C client library, through ctypes.

Why: the server publishes one ``StoredAck`` per terminal and batch — at 10,000 fixes/s, ten
thousand publishes a second. paho builds each packet in Python, queues it under two locks,
wakes its network thread through a socket pair and writes: about 22 µs of CPU per publish,
the largest single share (≈30 %) of the ingest thread in the ingest benchmark's profile
(docs/benchmarks.md). ``mosquitto_publish`` does the same in C, with the GIL released, in
about 3 µs (measured on the benchmark VM: 100,000 QoS 0 publishes).

What it is: a publish-only link. libmosquitto's own thread (``mosquitto_loop_start``) owns
the socket, keepalive and reconnects (``mosquitto_reconnect_delay_set``: exponential, capped
at 30 s, without jitter — this is one connection per server process, not a fleet that could
reconnect in lock-step, so the jitter ``yijing.mqtt.Backoff`` adds for terminals is not
needed here). Nothing is subscribed: the uplink arrives through ``yijing.mqtt_csub``.

Errors, in ``yijing.mqtt``'s tree: a library that cannot be loaded or a bad setting is a
``LinkConfigError`` (unusable TLS files a ``LinkTlsError``) at construction; ``publish``
while disconnected raises ``NotConnected``, any other failure ``LinkError``, with
libmosquitto's own ``mosquitto_strerror`` text. A connection the broker refuses is kept as
``last_failure`` (``mosquitto_connack_string``) and logged once per distinct reason.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

from .mqtt import (
    LinkConfigError,
    LinkError,
    LinkTlsError,
    NotConnected,
    Reasons,
    TlsFiles,
    check_endpoint,
)

# libmosquitto's constants (mosquitto.h, 2.0).
_OPT_PROTOCOL_VERSION = 1
_PROTOCOL_V311, _PROTOCOL_V5 = 4, 5
_ERR_SUCCESS, _ERR_NO_CONN = 0, 4

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()

_ConnectCb = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)


def load_library() -> ctypes.CDLL | None:
    """libmosquitto, initialised once per process; None when it is not installed."""
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        name = ctypes.util.find_library("mosquitto") or "libmosquitto.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            return None
        v = ctypes.c_void_p
        lib.mosquitto_new.restype = v
        lib.mosquitto_new.argtypes = [ctypes.c_char_p, ctypes.c_bool, v]
        lib.mosquitto_int_option.argtypes = [v, ctypes.c_int, ctypes.c_int]
        lib.mosquitto_tls_set.argtypes = [v, ctypes.c_char_p, ctypes.c_char_p,
                                          ctypes.c_char_p, ctypes.c_char_p, v]  # fmt: skip
        lib.mosquitto_connect_async.argtypes = [v, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        lib.mosquitto_reconnect_delay_set.argtypes = [v, ctypes.c_uint, ctypes.c_uint,
                                                      ctypes.c_bool]  # fmt: skip
        lib.mosquitto_connect_callback_set.argtypes = [v, _ConnectCb]
        lib.mosquitto_disconnect_callback_set.argtypes = [v, _ConnectCb]
        lib.mosquitto_loop_start.argtypes = [v]
        lib.mosquitto_loop_stop.argtypes = [v, ctypes.c_bool]
        lib.mosquitto_disconnect.argtypes = [v]
        lib.mosquitto_destroy.argtypes = [v]
        lib.mosquitto_publish.argtypes = [v, v, ctypes.c_char_p, ctypes.c_int,
                                          ctypes.c_char_p, ctypes.c_int, ctypes.c_bool]  # fmt: skip
        lib.mosquitto_strerror.restype = ctypes.c_char_p
        lib.mosquitto_strerror.argtypes = [ctypes.c_int]
        lib.mosquitto_connack_string.restype = ctypes.c_char_p
        lib.mosquitto_connack_string.argtypes = [ctypes.c_int]
        lib.mosquitto_reason_string.restype = ctypes.c_char_p
        lib.mosquitto_reason_string.argtypes = [ctypes.c_int]
        lib.mosquitto_lib_init()
        _lib = lib
        return lib


def available() -> bool:
    return load_library() is not None


def _text(raw: bytes | None) -> str:
    return (raw or b"?").decode("utf-8", "replace")


class CPublisher:
    """A publish-only MQTT connection kept up by libmosquitto's thread."""

    def __init__(
        self,
        *,
        client_id: str,
        host: str = "127.0.0.1",
        port: int = 1883,
        protocol: str = "5",
        keepalive: int = 30,
        tls: TlsFiles | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        check_endpoint(protocol, port)
        lib = load_library()
        if lib is None:
            raise LinkConfigError(
                "libmosquitto is not installed (Debian: libmosquitto1); publish with paho"
            )
        self._lib = lib
        self._v5 = protocol == "5"
        self.client_id, self.host, self.port, self._keepalive = client_id, host, port, keepalive
        self._log = logger or logging.getLogger("yijing.mqtt_cpub")
        self._connected = threading.Event()
        self._warned = Reasons()
        self.last_failure: str | None = None
        self.connects = 0
        self._started = False
        self._alive = threading.Lock()
        mosq = lib.mosquitto_new(client_id.encode(), True, None)
        if not mosq:
            raise LinkConfigError(f"mosquitto_new failed for client id {client_id!r}")
        self._mosq = ctypes.c_void_p(mosq)
        version = _PROTOCOL_V5 if protocol == "5" else _PROTOCOL_V311
        lib.mosquitto_int_option(self._mosq, _OPT_PROTOCOL_VERSION, version)
        if tls is not None:
            for path in (tls.ca_file, tls.cert_file, tls.key_file):
                if not path.is_file():
                    self._destroy()
                    raise LinkTlsError(f"TLS file {path} does not exist")
            rc = lib.mosquitto_tls_set(
                self._mosq,
                str(tls.ca_file).encode(),
                None,
                str(tls.cert_file).encode(),
                str(tls.key_file).encode(),
                None,
            )
            if rc != _ERR_SUCCESS:
                self._destroy()
                raise LinkTlsError(
                    f"TLS files {tls.ca_file}, {tls.cert_file}, {tls.key_file}: "
                    f"{_text(lib.mosquitto_strerror(rc))}"
                )
        lib.mosquitto_reconnect_delay_set(self._mosq, 1, 30, True)
        # Kept on self: libmosquitto holds only the C pointer, which must outlive it.
        self._on_connect_c = _ConnectCb(self._on_connect)
        self._on_disconnect_c = _ConnectCb(self._on_disconnect)
        lib.mosquitto_connect_callback_set(self._mosq, self._on_connect_c)
        lib.mosquitto_disconnect_callback_set(self._mosq, self._on_disconnect_c)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise LinkError("publisher already started")
        self._started = True
        # connect_async: the loop thread connects, and keeps reconnecting if the broker is
        # not up yet (the refusal arrives in the connect callback or as a socket error).
        rc = self._lib.mosquitto_connect_async(
            self._mosq, self.host.encode(), self.port, self._keepalive
        )
        if rc != _ERR_SUCCESS:
            self._note_failure(_text(self._lib.mosquitto_strerror(rc)))
        rc = self._lib.mosquitto_loop_start(self._mosq)
        if rc != _ERR_SUCCESS:
            raise LinkError(f"mosquitto_loop_start: {_text(self._lib.mosquitto_strerror(rc))}")

    def stop(self) -> None:
        if self._mosq is None:
            return
        if self._started:
            self._lib.mosquitto_disconnect(self._mosq)
            self._lib.mosquitto_loop_stop(self._mosq, False)
        self._connected.clear()
        self._destroy()

    def _destroy(self) -> None:
        with self._alive:
            if self._mosq is not None:
                self._lib.mosquitto_destroy(self._mosq)
                self._mosq = None  # type: ignore[assignment]

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # --- sending -----------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, qos: int = 0) -> None:
        """Hand one message to libmosquitto; raises ``NotConnected`` while down."""
        # Held across the call: stop() must not free the client under a publish in flight
        # (the ingest thread may still be acknowledging its last batch).
        with self._alive:
            mosq = self._mosq
            if mosq is None or not self._connected.is_set():
                raise NotConnected(f"{self.client_id}: not connected to {self.host}:{self.port}")
            rc = self._lib.mosquitto_publish(
                mosq, None, topic.encode(), len(payload), payload, qos, False
            )
        if rc == _ERR_NO_CONN:
            raise NotConnected(f"{self.client_id}: connection lost during publish")
        if rc != _ERR_SUCCESS:
            raise LinkError(f"publish to {topic!r}: {_text(self._lib.mosquitto_strerror(rc))}")

    # --- libmosquitto's thread -------------------------------------------------------------------

    def _on_connect(self, mosq: int | None, obj: int | None, rc: int) -> None:
        if rc != 0:
            self._note_failure(f"broker refused the connection: {self._connack(rc)}")
            return
        self.last_failure = None
        self._warned.clear()
        self.connects += 1
        self._connected.set()

    def _on_disconnect(self, mosq: int | None, obj: int | None, rc: int) -> None:
        self._connected.clear()
        if rc != 0:  # not our own disconnect: libmosquitto reconnects
            self.last_failure = self._error(rc)
            self._log.info("%s: link down (%s); reconnecting", self.client_id, self._error(rc))

    def _connack(self, rc: int) -> str:
        # MQTT 5 CONNACK reason codes (§3.2.2.2) differ from 3.1.1's return codes (§3.2.2.3).
        if self._v5:
            return _text(self._lib.mosquitto_reason_string(rc))
        return _text(self._lib.mosquitto_connack_string(rc))

    def _error(self, rc: int) -> str:
        return _text(self._lib.mosquitto_strerror(rc))

    def _note_failure(self, reason: str) -> None:
        self.last_failure = reason
        if self._warned.first(reason):
            self._log.warning(
                "%s: cannot connect to %s:%s: %s (retrying; repeats not logged)",
                self.client_id,
                self.host,
                self.port,
                reason,
            )
