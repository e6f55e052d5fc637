"""Identities for terminals and the server, the station CA, and the enrolment bundle.

Exception tree::

    ProvisioningError          base
    ├── EnrolmentError         an enrolment bundle that cannot be used (names the field)
    ├── PkiError               the CA folder or a request to it (names the file or field)
    │   └── CsrError           a certificate signing request that must not be signed
    ├── BulkError              a terminals CSV with bad rows (names every line and column)
    └── PhoneError             a phone's enrolment, registry or app settings (names the field)
"""

from .bulk import BulkError, BulkResult, TerminalRow, enrol_bulk, read_terminals_csv
from .identity import (
    BrokerAddress,
    DeviceIdentity,
    Enrolment,
    EnrolmentError,
    ProvisioningError,
    ServerIdentity,
    TlsMaterial,
    load_enrolment,
    load_or_create_server_identity,
    new_device,
    write_enrolment,
)
from .pki import SERVER_IDENTITY, CsrError, IssuedCert, PkiError, StationCA

__all__ = [
    "SERVER_IDENTITY",
    "BrokerAddress",
    "BulkError",
    "BulkResult",
    "CsrError",
    "DeviceIdentity",
    "Enrolment",
    "EnrolmentError",
    "IssuedCert",
    "PkiError",
    "ProvisioningError",
    "ServerIdentity",
    "StationCA",
    "TerminalRow",
    "TlsMaterial",
    "enrol_bulk",
    "load_enrolment",
    "load_or_create_server_identity",
    "new_device",
    "read_terminals_csv",
    "write_enrolment",
]
