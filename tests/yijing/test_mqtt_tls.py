"""The MQTT adapter's TLS: unusable files are a clear configuration error at construction,
and a broker that keeps refusing the handshake is retried with backoff and logged once, not
once per attempt (a revoked terminal must not fill its flash with logs)."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import pytest

from provisioning.pki import StationCA, pem_cert, pem_key
from tests.helpers import wait_until
from yijing.mqtt import Backoff, LinkTlsError, MqttLink, TlsFiles


def files(tmp_path: Path) -> TlsFiles:
    ca = StationCA.create(tmp_path / "pki")
    key, cert = ca.issue_terminal("ft-0042")
    assert key is not None
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "cert.pem").write_bytes(pem_cert(cert))
    (tmp_path / "key.pem").write_bytes(pem_key(key))
    return TlsFiles(tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")


def test_missing_or_broken_files_name_themselves(tmp_path: Path) -> None:
    good = files(tmp_path)
    missing = TlsFiles(tmp_path / "nope.pem", good.cert_file, good.key_file)
    with pytest.raises(LinkTlsError, match=r"nope\.pem"):
        MqttLink(client_id="ft-0042", tls=missing)
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(LinkTlsError, match=r"junk\.pem"):
        MqttLink(
            client_id="ft-0042", tls=TlsFiles(good.ca_file, good.cert_file, tmp_path / "junk.pem")
        )


# paho's _ssl_wrap_socket does not close the SSL socket when the handshake fails; CPython
# closes it as soon as the exception is dropped, with a ResourceWarning (ignored outside tests).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_refused_handshake_is_retried_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A "broker" that accepts TCP and hangs up at once, as one refusing our certificate does.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    link = MqttLink(
        client_id="ft-0042",
        port=port,
        tls=files(tmp_path),
        backoff=Backoff(base=0.01, cap=0.02, rng=lambda: 1.0),
        logger=logging.getLogger("test.tls"),
    )
    with caplog.at_level(logging.DEBUG, logger="test.tls"):
        link.start()
        try:
            wait_until(lambda: len(accepted) >= 5, 10, "five attempts")
        finally:
            link.stop()
            stop.set()
            thread.join()
            server.close()
    assert not link.connected
    assert link.last_failure is not None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    reasons = {r.args[3] for r in warnings}  # type: ignore[index]
    assert len(warnings) == len(reasons) <= 2, [r.getMessage() for r in warnings]
