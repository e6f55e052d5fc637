"""The enrolment bundle's TLS material as files, because Python's ssl loads only files.

Written 0600 under ``<agent data>/tls/`` and rewritten only when the bundle's PEMs changed
(after a rotation), so a start does not wear flash for nothing.
"""

from __future__ import annotations

from pathlib import Path

from provisioning import Enrolment
from provisioning.identity import write_secret
from yijing.mqtt import TlsFiles


def tls_files(enrolment: Enrolment, data_dir: Path) -> TlsFiles | None:
    """Files for ``MqttLink(tls=...)``; None for a plain mqtt:// bundle."""
    if enrolment.tls is None:
        return None
    folder = data_dir / "tls"
    files = TlsFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    for path, pem in (
        (files.ca_file, enrolment.tls.ca_pem),
        (files.cert_file, enrolment.tls.cert_pem),
        (files.key_file, enrolment.tls.key_pem),
    ):
        if not path.exists() or path.read_bytes() != pem or path.stat().st_mode & 0o077:
            write_secret(path, pem)
    folder.chmod(0o700)
    return files
