"""``yijing provision``: the station CA, enrolling terminals (one or a CSV of them), revoking
and rotating them, phones as terminals, the broker's TLS config, and sign-in tokens for people.

Everything lives in the server's data folder: the store (``yijing.db``), the server's signing
key (``server-key.json``), the CA (``pki/``), the phone registry (``phones.db``), and the
broker's files (``broker/``: copies of the certificates it needs, ``acl``, ``passwd``,
``mosquitto.conf``). The broker folder never holds the CA key, so the broker's user can read
all of it. Every change to who may connect (enrol, revoke) rewrites the ACL, CRL and password
file there; the broker applies them on SIGHUP.

A phone is enrolled for one app (``provisioning.phones``): OwnTracks, which imports its whole
configuration from a QR code, or Traccar Client, whose own QR scanner takes the server URL
with the device id. The QR code is printed in the terminal with the same settings in words.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from provisioning import ProvisioningError
from provisioning.identity import broker_from_url

EXAMPLES = {
    "provision": "example:\n  yijing provision ca --broker-host mqtt.station.lan\n"
    "  yijing provision device ft-0042 --units futian-s1 "
    "--broker mqtts://10.0.0.5:8883 --out ft-0042.json\n"
    "  yijing provision bulk terminals.csv --out-dir bundles/ --broker mqtts://10.0.0.5:8883\n"
    "  yijing provision revoke ft-0042 --reason 'reported lost'\n"
    "  yijing provision phone li-na --unit futian-s1 --app owntracks --mqtt-host 10.0.0.5\n"
    "  yijing provision token --name 'Officer Li' --role officer",
    "ca": "example:\n  yijing provision ca --data ./var/server "
    "--broker-host mqtt.station.lan --broker-host 10.0.0.5",
    "device": "example:\n  yijing provision device ft-0042 --units futian-s1 "
    "--broker mqtts://10.0.0.5:8883 --out ft-0042.json\n"
    "  yijing provision device ft-0043 --broker mqtt://127.0.0.1:1883   # no TLS (lab only)",
    "keygen": "example (on the terminal, then at the station):\n"
    "  yijing provision keygen ft-0042 --agent-data /var/lib/yijing/agent --out ft-0042.csr\n"
    "  yijing provision device ft-0042 --csr ft-0042.csr --broker mqtts://10.0.0.5:8883",
    "bulk": "example:\n  yijing provision bulk terminals.csv --out-dir bundles/ "
    "--broker mqtts://10.0.0.5:8883\n"
    "terminals.csv:\n  device_id,label,units\n  ft-0001,Futian patrol 1,futian-s1;futian-night",
    "revoke": "example:\n  yijing provision revoke ft-0042 --reason 'reported lost'\n"
    "  a server started with --mqtt-listen reloads its broker by itself within 2 s;\n"
    "  a broker of your own: kill -HUP $(pidof mosquitto)   # re-reads the ACL and CRL",
    "rotate": "example:\n  yijing provision rotate ft-0042 --broker mqtts://10.0.0.5:8883 "
    "--out ft-0042-k2.json",
    "broker-config": "example:\n  yijing provision broker-config --port 8883 --host 0.0.0.0\n"
    "  mosquitto -c var/server/broker/mosquitto.conf\n"
    "terminals connect to 8883 with their certificates, phones to 8884 with passwords",
    "phone": "example:\n"
    "  yijing provision phone li-na --unit futian-s1 --app owntracks "
    "--mqtt-host mqtt.station.lan --mqtt-port 8884\n"
    "  yijing provision phone li-na --unit futian-s1 --app owntracks "
    "--http-url https://yj.station.lan/pub/owntracks --out li-na.otrc\n"
    "  yijing provision phone wang-wei --unit futian-s1 --app traccar "
    "--server-url https://yj.station.lan/pub/osmand\n"
    "the volunteer scans the QR code: with the phone's camera (OwnTracks) or from the QR\n"
    "button in Traccar Client's settings. Run it again to issue new credentials.",
    "phone-revoke": "example:\n  yijing provision phone-revoke ph-li-na\n"
    "  a server started with --mqtt-listen reloads its broker by itself within 2 s",
    "token": "example:\n  yijing provision token --name 'Officer Li' --role officer\n"
    "  yijing provision token --name 'Inspector Wang' --role inspector --scope futian",
}

DATA_HELP = "the server's data folder (default: var/server)"
PHONES_DB = "phones.db"  # as server.broker_sync.PHONES_DB


def _now_ms() -> int:
    return int(time.time() * 1000)


def _store(data: Path) -> Any:
    from server.sqlite_store import SqliteStore

    return SqliteStore(data / "yijing.db")


def _ca(data: Path, *, needed: bool) -> Any:
    from provisioning.pki import PkiError, StationCA

    if StationCA.exists(data / "pki"):
        return StationCA.load(data / "pki")
    if needed:
        raise PkiError(f"{data / 'pki'}: no station CA; create it with `yijing provision ca`")
    return None


def _register(store: Any, identity: Any, label: str) -> None:
    from provisioning.identity import raw_public
    from server.store import Device, DeviceKey

    store.add_device(
        Device(identity.device_id, label, identity.units, _now_ms()),
        DeviceKey(
            identity.device_id, identity.key_id, identity.mac_key, raw_public(identity.public_key)
        ),
    )


def _phone_list(data: Path) -> list[Any]:
    from provisioning.phones import PhoneRegistry

    if not (data / PHONES_DB).exists():
        return []
    registry = PhoneRegistry(data / PHONES_DB)
    try:
        return registry.phones()
    finally:
        registry.close()


def refresh_broker_files(data: Path, store: Any) -> Path | None:
    """Rewrite the broker folder's ACL, CRL and password file from the store, the CA and the
    phone registry, if the folder exists."""
    from provisioning.broker_config import write_enrolment_files
    from provisioning.pki import CRL_FILE

    folder = data / "broker"
    if not (folder / "mosquitto.conf").exists():
        return None
    ca = _ca(data, needed=False)
    if ca is None:
        return None
    write_enrolment_files(
        folder,
        terminals=[(d.device_id, d.units) for d in store.devices()],
        revoked=set(store.revoked()) | ca.revoked_names(),
        crl_pem=ca.path(CRL_FILE).read_bytes(),  # the CA's signed CRL as it stands
        phones=_phone_list(data),
    )
    return folder


def _tls_for(ca: Any, device_id: str, csr: Path | None = None) -> Any:
    from provisioning import TlsMaterial
    from provisioning.pki import CsrError, pem_cert, pem_key, request_name

    if csr is None:
        key, cert = ca.issue_terminal(device_id)
        return TlsMaterial(ca.cert_pem, pem_cert(cert), pem_key(key))
    # The key was made on the terminal (`yijing provision keygen`): certify its request; the
    # bundle carries no TLS key.
    try:
        request = csr.read_bytes()
    except OSError as exc:
        raise ProvisioningError(f"{csr}: cannot be read ({exc.strerror})") from None
    named = request_name(request)  # None: not a request; sign_csr says exactly why
    if named is not None and named != device_id:  # before signing: nothing issued for it
        raise CsrError(f"{csr}: the request is for {named!r}, not {device_id!r}")
    return TlsMaterial(ca.cert_pem, pem_cert(ca.sign_csr(request)))


# --- commands --------------------------------------------------------------------------------


def cmd_ca(args: argparse.Namespace) -> int:
    from provisioning.pki import StationCA

    ca = StationCA.create(args.data / "pki", name=args.name)
    ca.issue_broker(args.broker_host)
    ca.issue_server()
    print(
        f"station CA in {ca.directory} (keep ca-key.pem secret; 0600)\n"
        f"broker certificate for {', '.join(args.broker_host)}; server identity certificate\n"
        "next: `yijing provision broker-config`, then enrol terminals with an mqtts:// broker"
    )
    return 0


def cmd_device(args: argparse.Namespace) -> int:
    from provisioning import Enrolment, load_or_create_server_identity, new_device, write_enrolment

    broker = broker_from_url(args.broker)
    ca = _ca(args.data, needed=broker.tls)
    server_identity = load_or_create_server_identity(args.data / "server-key.json")
    identity = new_device(args.device_id, units=tuple(args.units))
    out = args.out or Path(f"{identity.device_id}.json")
    if out.exists():
        raise ProvisioningError(f"{out}: exists; refusing to overwrite a bundle")
    store = _store(args.data)
    try:
        if any(d.device_id == identity.device_id for d in store.devices()):
            raise ProvisioningError(
                f"{identity.device_id!r} is registered already; give it new keys with "
                "`yijing provision rotate`"
            )
        if args.csr is not None and not broker.tls:
            raise ProvisioningError("--csr: a certificate is only for an mqtts:// broker")
        tls = _tls_for(ca, identity.device_id, args.csr) if broker.tls else None
        _register(store, identity, args.label)
        write_enrolment(
            out,
            Enrolment(identity, server_identity.public_key, server_identity.key_id, broker, tls),
        )
        refresh_broker_files(args.data, store)
    finally:
        store.close()
    extra = " with its TLS certificate" if tls is not None else ""
    print(f"registered {identity.device_id}; enrolment bundle{extra} (secret, mode 0600): {out}")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from agent.tls import KEY_FILE, TLS_DIR
    from provisioning.identity import write_secret
    from provisioning.pki import terminal_request

    key_path = args.agent_data / TLS_DIR / KEY_FILE
    if key_path.exists():
        raise ProvisioningError(f"{key_path}: a key is there already; refusing to replace it")
    out = args.out or Path(f"{args.device_id}.csr")
    if out.exists():
        raise ProvisioningError(f"{out}: exists; refusing to overwrite")
    key_pem, csr_pem = terminal_request(args.device_id)
    write_secret(key_path, key_pem)
    key_path.parent.chmod(0o700)
    out.write_bytes(csr_pem)
    print(
        f"TLS key for {args.device_id} made in {key_path} (0600; it never leaves this terminal)\n"
        f"certificate request: {out} — take it to the station: "
        f"yijing provision device {args.device_id} --csr {out.name} --broker mqtts://..."
    )
    return 0


def cmd_bulk(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from provisioning import enrol_bulk, load_or_create_server_identity, read_terminals_csv

    broker = broker_from_url(args.broker)
    ca = _ca(args.data, needed=broker.tls)
    server_identity = load_or_create_server_identity(args.data / "server-key.json")
    store = _store(args.data)
    try:
        existing = {d.device_id for d in store.devices()}
        rows = read_terminals_csv(args.csv, existing=existing)
        with tqdm(total=len(rows), unit="terminal", file=sys.stderr, disable=args.quiet) as bar:

            def progress(done: int, total: int) -> None:
                bar.update(done - bar.n)

            result = enrol_bulk(
                rows,
                out_dir=args.out_dir,
                server_identity=server_identity,
                broker=broker,
                ca=ca,
                register=lambda identity, label: _register(store, identity, label),
                progress=progress,
            )
        refresh_broker_files(args.data, store)
    finally:
        store.close()
    tls = "with TLS certificates " if broker.tls else ""
    print(
        f"enrolled {len(result.bundles)} terminals {tls}in {result.seconds:.1f} s; "
        f"bundles (secret, mode 0600) in {args.out_dir}"
    )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from provisioning.pki import check_device_id

    check_device_id(args.device_id)
    ca = _ca(args.data, needed=False)
    store = _store(args.data)
    try:
        from server.errors import ServerError

        try:
            store.revoke_device(args.device_id, at_ms=_now_ms(), reason=args.reason)
        except ServerError as exc:
            raise ProvisioningError(str(exc)) from None
        serials: list[int] = []
        if ca is not None and any(
            e.cn == args.device_id and e.revoked_ms is None for e in ca.index
        ):
            serials = ca.revoke(args.device_id, args.reason)
        folder = refresh_broker_files(args.data, store)
    finally:
        store.close()
    print(f"revoked {args.device_id} ({args.reason}): the server refuses its frames")
    if serials:
        print(f"certificate(s) {', '.join(f'{s:x}' for s in serials)} on the CRL")
    if folder is not None:
        print(f"ACL and CRL rewritten in {folder}; tell that broker: kill -HUP <mosquitto pid>")
    print("a server started with --mqtt-listen refuses the terminal now and reloads its broker")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from provisioning import Enrolment, load_or_create_server_identity, new_device, write_enrolment
    from provisioning.identity import raw_public
    from server.store import DeviceKey

    broker = broker_from_url(args.broker)
    ca = _ca(args.data, needed=broker.tls)
    server_identity = load_or_create_server_identity(args.data / "server-key.json")
    if args.out.exists():
        raise ProvisioningError(f"{args.out}: exists; refusing to overwrite a bundle")
    store = _store(args.data)
    try:
        device = next((d for d in store.devices() if d.device_id == args.device_id), None)
        if device is None:
            raise ProvisioningError(f"{args.device_id!r} is not registered")
        if args.device_id in store.revoked():
            raise ProvisioningError(f"{args.device_id!r} is revoked; enrol a new terminal id")
        keys = store.device_keys(args.device_id)
        key_id = max((k.key_id for k in keys), default=0) + 1
        identity = new_device(args.device_id, units=device.units, key_id=key_id)
        tls = _tls_for(ca, identity.device_id) if broker.tls else None
        store.add_key(
            DeviceKey(identity.device_id, key_id, identity.mac_key, raw_public(identity.public_key))
        )
        write_enrolment(
            args.out,
            Enrolment(identity, server_identity.public_key, server_identity.key_id, broker, tls),
        )
    finally:
        store.close()
    print(
        f"{args.device_id}: key generation {key_id} registered; bundle (secret, 0600): {args.out}\n"
        f"generations 1-{key_id - 1} still verify the frames sealed with them; the old "
        "certificate stays valid (not revoked) so the terminal can move to the new bundle"
        if key_id > 1
        else f"{args.device_id}: key generation {key_id}; bundle: {args.out}"
    )
    return 0


def cmd_broker_config(args: argparse.Namespace) -> int:
    from provisioning.broker_config import PASSWORD_FILE, mosquitto_tls_conf
    from provisioning.identity import write_secret
    from provisioning.pki import BROKER_CERT_FILE, BROKER_KEY_FILE, CA_FILE

    ca = _ca(args.data, needed=True)
    out: Path = args.out or args.data / "broker"
    out.mkdir(parents=True, exist_ok=True)
    for name in (CA_FILE, BROKER_CERT_FILE):
        shutil.copyfile(ca.path(name), out / name)
    write_secret(out / BROKER_KEY_FILE, ca.path(BROKER_KEY_FILE).read_bytes())
    (out / "persistence").mkdir(exist_ok=True)
    conf = mosquitto_tls_conf(
        port=args.port,
        host=args.host,
        cafile=(out / CA_FILE).resolve(),
        certfile=(out / BROKER_CERT_FILE).resolve(),
        keyfile=(out / BROKER_KEY_FILE).resolve(),
        crlfile=(out / "crl.pem").resolve(),
        acl_file=(out / "acl").resolve(),
        persistence_dir=(out / "persistence").resolve(),
        run_as=args.run_as,
        phone_port=args.phone_port or args.port + 1,
        password_file=(out / PASSWORD_FILE).resolve(),
    )
    write_secret(out / "mosquitto.conf", conf.encode(), mode=0o644)
    store = _store(args.data)
    try:
        refresh_broker_files(args.data, store)
    finally:
        store.close()
    print(
        f"broker config in {out}: mosquitto.conf, acl, passwd, crl.pem, ca.pem, broker.pem, "
        "broker-key.pem (0600: chown it to the broker's user)\n"
        f"terminals: port {args.port} (certificates); phones: port "
        f"{args.phone_port or args.port + 1} (passwords)\n"
        f"run: mosquitto -c {out / 'mosquitto.conf'}"
    )
    return 0


def _with_store(data: Path, use: Any) -> Any:
    """``use(store)`` when the store exists, else None (a phone alone needs no store)."""
    if not (data / "yijing.db").exists():
        return None
    store = _store(data)
    try:
        return use(store)
    finally:
        store.close()


def cmd_phone(args: argparse.Namespace) -> int:
    from provisioning import phones as ph
    from provisioning.identity import write_secret

    app = ph.PhoneApp(args.app)
    if app == ph.PhoneApp.TRACCAR and not args.server_url:
        raise ProvisioningError("--server-url: Traccar Client needs the OsmAnd endpoint's URL")
    if app == ph.PhoneApp.OWNTRACKS and not (args.mqtt_host or args.http_url):
        raise ProvisioningError("give --mqtt-host (MQTT mode) or --http-url (HTTP mode)")
    # Before enrolling: a typo must not cost the volunteer a set of credentials.
    for name, value in (("--server-url", args.server_url), ("--http-url", args.http_url)):
        if value is not None:
            ph.check_url(value, name)
    if args.mqtt_host is not None:
        ph.check_host(args.mqtt_host, "--mqtt-host")
    if args.out is not None and args.out.exists():
        raise ProvisioningError(f"{args.out}: exists; refusing to overwrite")
    phone_id = args.phone_id or f"ph-{args.volunteer}"
    if phone_id in (_with_store(args.data, lambda s: {d.device_id for d in s.devices()}) or ()):
        raise ProvisioningError(f"{phone_id!r} is a terminal's id; choose one with --phone-id")
    registry = ph.PhoneRegistry(args.data / PHONES_DB)
    try:
        again = registry.get(phone_id) is not None
        phone, password = registry.enrol(
            volunteer_id=args.volunteer,
            unit_id=args.unit,
            app=app,
            now_ms=_now_ms(),
            phone_id=phone_id,
            encrypt=not args.no_encrypt,
        )
    finally:
        registry.close()
    folder = _with_store(args.data, lambda s: refresh_broker_files(args.data, s))
    setup = ph.phone_setup(
        phone,
        password,
        mqtt_host=args.mqtt_host,
        mqtt_port=args.mqtt_port,
        http_url=args.http_url,
        server_url=args.server_url,
    )
    print(ph.qr_text(setup.qr))
    what = "new credentials for" if again else "enrolled"
    print(f"{what} {phone.phone_id} ({args.volunteer}, unit {args.unit}); shown once:")
    print(setup.words)
    if again:
        print("the credentials issued before no longer work")
    if args.out is not None:
        write_secret(args.out, setup.file_text.encode())
        print(f"settings (secret, mode 0600): {args.out}")
    if folder is not None:
        print(f"ACL and password file rewritten in {folder}; that broker: kill -HUP <pid>")
    print("a server started with --mqtt-listen lets the phone in within 2 s")
    return 0


def cmd_phone_revoke(args: argparse.Namespace) -> int:
    from provisioning.phones import PhoneRegistry

    if not (args.data / PHONES_DB).exists():
        raise ProvisioningError(f"{args.data / PHONES_DB}: no phone is enrolled here")
    registry = PhoneRegistry(args.data / PHONES_DB)
    try:
        registry.revoke(args.phone_id, now_ms=_now_ms())
    finally:
        registry.close()
    folder = _with_store(args.data, lambda s: refresh_broker_files(args.data, s))
    print(f"revoked {args.phone_id}: its password and topics are gone from the broker")
    if folder is not None:
        print(f"ACL and password file rewritten in {folder}; that broker: kill -HUP <pid>")
    print("a server started with --mqtt-listen reloads its broker within 2 s")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from server.web.access import Role, TokenAuthenticator

    token = TokenAuthenticator.issue(
        args.data / "tokens.json", args.name, Role(args.role), scope=args.scope
    )
    scope = f", scope {args.scope}" if args.scope else ""
    print(
        f"token for {args.name} ({args.role}{scope}), shown once:\n{token}\n"
        f"sign-in link: http://<server>/login?token={token}\n"
        "(a running server reads new tokens at its next start)"
    )
    return 0


# --- the parser ------------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "provision",
        help="station CA, enrol / revoke / rotate terminals, broker config, sign-in tokens",
        epilog=EXAMPLES["provision"],
        formatter_class=fmt,
    )
    psub = p.add_subparsers(dest="what", required=True, metavar="WHAT")

    def command(name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
        c: argparse.ArgumentParser = psub.add_parser(
            name, help=help_text, description=help_text, epilog=EXAMPLES[name], formatter_class=fmt
        )
        c.add_argument("--data", type=Path, default=Path("var/server"), help=DATA_HELP)
        c.set_defaults(func=func)
        return c

    c = command("ca", "create the station CA, the broker's certificate and the server's", cmd_ca)
    c.add_argument(
        "--broker-host",
        action="append",
        required=True,
        metavar="HOST",
        help="a host name or IP address terminals dial for the broker (repeat for each)",
    )
    c.add_argument("--name", default="yijing station CA", help="the CA's common name")

    broker_help = "mqtts://host[:8883] (TLS, client certificate) or mqtt://host[:1883]"
    c = command("device", "register a terminal and write its enrolment bundle", cmd_device)
    c.add_argument("device_id", help="terminal id: letters, digits, . _ - (max 64)")
    c.add_argument("--units", nargs="*", default=[], help="org units whose broadcasts it gets")
    c.add_argument("--label", default="", help="a human name for the terminal")
    c.add_argument("--broker", default="mqtt://127.0.0.1:1883", help=broker_help)
    c.add_argument("--out", type=Path, default=None, help="bundle path (default: ID.json)")
    c.add_argument(
        "--csr",
        type=Path,
        default=None,
        help="certify a TLS key made on the terminal (`yijing provision keygen`) instead of "
        "making one: the bundle then carries no TLS key",
    )

    c = command(
        "keygen", "on a terminal: make its TLS key and a certificate request", cmd_keygen
    )
    c.add_argument("device_id", help="this terminal's id")
    c.add_argument(
        "--agent-data",
        type=Path,
        required=True,
        help="the agent's data folder on this terminal (the key goes to DIR/tls/key.pem)",
    )
    c.add_argument("--out", type=Path, default=None, help="the request (default: ID.csr)")

    c = command("bulk", "enrol every terminal in a CSV (device_id,label,units)", cmd_bulk)
    c.add_argument("csv", type=Path, help="CSV with the header device_id,label,units")
    c.add_argument("--out-dir", type=Path, required=True, help="folder for the bundles (ID.json)")
    c.add_argument("--broker", default="mqtt://127.0.0.1:1883", help=broker_help)
    c.add_argument("--quiet", action="store_true", help="no progress bar")

    c = command(
        "revoke",
        "revoke a terminal: its certificates, its frames on the server, its broker topics",
        cmd_revoke,
    )
    c.add_argument("device_id", help="the terminal id")
    c.add_argument("--reason", required=True, help="why, for the record (e.g. 'reported lost')")

    c = command(
        "rotate",
        "give a terminal new keys (next key generation) and a new certificate; the old keys "
        "still verify frames already sealed, and the old certificate stays valid until the "
        "terminal has moved to the new bundle (it is not revoked)",
        cmd_rotate,
    )
    c.add_argument("device_id", help="the terminal id")
    c.add_argument("--broker", default="mqtt://127.0.0.1:1883", help=broker_help)
    c.add_argument("--out", type=Path, required=True, help="the new bundle's path")

    c = command(
        "broker-config",
        "write Mosquitto's TLS config, ACL and certificates into one folder",
        cmd_broker_config,
    )
    c.add_argument("--out", type=Path, default=None, help="folder (default: DATA/broker)")
    c.add_argument("--port", type=int, default=8883, help="TLS listener port (default: 8883)")
    c.add_argument("--host", default="0.0.0.0", help="listener address (default: 0.0.0.0)")
    c.add_argument(
        "--run-as", default=None, help="the user Mosquitto drops to (default: Mosquitto's own)"
    )
    c.add_argument(
        "--phone-port",
        type=int,
        default=None,
        help="TLS listener for phones, with passwords (default: --port + 1)",
    )

    c = command(
        "phone",
        "enrol a volunteer's phone (OwnTracks or Traccar Client), or issue it new "
        "credentials; prints the QR code to scan",
        cmd_phone,
    )
    c.add_argument("volunteer", help="the volunteer's id")
    c.add_argument("--unit", required=True, help="the volunteer's unit id")
    c.add_argument("--app", required=True, choices=["owntracks", "traccar"], help="the app")
    c.add_argument("--phone-id", default=None, help="terminal id (default: ph-VOLUNTEER)")
    c.add_argument("--no-encrypt", action="store_true", help="OwnTracks: no encryption key")
    c.add_argument("--mqtt-host", default=None, help="OwnTracks MQTT: the broker's name")
    c.add_argument(
        "--mqtt-port", type=int, default=8884, help="OwnTracks MQTT: phone port (default 8884)"
    )
    c.add_argument("--http-url", default=None, help="OwnTracks HTTP mode: the URL it posts to")
    c.add_argument("--server-url", default=None, help="Traccar: the OsmAnd endpoint's URL")
    c.add_argument(
        "--out", type=Path, default=None, help="also write the settings (.otrc for OwnTracks)"
    )

    c = command("phone-revoke", "revoke a phone: its password and broker topics", cmd_phone_revoke)
    c.add_argument("phone_id", help="the phone's id (ph-VOLUNTEER unless chosen)")

    c = command("token", "mint a sign-in token for a person", cmd_token)
    c.add_argument("--name", required=True, help="who the token is for")
    c.add_argument("--role", required=True, choices=["volunteer", "officer", "inspector", "admin"])
    c.add_argument(
        "--scope",
        default=None,
        help="unit id whose subtree the person may see (default: the whole organisation)",
    )
