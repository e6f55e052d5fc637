"""Start an MQTT broker for a one-station install, a demo or a test.

``yijing server`` without a broker URL calls ``start_local_broker``: the machine's Mosquitto
with a generated config when it is installed, else amqtt in-process. amqtt speaks MQTT 3.1.1
only and has known QoS 1 resend bugs; yijing's end-to-end "stored" acknowledgement is what
makes delivery safe over it, not the broker's QoS.

Exception tree::

    BrokerError              base
    └── BrokerStartError     the broker did not come up (names the command and its log)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("yijing.broker")


class BrokerError(Exception):
    """Base of this module's errors."""


class BrokerStartError(BrokerError):
    """The broker did not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        time.sleep(0.02)
    return False


@dataclass
class LocalBroker:
    """A running broker: where it listens and which MQTT version it speaks."""

    host: str
    port: int
    protocol: str  # "5" or "3.1.1"
    kind: str  # "mosquitto" or "amqtt"
    tls: bool = False
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _stop: asyncio.Event | None = field(default=None, repr=False)
    _command: list[str] | None = field(default=None, repr=False)
    _log_path: Path | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        suffix = "" if self.protocol == "5" else f"?protocol={self.protocol}"
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}{suffix}"

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its ACL file and its listeners' TLS files.

        Measured with 2.0.11 (tests/e2e/test_broker_tls.py): after SIGHUP a new connection
        with a certificate on the new CRL is refused (until then the old CRL holds), and a
        still-connected client dropped from the ACL is refused its next publish. A SIGHUP
        does not close connections: a revoked terminal already connected stays connected,
        but can neither publish nor receive.
        """
        if self._process is None or self._process.poll() is not None:
            raise BrokerError(f"{self.kind} on {self.port} is not a running Mosquitto")
        self._process.send_signal(signal.SIGHUP)

    def restart(self, timeout: float = 10.0) -> None:
        """Stop and start the same Mosquitto with the same config (and so the same port)."""
        if self._command is None or self._log_path is None:
            raise BrokerError(f"{self.kind} on {self.port} was not started from a config file")
        self.stop()
        self._process = _spawn(self._command, self._log_path)
        if not wait_for_port(self.host, self.port, timeout):
            self._process.kill()
            raise BrokerStartError(
                f"{' '.join(self._command)} did not listen again on {self.port}; "
                f"see {self._log_path}"
            )

    def kill(self) -> None:
        """SIGKILL, as a power cut or an OOM kill would (for fault tests)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(10)
        else:
            self.stop()

    def stop(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(10)
        elif self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            if self._thread is not None:
                self._thread.join(10)


def mosquitto_config(port: int, data_dir: Path, *, host: str = "127.0.0.1") -> str:
    # Development and one-station listener: loopback only, no TLS. The provisioning package
    # generates the production config (TLS, client certificates, ACL).
    return "\n".join(
        [
            f"listener {port} {host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {data_dir}/",
            "autosave_interval 30",
            # The default of 1000 queued messages per client silently drops a burst for a slow
            # QoS 1 subscriber (shared/MEASUREMENTS.md). The end-to-end ack recovers drops,
            # but a deeper queue avoids needless resends after a short outage.
            # A million: the server's subscription must absorb a whole fleet reconnecting at
            # once (50,000 terminals, up to 64 frames in flight each); at 100,000 a 3x
            # overload for 8 s overflowed it (bench/ingest_bench.py, docs/benchmarks.md).
            "max_queued_messages 1000000",
            "max_inflight_messages 100",
            # Small packets (PUBACKs, StoredAcks) go out at once, not after the peer's delayed
            # ACK: with Nagle on, measured up to 43 ms late on loopback (bench/ingest_bench.py).
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "",
        ]
    )


def start_mosquitto(
    data_dir: Path, *, port: int | None = None, executable: str | None = None
) -> LocalBroker:
    exe = executable or find_mosquitto()
    if exe is None:
        raise BrokerStartError("mosquitto is not installed")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = data_dir / "mosquitto.conf"
    conf.write_text(mosquitto_config(port, data_dir))
    log_file = (data_dir / "mosquitto.log").open("ab")
    process = subprocess.Popen([exe, "-c", str(conf)], stdout=log_file, stderr=log_file)
    log_file.close()
    if not wait_for_port("127.0.0.1", port, 10):
        process.kill()
        raise BrokerStartError(
            f"{exe} -c {conf} did not listen on {port}; see {data_dir}/mosquitto.log"
        )
    return LocalBroker("127.0.0.1", port, "5", "mosquitto", _process=process)


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=log_file)


def start_mosquitto_with(
    config: str,
    data_dir: Path,
    *,
    port: int,
    host: str = "127.0.0.1",
    tls: bool = True,
    executable: str | None = None,
    timeout: float = 10.0,
) -> LocalBroker:
    """Mosquitto with the given config text (e.g. provisioning.broker_config's TLS listener).

    ``port`` and ``host`` must be the listener's in ``config``: they are where we wait for it.
    The result can ``reload()`` (SIGHUP) and ``restart()``.
    """
    exe = executable or find_mosquitto()
    if exe is None:
        raise BrokerStartError("mosquitto is not installed")
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = data_dir / "mosquitto.conf"
    conf.write_text(config)
    log_path = data_dir / "mosquitto.log"
    command = [exe, "-c", str(conf)]
    process = _spawn(command, log_path)
    if not wait_for_port(host, port, timeout):
        process.kill()
        process.wait(10)
        raise BrokerStartError(f"{exe} -c {conf} did not listen on {port}; see {log_path}")
    return LocalBroker(
        host, port, "5", "mosquitto", tls, _process=process, _command=command, _log_path=log_path
    )


def start_amqtt(*, port: int | None = None) -> LocalBroker:
    from amqtt.broker import Broker  # imported here: only needed without Mosquitto

    port = port or free_port()
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    ready = threading.Event()
    failure: list[BaseException] = []
    handle = LocalBroker("127.0.0.1", port, "3.1.1", "amqtt")

    async def serve() -> None:
        handle._loop = asyncio.get_running_loop()
        handle._stop = asyncio.Event()
        broker = Broker(config)
        try:
            await broker.start()
        except Exception as exc:  # amqtt raises its own and OSError; report whatever it was
            failure.append(exc)
            ready.set()
            return
        ready.set()
        await handle._stop.wait()
        await broker.shutdown()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="amqtt", daemon=True)
    handle._thread = thread
    thread.start()
    ready.wait(10)
    if failure:
        raise BrokerStartError(f"amqtt failed to start on {port}: {failure[0]}") from failure[0]
    if not wait_for_port("127.0.0.1", port, 10):
        raise BrokerStartError(f"amqtt did not listen on {port}")
    return handle


def start_local_broker(data_dir: Path, *, port: int | None = None) -> LocalBroker:
    """Mosquitto if installed, else the embedded amqtt broker."""
    if find_mosquitto() is not None:
        broker = start_mosquitto(data_dir, port=port)
    else:
        log.warning("mosquitto not found; starting the embedded amqtt broker (MQTT 3.1.1)")
        broker = start_amqtt(port=port)
    log.info("started %s on %s", broker.kind, broker.url)
    return broker
