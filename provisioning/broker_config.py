"""Mosquitto's production config: a TLS listener that knows every client by its certificate,
and a second TLS listener where phones (#10) sign in with a user name and password.

Generated, never hand-edited: the ACL is rewritten from the server's store and the CA's index
on every enrolment and revocation, and the broker told (``LocalBroker.reload``).

What Mosquitto 2.0 does with these settings (mosquitto.conf(5)):

- ``require_certificate true``: "a client connecting to this listener must provide a valid
  certificate in order for the network connection to proceed" — valid against ``cafile``
  and, with ``crlfile``, not on the "PEM encoded revocation file".
- ``use_identity_as_username true``: "causes the Common Name (CN) from the client certificate
  to be used instead of the MQTT username for access control purposes. The password is not
  used". So the ACL's ``user`` lines name certificates and no client can claim another's name.
  The man page warns that any CA in ``cafile`` can then issue identities: ``cafile`` holds
  the station CA only.
- ``allow_anonymous false``: no username (no certificate CN) is refused.
- ``acl_file``: "Reloaded on reload signal. The currently loaded ACLs will be freed and
  reloaded. Existing subscriptions will be affected after the reload." The man page says
  nothing of ``crlfile`` and SIGHUP; tests/e2e/test_broker_tls.py records what 2.0.11 does.
- ``per_listener_settings false``: one set of security settings (allow_anonymous, acl_file)
  for the whole broker, so no second listener can be left open by mistake.

Phones (``provisioning.phones``) cannot hold a station certificate, so they get their own
listener: TLS with the broker's certificate, ``require_certificate false`` and a
``password_file`` generated from the phone registry (active phones only). The man page says
the file is "Reloaded on reload signal ... Clients that are already connected will not be
affected"; 2.0.11 in fact drops, at that SIGHUP, a connected phone whose line is gone, and
keeps every other phone and every certificate client connected. A revoked phone also loses
its ACL lines, which alone would take its topics away. What Mosquitto 2.0.11 does with both
listeners under ``per_listener_settings false`` — measured by tests/e2e/test_phone_broker.py,
so the setting did not have to change:

- ``password_file`` and ``acl_file`` are global, but on the certificate listener
  ``use_identity_as_username`` skips the password check altogether ("The password is not
  used"): a phone's password without a certificate fails the TLS handshake there, and a
  terminal's certificate with a phone's user name still acts as the certificate's CN.
- On the phone listener a client must name a user in the password file with its password;
  a terminal certificate is not asked for and counts for nothing; a client with no
  credentials is refused on both (``allow_anonymous false``). Mosquitto 2.0.11 answers a
  wrong password with CONNACK 0x87 "Not authorized".
- ``use_username_as_clientid true`` (a listener option) on the phone listener: "it is
  possible to prevent one client disconnecting another by using the same clientid", so a
  phone cannot take over a terminal's or the server's session by copying its client id.

The ACL has one ``user`` block per terminal with its own topics spelt out, not one
``pattern`` with ``%u``: a pattern would keep granting a revoked terminal its topics for as
long as its TLS connection lives, while an explicit list reloaded without the terminal takes
them away at once (Mosquitto 2.0 checks read access again on every message delivered and
write access on every publish). A phone gets the OwnTracks topics of its own
``owntracks/<user>/<device>`` (https://owntracks.org/booklet/tech/json/, "Topics"): it writes
the location topic, ``/event`` (geofence transitions) and ``/info`` (its card, published by
the iOS app: https://owntracks.org/booklet/features/card/), and reads ``/cmd``. Everything
else it may send (waypoints, dumps, steps) is refused, and it can read no one else's
location. The server reads and writes ``owntracks/#``. A phone whose user name is also a
terminal's id (or the server's) would share that terminal's ACL block, so it gets neither ACL
lines nor a password line; ``yijing provision phone`` refuses to make one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

from protocol.errors import ProtocolError
from protocol.messages import IDENT
from protocol.topics import ROOT

from .identity import ProvisioningError, write_secret
from .phones import OWNTRACKS_ROOT, Phone, PhoneApp
from .pki import CRL_FILE, SERVER_IDENTITY


def mosquitto_tls_conf(
    *,
    port: int,
    host: str,
    cafile: Path,
    certfile: Path,
    keyfile: Path,
    crlfile: Path,
    acl_file: Path,
    persistence_dir: Path | None = None,
    run_as: str | None = None,
    phone_port: int | None = None,
    phone_host: str | None = None,
    password_file: Path | None = None,
    phone_certfile: Path | None = None,
    phone_keyfile: Path | None = None,
) -> str:
    """The text of mosquitto.conf for one TLS listener requiring client certificates and,
    with ``phone_port``, one for phones with passwords from ``password_file``.

    The phone listener binds ``phone_host`` (default: ``host``) and shows ``certfile`` unless
    ``phone_certfile``/``phone_keyfile`` name another (say a publicly trusted one: a phone
    does not trust the station CA unless its owner installs ``ca.pem``)."""
    if not 0 < port < 65536:
        raise ProvisioningError(f"broker port {port} is outside 1-65535")
    if phone_port is not None:
        if not 0 < phone_port < 65536 or phone_port == port:
            raise ProvisioningError(f"phone port {phone_port} is outside 1-65535 or is {port}")
        if password_file is None:
            raise ProvisioningError("password_file: the phone listener needs one")
    if (phone_certfile is None) != (phone_keyfile is None):
        raise ProvisioningError("phone_certfile and phone_keyfile come together")
    for name, path in (
        ("cafile", cafile),
        ("certfile", certfile),
        ("keyfile", keyfile),
        ("crlfile", crlfile),
        ("acl_file", acl_file),
        ("persistence_dir", persistence_dir),
        ("password_file", password_file),
        ("phone_certfile", phone_certfile),
        ("phone_keyfile", phone_keyfile),
    ):
        # mosquitto.conf has no quoting: a value runs to the end of its line.
        if path is not None and ("\n" in str(path) or str(path) != str(path).strip()):
            raise ProvisioningError(f"{name}: {str(path)!r} cannot be written in mosquitto.conf")
    if run_as is not None and not IDENT.pattern.fullmatch(run_as):  # type: ignore[union-attr]
        raise ProvisioningError(f"run_as: {run_as!r} is not a user name")
    for name, value in (("host", host), ("phone_host", phone_host)):
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise ProvisioningError(f"{name}: {value!r} cannot be written in mosquitto.conf")
    phones = phone_port is not None
    lines = [
        "# Generated by `yijing provision broker-config`; edits are overwritten.",
        # Started as root, Mosquitto drops to this user ("mosquitto" by default), which must
        # be able to read every file named below.
        *([f"user {run_as}"] if run_as else []),
        "per_listener_settings false",
        "allow_anonymous false",
        f"acl_file {acl_file}",
        # Global too: the certificate listener never asks for it (use_identity_as_username).
        *([f"password_file {password_file}"] if phones else []),
        "",
        f"listener {port} {host}",
        f"cafile {cafile}",
        f"certfile {certfile}",
        f"keyfile {keyfile}",
        f"crlfile {crlfile}",
        "require_certificate true",
        "use_identity_as_username true",
        # Mosquitto 2.0's default minimum is already TLS 1.2; said here so nobody lowers it.
        "tls_version tlsv1.2",
        "",
    ]
    if phones:
        lines += [
            f"listener {phone_port} {phone_host or host}",
            f"certfile {phone_certfile or certfile}",
            f"keyfile {phone_keyfile or keyfile}",
            "require_certificate false",
            "use_username_as_clientid true",
            "tls_version tlsv1.2",
            "",
        ]
    if persistence_dir is not None:
        lines += [
            "persistence true",
            f"persistence_location {persistence_dir}/",
            "autosave_interval 30",
        ]
    lines += [
        # As yijing/broker.py: the default of 1000 queued messages per client silently drops
        # a burst for a slow QoS 1 subscriber (shared/MEASUREMENTS.md). The end-to-end ack
        # recovers drops, but a deeper queue avoids needless resends after a short outage.
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
        "log_type notice",
        "",
    ]
    return "\n".join(lines)


def broker_phones(phones: Iterable[Phone], reserved: Collection[str]) -> list[Phone]:
    """The phones the broker lets in: active OwnTracks phones whose user name is no
    terminal's id (``reserved``) and not the server's, by user name."""
    taken = {*reserved, SERVER_IDENTITY}
    granted = []
    for phone in phones:
        _check(phone.mqtt_user, "phone mqtt_user")
        _check(phone.owntracks_device, f"owntracks_device of {phone.phone_id}")
        if phone.active and phone.app == PhoneApp.OWNTRACKS and phone.mqtt_user not in taken:
            granted.append(phone)
    return sorted(granted, key=lambda p: p.mqtt_user)


def acl_text(
    terminals: Iterable[tuple[str, Collection[str]]],
    revoked: Collection[str],
    phones: Iterable[Phone] = (),
) -> str:
    """The ACL file: the server reads and writes ``yj/1/#`` and ``owntracks/#``; each
    terminal and each phone its own topics.

    A terminal in ``revoked`` gets no lines at all, nor does a phone ``broker_phones``
    leaves out. ``topic`` lines under a ``user`` line apply to that user only
    (mosquitto.conf(5), acl_file); a user with no lines may do nothing, since Mosquitto
    denies by default once an ACL file is in use.
    """
    terminals = sorted(terminals, key=lambda t: t[0])
    lines = [
        "# Generated by yijing from the server's store and the CA index; edits are overwritten.",
        f"user {SERVER_IDENTITY}",
        # Covers the server's shared subscription too: Mosquitto checks a
        # `$share/<group>/<filter>` subscription against <filter> (tests/e2e/test_broker_tls.py).
        f"topic readwrite {ROOT}/#",
        f"topic readwrite {OWNTRACKS_ROOT}/#",
        "",
    ]
    for device_id, units in terminals:
        _check(device_id, "device_id")
        if device_id in revoked:
            continue
        lines += [
            f"user {device_id}",
            f"topic write {ROOT}/up/{device_id}/+",
            f"topic read {ROOT}/down/{device_id}/+",
        ]
        for unit in sorted(set(units)):
            _check(unit, f"units of {device_id}")
            lines.append(f"topic read {ROOT}/unit/{unit}/+")
        lines.append("")
    for phone in broker_phones(phones, [t[0] for t in terminals]):
        lines += [
            f"user {phone.mqtt_user}",
            f"topic write {phone.topic}",
            f"topic write {phone.topic}/event",
            f"topic write {phone.topic}/info",
            f"topic read {phone.topic}/cmd",
            "",
        ]
    return "\n".join(lines)


def password_file_text(phones: Iterable[Phone], reserved: Collection[str]) -> str:
    """Mosquitto's password file: ``user:$7$...`` for each phone ``broker_phones`` keeps."""
    return "".join(f"{p.mqtt_user}:{p.password_hash}\n" for p in broker_phones(phones, reserved))


ACL_FILE = "acl"
PASSWORD_FILE = "passwd"


def write_enrolment_files(
    folder: Path,
    *,
    terminals: Iterable[tuple[str, Collection[str]]],
    revoked: Collection[str],
    crl_pem: bytes,
    phones: Sequence[Phone] | None = None,
) -> None:
    """The files that change with enrolment, ``acl`` and ``crl.pem`` and, when ``phones`` is
    given, ``passwd``: each written atomically (Mosquitto may re-read them at any moment).

    Mode 0644: a broker that runs as its own user must read them, and ``yijing provision``
    rewrites them as whoever runs it (a chown would not survive the next rewrite). The ACL and
    CRL hold no secret; the password file holds only salted hashes of random 192-bit
    passwords, which no one can reverse."""
    terminals = list(terminals)
    folder.mkdir(parents=True, exist_ok=True)
    write_secret(folder / ACL_FILE, acl_text(terminals, revoked, phones or ()).encode(), mode=0o644)
    write_secret(folder / CRL_FILE, crl_pem, mode=0o644)
    if phones is not None:
        text = password_file_text(phones, [t[0] for t in terminals])
        write_secret(folder / PASSWORD_FILE, text.encode(), mode=0o644)


def _check(value: str, field: str) -> None:
    # An id with a space, '+', '#' or a newline would widen or break the ACL: refuse it here
    # even though the store should never hold one.
    try:
        IDENT.check(value, field)
    except ProtocolError as exc:
        raise ProvisioningError(f"ACL: {exc}") from None
