"""The store on both back ends (SQLite, PostgreSQL): schema, deduplication, positions,
tracks, latest fixes, keys, day partitions and retention.

Each PostgreSQL case gets a database of its own (``pg_support.fresh_database``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import Checkpoint, Fix, FixSource, Position, PositionBatch, Presence, PresenceKind
from server import pg_schema
from server.errors import StoreError
from server.pg_store import PgStore
from server.sqlite_store import MIGRATIONS, SqliteStore
from server.store import Device, DeviceKey, Outcome, Store

from .pg_support import fresh_database
from .support import T0, Terminal, device_key, device_record, fix

BACKENDS = ["sqlite", "postgresql"]
DAY_MS = 86_400_000


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def location(backend: str, tmp_path: Path) -> Iterator[str]:
    """Where the store lives: a file path, or the URL of a database made for this test."""
    if backend == "sqlite":
        yield str(tmp_path / "data" / "yijing.db")
    else:
        with fresh_database() as url:
            yield url


@pytest.fixture
def open_store(backend: str, location: str) -> Iterator[Callable[[], Store]]:
    opened: list[Store] = []

    def make() -> Store:
        store: Store = SqliteStore(Path(location)) if backend == "sqlite" else PgStore(location)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()  # closing twice is harmless


@pytest.fixture
def store(open_store) -> Store:
    return open_store()


def schema_version(store) -> int:
    if isinstance(store, SqliteStore):
        return int(store._conn.execute("PRAGMA user_version").fetchone()[0])
    with psycopg.connect(store.url) as conn:
        return pg_schema.schema_version(conn)


@pytest.fixture
def alice() -> Terminal:
    return Terminal("alice")


@pytest.fixture
def bob() -> Terminal:
    return Terminal("bob")


def pos(t_ms: int, lat: float = 22.5431) -> Position:
    return Position(fix=fix(t_ms, lat=lat))


# --- schema -----------------------------------------------------------------------------------


def test_reopen_keeps_data_and_does_not_migrate_again(open_store, alice: Terminal) -> None:
    store = open_store()
    store.add_device(device_record(alice.identity), device_key(alice.identity))
    assert store.store_frames([alice.incoming(pos(T0), 1)]) == [Outcome.NEW]
    store.close()

    again = open_store()  # would fail ("table devices already exists") if it migrated again
    assert schema_version(again) == len(MIGRATIONS) == len(pg_schema.MIGRATIONS)
    assert [d.device_id for d in again.devices()] == ["alice"]
    assert again.frame_count() == 1
    assert again.fix_count() == 1


def test_a_database_from_newer_code_is_refused(backend: str, location: str) -> None:
    if backend == "sqlite":
        SqliteStore(Path(location)).close()
        conn = sqlite3.connect(location)
        conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
        conn.close()
        with pytest.raises(StoreError, match="newer"):
            SqliteStore(Path(location))
        return
    PgStore(location).close()
    with psycopg.connect(location) as pg:
        pg.execute("INSERT INTO schema_version(version, name) VALUES (%s, 'future')",
                   (len(pg_schema.MIGRATIONS) + 1,))  # fmt: skip
    with pytest.raises(StoreError, match="newer"):
        PgStore(location)


def test_an_unreachable_database_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot open store"):
        PgStore("postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2")


# --- frames: deduplication ---------------------------------------------------------------------


def test_new_duplicate_conflict(store: Store, alice: Terminal) -> None:
    first = alice.incoming(pos(T0), 1)
    same = dataclasses.replace(first, received_ms=first.received_ms + 60_000)  # a resend
    other = alice.incoming(pos(T0 + 5000, lat=22.6), 1)  # same seq, different bytes
    assert other.payload != first.payload

    assert store.store_frames([first]) == [Outcome.NEW]
    assert store.store_frames([same]) == [Outcome.DUPLICATE]
    assert store.store_frames([other]) == [Outcome.CONFLICT]
    # The first copy is kept whole; neither the duplicate nor the conflict adds positions.
    assert store.frame("alice", 1) == first.payload
    assert store.frame_count("alice") == 1
    assert store.fix_count("alice") == 1
    (point,) = store.track("alice")
    assert point.fix.time_ms == T0 and point.received_ms == first.received_ms


def test_outcomes_within_one_batch_are_in_order(store: Store, alice: Terminal) -> None:
    f1, f2 = alice.incoming(pos(T0), 1), alice.incoming(pos(T0 + 1000), 2)
    conflicting = alice.incoming(pos(T0 + 9000), 2)
    outcomes = store.store_frames([f1, f2, f1, conflicting])
    assert outcomes == [Outcome.NEW, Outcome.NEW, Outcome.DUPLICATE, Outcome.CONFLICT]
    assert store.frame_count() == 2


def test_same_seq_from_two_devices_is_two_frames(
    store: Store, alice: Terminal, bob: Terminal
) -> None:
    outcomes = store.store_frames([alice.incoming(pos(T0), 1), bob.incoming(pos(T0), 1)])
    assert outcomes == [Outcome.NEW, Outcome.NEW]
    assert store.frame_count() == 2
    assert store.frame_count("alice") == store.frame_count("bob") == 1


def test_frame_returns_exact_bytes_or_none(store: Store, alice: Terminal) -> None:
    incoming = alice.incoming(pos(T0), 7)
    store.store_frames([incoming])
    assert store.frame("alice", 7) == incoming.payload
    assert isinstance(store.frame("alice", 7), bytes)
    assert store.frame("alice", 8) is None
    assert store.frame("bob", 7) is None


def test_empty_batch(store: Store) -> None:
    assert store.store_frames([]) == []
    assert store.frame_count() == 0


# --- positions ----------------------------------------------------------------------------------


def test_positions_unpacked_from_position_and_batch(store: Store, alice: Terminal) -> None:
    batch = PositionBatch(fixes=(fix(T0 + 1000), fix(T0 + 2000), fix(T0 + 3000)))
    store.store_frames(
        [
            alice.incoming(pos(T0), 1),
            alice.incoming(batch, 2),
            alice.incoming(Presence(kind=PresenceKind.HEARTBEAT), 3),  # no fix: no position
        ]
    )
    assert store.frame_count("alice") == 3
    assert store.fix_count("alice") == 4
    track = store.track("alice")
    assert [(p.seq, p.fix) for p in track] == [(1, fix(T0))] + [(2, f) for f in batch.fixes]


def test_fix_fields_round_trip_through_the_table(store: Store, alice: Terminal) -> None:
    full = Fix(
        time_ms=T0,
        lat=-33.8688197,
        lon=151.2092955,
        accuracy_m=3.4,
        speed_mps=12.34,
        course_deg=359.9,
        alt_m=-12.3,
        satellites=11,
        source=FixSource.NETWORK,
    )
    sparse = Fix(time_ms=T0 + 1, lat=0.0, lon=0.0)
    store.store_frames([alice.incoming(PositionBatch(fixes=(full, sparse)), 1)])
    assert [p.fix for p in store.track("alice")] == [full, sparse]


def test_track_is_in_fix_time_order_not_arrival_order(store: Store, alice: Terminal) -> None:
    store.store_frames([alice.incoming(pos(T0 + 30_000), 1)])
    store.store_frames([alice.incoming(pos(T0 + 40_000), 2)])
    # Backfill from time offline arrives later, with older fixes.
    backfill = PositionBatch(fixes=(fix(T0 + 10_000), fix(T0 + 20_000)))
    store.store_frames([alice.incoming(backfill, 3)])
    track = store.track("alice")
    assert [p.fix.time_ms - T0 for p in track] == [10_000, 20_000, 30_000, 40_000]
    assert [p.seq for p in track] == [3, 3, 1, 2]


def test_track_window_is_inclusive_and_limit_takes_the_oldest(
    store: Store, alice: Terminal, bob: Terminal
) -> None:
    store.store_frames([alice.incoming(pos(T0 + k * 1000), k + 1) for k in range(10)])
    store.store_frames([bob.incoming(pos(T0 + 5000), 1)])

    def times(points) -> list[int]:
        return [(p.fix.time_ms - T0) // 1000 for p in points]

    assert times(store.track("alice")) == list(range(10))
    assert times(store.track("alice", since_ms=T0 + 3000)) == list(range(3, 10))
    assert times(store.track("alice", until_ms=T0 + 3000)) == [0, 1, 2, 3]
    assert times(store.track("alice", since_ms=T0 + 3000, until_ms=T0 + 5000)) == [3, 4, 5]
    assert times(store.track("alice", limit=4)) == [0, 1, 2, 3]
    assert times(store.track("alice", since_ms=T0 + 8000, limit=5)) == [8, 9]
    assert store.track("alice", since_ms=T0 + 20_000) == []
    assert times(store.track("bob")) == [5]
    assert store.track("nobody") == []


def test_latest_fix_is_the_newest_by_fix_time(store: Store, alice: Terminal, bob: Terminal) -> None:
    store.store_frames([alice.incoming(pos(T0 + 50_000), 1), bob.incoming(pos(T0 + 1000), 1)])
    # Late backfill (higher seq, later arrival, older fixes) must not win.
    backfill = PositionBatch(fixes=(fix(T0 + 10_000), fix(T0 + 20_000)))
    store.store_frames([alice.incoming(backfill, 2, received_ms=T0 + 99_000)])
    latest = store.latest_fixes()
    assert set(latest) == {"alice", "bob"}
    assert latest["alice"].fix.time_ms == T0 + 50_000
    assert latest["alice"].seq == 1
    assert latest["bob"].fix.time_ms == T0 + 1000

    store.store_frames([alice.incoming(pos(T0 + 60_000), 3)])
    assert store.latest_fixes()["alice"].seq == 3


def test_latest_fix_within_a_batch_and_on_ties(store: Store, alice: Terminal) -> None:
    batch = PositionBatch(fixes=(fix(T0 + 3000, lat=1.0), fix(T0 + 1000, lat=2.0)))
    store.store_frames([alice.incoming(batch, 1)])
    assert store.latest_fixes()["alice"].fix.lat == 1.0
    store.store_frames([alice.incoming(pos(T0 + 3000, lat=3.0), 2)])  # same time, later seq
    assert store.latest_fixes()["alice"].fix.lat == 3.0


def test_latest_fixes_leaves_out_devices_without_fixes(store: Store, alice: Terminal) -> None:
    store.add_device(device_record(alice.identity), device_key(alice.identity))
    store.store_frames([alice.incoming(Presence(kind=PresenceKind.HEARTBEAT), 1)])
    assert store.latest_fixes() == {}


# --- checkpoints ------------------------------------------------------------------------------


def test_checkpoint_covering(store: Store, alice: Terminal, bob: Terminal) -> None:
    frames = [alice.incoming(pos(T0 + k), k) for k in range(1, 5)]
    digests = b"".join(f.digest for f in frames)
    ckpt = alice.endpoint.checkpoint(first_seq=1, digests=digests)
    assert isinstance(ckpt, Checkpoint)
    ckpt_frame = dataclasses.replace(alice.incoming(ckpt, 5), checkpoint_range=(1, 4))
    store.store_frames([*frames, ckpt_frame])

    for seq in range(1, 5):
        assert store.checkpoint_covering("alice", seq) == ckpt_frame.payload
    assert store.checkpoint_covering("alice", 5) is None
    assert store.checkpoint_covering("alice", 0) is None
    assert store.checkpoint_covering("bob", 2) is None


def test_checkpoint_covering_without_the_frames_it_lists(store: Store, alice: Terminal) -> None:
    # The checkpoint is self-contained: it is found even if frame 2 never arrived.
    frames = [alice.incoming(pos(T0 + k), k) for k in range(1, 4)]
    ckpt = alice.endpoint.checkpoint(first_seq=1, digests=b"".join(f.digest for f in frames))
    ckpt_frame = dataclasses.replace(alice.incoming(ckpt, 4), checkpoint_range=(1, 3))
    store.store_frames([frames[0], ckpt_frame])
    assert store.checkpoint_covering("alice", 2) == ckpt_frame.payload


# --- counts -----------------------------------------------------------------------------------


def test_frame_and_fix_counts(store: Store, alice: Terminal, bob: Terminal) -> None:
    assert store.frame_count() == store.fix_count() == 0
    store.store_frames(
        [
            alice.incoming(PositionBatch(fixes=(fix(T0), fix(T0 + 1))), 1),
            alice.incoming(Presence(kind=PresenceKind.HEARTBEAT), 2),
            bob.incoming(pos(T0), 1),
        ]
    )
    assert store.frame_count() == 3
    assert store.frame_count("alice") == 2
    assert store.frame_count("bob") == 1
    assert store.frame_count("nobody") == 0
    assert store.fix_count() == 3
    assert store.fix_count("alice") == 2
    assert store.fix_count("bob") == 1
    assert store.fix_count("nobody") == 0


# --- devices and keys ---------------------------------------------------------------------------


def test_device_registration(store: Store) -> None:
    ident = Terminal("patrol-7").identity
    ident = dataclasses.replace(ident, units=("north", "night"))
    store.add_device(device_record(ident, "Patrol 7"), device_key(ident))
    (device,) = store.devices()
    assert device == Device("patrol-7", "Patrol 7", ("north", "night"), T0)
    assert store.key("patrol-7", 1) == device_key(ident)
    assert store.key("patrol-7", 2) is None
    assert store.key("nobody", 1) is None


def test_registering_again_updates_label_and_units_keeps_creation(store: Store) -> None:
    ident = Terminal("patrol-7").identity
    store.add_device(device_record(ident, "old"), device_key(ident))
    store.add_device(Device("patrol-7", "new", ("east",), T0 + 99), device_key(ident))
    assert store.devices() == [Device("patrol-7", "new", ("east",), T0)]
    assert len(store.keys()) == 1


def test_devices_are_listed_by_id(store: Store) -> None:
    for name in ("c-3", "a-1", "b-2"):
        ident = Terminal(name).identity
        store.add_device(device_record(ident), device_key(ident))
    assert [d.device_id for d in store.devices()] == ["a-1", "b-2", "c-3"]


def test_key_rotation_keeps_the_old_key(store: Store) -> None:
    old = Terminal("patrol-7", key_id=1).identity
    new = Terminal("patrol-7", key_id=2).identity
    store.add_device(device_record(old), device_key(old))
    store.add_key(device_key(new))
    # Frames sealed under key 1 stay verifiable after the terminal moves to key 2.
    assert store.key("patrol-7", 1) == device_key(old)
    assert store.key("patrol-7", 2) == device_key(new)
    registered = store.keys()
    assert sorted(k.key_id for k in registered) == [1, 2]
    assert store.key("patrol-7", 1).mac_key != store.key("patrol-7", 2).mac_key


def test_add_key_for_an_unknown_device_is_refused(store: Store) -> None:
    stranger = Terminal("stranger").identity
    with pytest.raises(StoreError):
        store.add_key(device_key(stranger))  # foreign key: devices must exist first
    assert store.keys() == []


def test_keys_survive_reopen(open_store) -> None:
    store = open_store()
    ident = Terminal("patrol-7").identity
    store.add_device(device_record(ident), device_key(ident))
    store.close()
    assert open_store().keys() == [device_key(ident)]


def test_device_key_types(store: Store) -> None:
    ident = Terminal("patrol-7").identity
    store.add_device(device_record(ident), device_key(ident))
    key = store.key("patrol-7", 1)
    assert isinstance(key, DeviceKey)
    assert isinstance(key.mac_key, bytes) and len(key.mac_key) == 32
    assert isinstance(key.public_key, bytes) and len(key.public_key) == 32


def test_frames_received_by_type_and_time(store: Store, alice: Terminal, bob: Terminal) -> None:
    """What dispatch and field reports replay after a crash: frames of some types, in the
    order they were received, from a time on."""
    heartbeat = Presence(kind=PresenceKind.HEARTBEAT)
    store.add_device(device_record(alice.identity), device_key(alice.identity))
    store.add_device(device_record(bob.identity), device_key(bob.identity))
    frames = [
        alice.incoming(pos(T0), 1, received_ms=T0 + 100),
        bob.incoming(heartbeat, 1, received_ms=T0 + 200),
        alice.incoming(heartbeat, 2, received_ms=T0 + 300),
        bob.incoming(pos(T0 + 1000), 2, received_ms=T0 + 50),
    ]
    store.store_frames(frames)
    got = store.frames_received([Presence.TYPE], T0)
    assert [(d, s, r) for d, s, r, _ in got] == [("bob", 1, T0 + 200), ("alice", 2, T0 + 300)]
    assert got[1][3] == frames[2].payload
    assert store.frames_received([Presence.TYPE], T0 + 250)[0][:2] == ("alice", 2)
    assert [f[:2] for f in store.frames_received([Presence.TYPE, Position.TYPE], 0)] == [
        ("bob", 2),
        ("alice", 1),
        ("bob", 1),
        ("alice", 2),
    ]
    assert store.frames_received([], 0) == []


# --- day partitions and retention ---------------------------------------------------------------

DAY0 = T0 // DAY_MS * DAY_MS  # midnight UTC before T0


def iso_day(day_ms: int) -> str:
    """``YYYY-MM-DD`` of the UTC day holding ``day_ms``."""
    return dt.datetime.fromtimestamp(day_ms / 1000, dt.UTC).date().isoformat()


def table_of(day_ms: int) -> str:
    return "positions_" + iso_day(day_ms).replace("-", "")


def day_tables(store: Store) -> list[str]:
    assert isinstance(store, PgStore)
    with psycopg.connect(store.url) as conn:
        return sorted(pg_schema.day_table(d) for d in pg_schema.existing_days(conn))


def three_days(store: Store, alice: Terminal) -> None:
    store.store_frames(
        [alice.incoming(pos(DAY0 + k * DAY_MS + 3_600_000 * (k + 1)), k + 1) for k in range(3)]
    )


def test_retention_forgets_the_fixes_before_a_day(store: Store, alice: Terminal) -> None:
    three_days(store, alice)
    before = [p.fix.time_ms for p in store.track("alice")]
    store.drop_days_before(iso_day(DAY0))  # nothing before the first day: nothing goes
    assert [p.fix.time_ms for p in store.track("alice")] == before
    store.drop_days_before(iso_day(DAY0 + DAY_MS))
    assert [p.fix.time_ms for p in store.track("alice")] == before[1:]
    assert store.fix_count() == 2
    assert store.frame_count() == 3  # frames are the evidence: retention keeps them
    assert store.fix_array("alice", DAY0, DAY0 + 3 * DAY_MS)["time_ms"].tolist() == before[1:]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_fix_on_each_of_three_days_makes_three_partitions(store: Store, alice: Terminal) -> None:
    assert day_tables(store) == []
    three_days(store, alice)
    expected = [table_of(DAY0 + k * DAY_MS) for k in range(3)]
    assert day_tables(store) == expected
    # Another fix on a known day, and a store opened afresh, add no partition.
    store.store_frames([alice.incoming(pos(DAY0 + 60_000), 9)])
    assert day_tables(store) == expected
    assert isinstance(store, PgStore)
    with psycopg.connect(store.url) as conn:
        per_table = conn.execute(
            "SELECT tableoid::regclass::text, count(*) FROM positions GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert per_table == [(expected[0], 2), (expected[1], 1), (expected[2], 1)]

    store.drop_days_before(iso_day(DAY0 + DAY_MS))  # the oldest day goes whole
    assert day_tables(store) == expected[1:]
    assert [p.seq for p in store.track("alice")] == [2, 3]
    # The day can be filled again later (a late backfill): its partition is made anew.
    store.store_frames([alice.incoming(pos(DAY0 + 120_000), 10)])
    assert day_tables(store) == expected


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_the_default_partition_takes_times_out_of_range(store: Store, alice: Terminal) -> None:
    assert isinstance(store, PgStore)
    with psycopg.connect(store.url, autocommit=True) as conn:  # the protocol refuses 1970
        conn.execute(
            "INSERT INTO positions(device_id, seq, idx, time_ms, lat, lon, source, received_ms)"
            " VALUES ('alice', 99, 0, 1000, 0, 0, 'gnss', 1000)"
        )
    three_days(store, alice)  # new day partitions do not trip over the default's rows
    assert [r[0] for r in store.fix_rows("alice", 0, 2000)] == [1000]
    assert store.fix_count() == 4
    store.drop_days_before(iso_day(DAY0))
    assert store.fix_count() == 3


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_failed_batch_creates_no_partition(store: Store, alice: Terminal) -> None:
    bad = alice.incoming(pos(DAY0 + 5 * DAY_MS), 1)
    bad = dataclasses.replace(bad, checkpoint_range=(1, 2**70))  # too big for a bigint
    with pytest.raises(StoreError):
        store.store_frames([bad])
    assert day_tables(store) == []
    assert store.frame_count() == 0
    store.store_frames([alice.incoming(pos(DAY0 + 5 * DAY_MS), 1)])  # the store still works
    assert len(day_tables(store)) == 1


# --- two stores on one database (ingest workers) --------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_duplicate_and_conflict_across_two_store_instances(open_store, alice: Terminal) -> None:
    one, two = open_store(), open_store()
    first = alice.incoming(pos(T0), 1)
    resend = dataclasses.replace(first, received_ms=first.received_ms + 1)
    other = alice.incoming(pos(T0 + 1), 1)
    assert one.store_frames([first]) == [Outcome.NEW]
    assert two.store_frames([resend, other, alice.incoming(pos(T0 + 2), 2)]) == [
        Outcome.DUPLICATE,
        Outcome.CONFLICT,
        Outcome.NEW,
    ]
    assert one.frame("alice", 1) == first.payload
    assert one.fix_count() == two.fix_count() == 2


def test_a_conflict_against_a_stored_frame_repeated_in_a_batch(
    store: Store, alice: Terminal
) -> None:
    stored = alice.incoming(pos(T0), 1)
    store.store_frames([stored])
    other = alice.incoming(pos(T0 + 1), 1)
    # The later copies are compared with the stored frame, not with the batch's first copy.
    assert store.store_frames([other, stored, other]) == [
        Outcome.CONFLICT,
        Outcome.DUPLICATE,
        Outcome.CONFLICT,
    ]


# --- round trip ---------------------------------------------------------------------------------

_devices = itertools.count()
_coord = st.integers(-1_799_999_999, 1_800_000_000).map(lambda n: n / 10**7)
_fixes = st.builds(
    Fix,
    time_ms=st.integers(DAY0 - 3 * DAY_MS, DAY0 + 3 * DAY_MS),
    lat=st.integers(-900_000_000, 900_000_000).map(lambda n: n / 10**7),
    lon=_coord,
    accuracy_m=st.none() | st.integers(0, 1_000_000).map(lambda n: n / 10),
    speed_mps=st.none() | st.integers(0, 30_000).map(lambda n: n / 100),
    course_deg=st.none() | st.integers(0, 3599).map(lambda n: n / 10),
    alt_m=st.none() | st.integers(-10_000, 200_000).map(lambda n: n / 10),
    satellites=st.none() | st.integers(0, 255),
    source=st.sampled_from(FixSource),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.lists(_fixes, min_size=1, max_size=20), min_size=1, max_size=4))
def test_fixes_round_trip_through_the_store(store: Store, batches: list[list[Fix]]) -> None:
    terminal = Terminal(f"h-{next(_devices)}")
    frames = [
        terminal.incoming(PositionBatch(fixes=tuple(b)), n + 1) for n, b in enumerate(batches)
    ]
    assert store.store_frames(frames) == [Outcome.NEW] * len(frames)
    expected = sorted(
        ((x.time_ms, n + 1, i), x) for n, b in enumerate(batches) for i, x in enumerate(b)
    )
    track = store.track(terminal.device_id)
    assert [(p.seq, p.fix) for p in track] == [(seq, x) for (_, seq, _), x in expected]
    assert store.store_frames(frames) == [Outcome.DUPLICATE] * len(frames)
    assert store.fix_count(terminal.device_id) == len(expected)
