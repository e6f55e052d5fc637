"""Identities for terminals and the server, and the enrolment bundle that carries them.

Exception tree::

    ProvisioningError          base
    └── EnrolmentError         an enrolment bundle that cannot be used (names the field)
"""

from .identity import (
    BrokerAddress,
    DeviceIdentity,
    Enrolment,
    EnrolmentError,
    ProvisioningError,
    ServerIdentity,
    load_enrolment,
    load_or_create_server_identity,
    new_device,
    write_enrolment,
)

__all__ = [
    "BrokerAddress",
    "DeviceIdentity",
    "Enrolment",
    "EnrolmentError",
    "ProvisioningError",
    "ServerIdentity",
    "load_enrolment",
    "load_or_create_server_identity",
    "new_device",
    "write_enrolment",
]
