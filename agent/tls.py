"""The enrolment bundle's TLS material as files, because Python's ssl loads only files.

Written 0600 under ``<agent data>/tls/`` and rewritten only when the bundle's PEMs changed
(after a rotation), so a start does not wear flash for nothing. A bundle made from a
certificate request (``yijing provision keygen`` on the terminal, then ``provision device
--csr``) carries no key: the key made on the terminal is already in ``tls/key.pem`` and must
be the certificate's.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from provisioning import Enrolment, EnrolmentError
from provisioning.identity import check_key_pair, write_secret
from yijing.mqtt import TlsFiles

from .errors import KeyArchiveError

TLS_DIR, CA_FILE, CERT_FILE, KEY_FILE = "tls", "ca.pem", "cert.pem", "key.pem"


def tls_files(enrolment: Enrolment, data_dir: Path) -> TlsFiles | None:
    """Files for ``MqttLink(tls=...)``; None for a plain mqtt:// bundle."""
    if enrolment.tls is None:
        return None
    folder = data_dir / TLS_DIR
    files = TlsFiles(folder / CA_FILE, folder / CERT_FILE, folder / KEY_FILE)
    pems = [(files.ca_file, enrolment.tls.ca_pem), (files.cert_file, enrolment.tls.cert_pem)]
    if enrolment.tls.key_pem is not None:
        pems.append((files.key_file, enrolment.tls.key_pem))
    else:
        _check_own_key(files.key_file, enrolment.tls.cert_pem)
    for path, pem in pems:
        if not path.exists() or path.read_bytes() != pem or path.stat().st_mode & 0o077:
            write_secret(path, pem)
    folder.chmod(0o700)
    return files


def _check_own_key(path: Path, cert_pem: bytes) -> None:
    if not path.exists():
        raise KeyArchiveError(
            f"the bundle's certificate is for a key made on the terminal, and {path} is not "
            "there: run the agent with the --data folder `yijing provision keygen` wrote to"
        )
    try:
        check_key_pair(path.read_bytes(), x509.load_pem_x509_certificate(cert_pem), str(path))
    except EnrolmentError as exc:
        raise KeyArchiveError(f"{path}: {exc.reason}") from None
