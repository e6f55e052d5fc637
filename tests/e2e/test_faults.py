"""Fault injection end to end: kill -9 the agent, the server and the broker, cut the link for an
hour, fill the disk budget — and count that every fix arrives exactly once.

The invariant each test asserts after its faults and a final drain (the agent's outbox holds no
sealed frame and no backlog row), per device (``processes.assert_invariant``):

- fixes stored from Position/PositionBatch frames == fixes_accepted - fixes_thinned (the
  agent's durable counters);
- no fix stored twice (the simulated walker gives every fix its own time);
- the device's frame seqs on the server are exactly 1..next_seq-1;
- snapshots stored == accepted - evicted, and the FIXES_THINNED / SNAPSHOTS_EVICTED events the
  server stored add up to the agent's eviction counters.

Real Mosquitto throughout; the agent and server run as ``yijing`` subprocesses where they are
the ones killed, in-process where the test needs to look inside (link reconnect counts).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.agent import Agent
from agent.policy import ReportingPolicy
from agent.sim_gps import SimulatedWalker
from protocol import Fix, Snapshot, SnapshotTrigger, decode
from provisioning import Enrolment, load_enrolment
from provisioning.identity import write_enrolment
from tests.e2e.processes import (
    POSITION,
    POSITION_BATCH,
    Processes,
    agent_state,
    assert_invariant,
    read_only,
    server_view,
)
from tests.helpers import enrol, wait_until
from yijing.broker import LocalBroker, start_mosquitto

pytestmark = pytest.mark.e2e

POST = (22.5431, 114.0579)
SIMULATE = f"{POST[0]},{POST[1]}"
#: A fix every 20 ms, a heartbeat a second, resend after 2 s: lots of writes and traffic.
FAST_CLI = [
    "--interval-moving", "0.02",
    "--interval-still", "0.02",
    "--min-distance", "0",
    "--heartbeat", "1",
    "--ack-timeout", "2",
]  # fmt: skip
FAST_POLICY = ReportingPolicy(
    interval_moving_s=0.02,
    interval_still_s=0.02,
    min_distance_m=0,
    heartbeat_s=1,
    ack_timeout_s=2,
)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    group = Processes(tmp_path)
    try:
        yield group
    finally:
        group.close()


class Switchable:
    """A position source the test can turn off, so that a drain ends with nothing new."""

    def __init__(self, inner: SimulatedWalker) -> None:
        self.inner = inner
        self.on = True

    def read(self, now_ms: int) -> Fix | None:
        return self.inner.read(now_ms) if self.on else None


class SimClock:
    """Wall-clock time, or a fixed simulated time while the test sets one."""

    def __init__(self) -> None:
        self.fixed: float | None = None

    def __call__(self) -> float:
        return time.time() if self.fixed is None else self.fixed


class AgentFleet:
    """In-process agents, stopped (outboxes closed) however the test ends."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.agents: list[Agent] = []
        self.sources: list[Switchable] = []

    def add(self, enrolment: Enrolment, *, seed: int, policy: ReportingPolicy) -> Agent:
        source = Switchable(SimulatedWalker(*POST, seed=seed))
        agent = Agent(
            enrolment, self.root / enrolment.identity.device_id, source=source, policy=policy
        )
        self.agents.append(agent)
        self.sources.append(source)
        return agent

    def outboxes(self) -> list[Path]:
        return [a.outbox.path for a in self.agents]

    def quiesce(self) -> None:
        """No new fixes and (practically) no more heartbeats: what is left can drain."""
        for source in self.sources:
            source.on = False
        for agent in self.agents:
            agent.policy = dataclasses.replace(agent.policy, heartbeat_s=3600)

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[AgentFleet]:
    f = AgentFleet(tmp_path / "agents")
    try:
        yield f
    finally:
        f.stop()


def wait_drained(outboxes: list[Path], timeout: float, *, settle: float = 1.5) -> None:
    """Until every outbox is empty and stays so (same next_seq) for ``settle`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        states = [agent_state(p) for p in outboxes]
        if all(s.drained for s in states):
            time.sleep(settle)
            again = [agent_state(p) for p in outboxes]
            if all(
                a.drained and a["next_seq"] == s["next_seq"]
                for a, s in zip(again, states, strict=True)
            ):
                return
            continue
        if time.monotonic() > deadline:
            left = {str(p): (s.items, s.backlog) for p, s in zip(outboxes, states, strict=True)}
            raise AssertionError(f"not drained in {timeout}s (frames, backlog): {left}")
        time.sleep(0.05)


def frame_count(server_db: Path) -> int:
    with read_only(server_db) as db:
        return int(db.execute("SELECT count(*) FROM frames").fetchone()[0])


# --- 1. kill -9 the agent ------------------------------------------------------------------------


@pytest.mark.slow
def test_agent_killed_50_times_mid_write_loses_and_duplicates_nothing(
    tmp_path: Path, broker: LocalBroker, server_factory, processes: Processes
) -> None:
    kills, seed = 50, 20_251_101
    rng = random.Random(seed)
    st = server_factory(broker)
    device = "ft-kill9"
    bundle = tmp_path / f"{device}.json"
    write_enrolment(bundle, enrol(st.server, device, broker))
    data = tmp_path / "agent"
    outbox_db = data / "outbox.db"
    server_db = st.server.store.path
    command = ["agent", "--enrolment", str(bundle), "--data", str(data), "--simulate", SIMULATE]

    accepted = [0]
    in_flight_at_kill = backlog_at_kill = 0
    for i in range(kills):
        proc = processes.start("agent", *command, *FAST_CLI)
        proc.wait_for_output(f"agent {device}:", 20)
        time.sleep(rng.uniform(0.2, 1.2))
        proc.kill()
        state = agent_state(outbox_db)
        assert state["fixes_accepted"] > accepted[-1], (
            f"run {i} (seed {seed}) recorded nothing: {state.meta}"
        )
        accepted.append(state["fixes_accepted"])
        # The budget's running byte count is transactional: right whenever the process dies.
        if "bytes_used" in state.meta:
            assert state["bytes_used"] == state.bytes_held, (i, state.meta, state.bytes_held)
        in_flight_at_kill += state.items > 0
        backlog_at_kill += state.backlog > 0
    # The kills hit an agent with frames on the wire (sealed, not yet acknowledged).
    assert in_flight_at_kill > 0, "no kill found a frame in flight"

    # Once more, to drain: same terminal, same outbox, but it records only its first fix and
    # says hello once, so the drained state holds still while it is checked.
    quiet = ["--interval-moving", "3600", "--interval-still", "3600", "--heartbeat", "3600"]
    final = processes.start("agent", *command, *FAST_CLI, *quiet)
    final.wait_for_output(f"agent {device}:", 20)
    wait_drained([outbox_db], 60)
    agent, view = assert_invariant(outbox_db, server_db, device)
    assert final.terminate() == 0, final.describe()
    assert agent["fixes_accepted"] > accepted[-1]
    # After the orderly stop (which may sign one last checkpoint) the seqs stay gapless.
    after = server_view(server_db, device)
    assert after.seqs == list(range(1, len(after.seqs) + 1))
    assert after.fixes == view.fixes
    print(
        f"\nagent kill -9 x{kills}: {agent['fixes_accepted']} fixes accepted, "
        f"{len(view.seqs)} frames stored; kills with frames in flight {in_flight_at_kill}, "
        f"with backlog {backlog_at_kill}"
    )


# --- 2. kill -9 the server ---------------------------------------------------------------------


@pytest.mark.slow
def test_server_killed_mid_ingest_loses_and_duplicates_nothing(
    tmp_path: Path, broker: LocalBroker, processes: Processes, fleet: AgentFleet
) -> None:
    kills, seed = 5, 7_031
    rng = random.Random(seed)
    server_dir = tmp_path / "server"
    server_db = server_dir / "yijing.db"
    broker_url = f"mqtt://{broker.host}:{broker.port}"
    devices = ["ft-srv-1", "ft-srv-2"]
    # Provisioned before the server first starts, as an installer would.
    for device in devices:
        bundle = tmp_path / f"{device}.json"
        processes.run(
            "provision", "device", device, "--broker", broker_url,
            "--data", str(server_dir), "--out", str(bundle),
        )  # fmt: skip
        fleet.add(load_enrolment(bundle), seed=len(fleet.agents), policy=FAST_POLICY)
    server_cmd = ["--log-level", "INFO", "server", "--data", str(server_dir)]
    server_cmd += ["--broker", broker_url, "--port", "0"]

    for agent in fleet.agents:
        agent.start()
    stored_per_life: list[int] = []
    for _ in range(kills):
        server = processes.start("server", *server_cmd)
        server.wait_for_output("yijing server on", 30)
        before = frame_count(server_db)
        # Kill it mid-ingest: once it is storing (a loaded machine may take a moment to get
        # there), at a random moment after.
        wait_until(
            lambda n=before: frame_count(server_db) > n, 20, "the server to store frames"
        )
        time.sleep(rng.uniform(0.2, 1.2))
        stored_per_life.append(frame_count(server_db) - before)
        server.kill()
    # Every life stored frames right up to its kill: the kills came mid-ingest.
    assert all(n > 0 for n in stored_per_life), stored_per_life

    server = processes.start("server", *server_cmd)
    server.wait_for_output("yijing server on", 30)
    fleet.quiesce()
    wait_drained(fleet.outboxes(), 60)
    for device, outbox_db in zip(devices, fleet.outboxes(), strict=True):
        agent, view = assert_invariant(outbox_db, server_db, device)
        assert agent["fixes_accepted"] > 100, agent.meta
        print(f"\n{device}: {view.fixes} fixes in {len(view.seqs)} frames")
    print(f"server kill -9 x{kills}: frames stored per life {stored_per_life}")
    assert server.terminate() == 0, server.describe()


# --- 3. kill -9 the broker ---------------------------------------------------------------------


@pytest.mark.slow
def test_broker_killed_and_restarted_agents_and_server_reconnect_by_themselves(
    tmp_path: Path,
    broker: LocalBroker,
    mosquitto_path: str,
    server_factory,
    fleet: AgentFleet,
) -> None:
    st = server_factory(broker)
    server = st.server
    devices = ["ft-brk-1", "ft-brk-2"]
    for i, device in enumerate(devices):
        fleet.add(enrol(server, device, broker), seed=i, policy=FAST_POLICY)
    for agent in fleet.agents:
        agent.start()
    server_db = server.store.path
    wait_until(lambda: all(a.link.connected for a in fleet.agents), 10, "agents connected")
    time.sleep(1.5)
    assert server.link is not None
    connects = [a.link.connects for a in fleet.agents], server.link.connects

    broker.kill()
    stored_at_kill = frame_count(server_db)
    outage_start = [agent_state(p)["fixes_accepted"] for p in fleet.outboxes()]
    time.sleep(3)
    during = [agent_state(p) for p in fleet.outboxes()]
    # Offline, the agents kept recording: into the backlog, waiting for the link.
    for state, accepted in zip(during, outage_start, strict=True):
        assert state["fixes_accepted"] >= accepted + 50, state.meta
        assert state.backlog >= 50, state
    restarted = start_mosquitto(tmp_path / "broker", port=broker.port, executable=mosquitto_path)
    try:
        wait_until(
            lambda: (
                all(a.link.connects > c for a, c in zip(fleet.agents, connects[0], strict=True))
                and server.link is not None
                and server.link.connects > connects[1]
            ),
            45,
            "agents and server reconnected",
        )
        time.sleep(1)
        fleet.quiesce()
        wait_drained(fleet.outboxes(), 60)
        assert frame_count(server_db) > stored_at_kill
        for device, outbox_db in zip(devices, fleet.outboxes(), strict=True):
            agent, view = assert_invariant(outbox_db, server_db, device)
            print(f"\n{device}: {view.fixes} fixes in {len(view.seqs)} frames")
        print(
            f"reconnects: agents {[a.link.connects for a in fleet.agents]}, "
            f"server {server.link.connects}"
        )
    finally:
        fleet.stop()
        fleet.agents.clear()
        restarted.stop()


# --- 4. link cut for an hour ---------------------------------------------------------------------


@pytest.mark.slow
def test_after_an_hour_offline_the_newest_fix_goes_first_then_the_hour_in_order(
    tmp_path: Path, broker: LocalBroker, server_factory, fleet: AgentFleet
) -> None:
    st = server_factory(broker)
    server_db = st.server.store.path
    device = "ft-hour"
    clock = SimClock()
    source = Switchable(SimulatedWalker(*POST, seed=4))
    policy = ReportingPolicy(
        interval_moving_s=1, interval_still_s=1, min_distance_m=0, heartbeat_s=3600, ack_timeout_s=2
    )
    agent = Agent(
        enrol(st.server, device, broker), tmp_path / device, source=source, policy=policy,
        clock=clock,
    )  # fmt: skip
    fleet.agents.append(agent)
    # The terminal is offline (its link not up) for an hour and samples at 1 Hz, through the
    # same path as the running loop: source -> reporting policy -> outbox backlog.
    hour_start = int(time.time()) - 3600 - 5
    for k in range(3600):
        clock.fixed = float(hour_start + k)
        agent.sample()
    clock.fixed = None
    source.on = False
    with read_only(agent.outbox.path) as db:
        times = [int(t) for (t,) in db.execute("SELECT time_ms FROM backlog ORDER BY time_ms")]
    assert len(times) == 3600 and len(set(times)) == 3600
    newest = times[-1]

    agent.start()
    wait_until(lambda: agent.link.connected, 10, "agent connected")
    connected = time.monotonic()

    def newest_stored() -> bool:
        with read_only(server_db) as db:
            row = db.execute(
                "SELECT 1 FROM positions WHERE device_id=? AND time_ms=?", (device, newest)
            ).fetchone()
        return row is not None

    while not newest_stored():
        assert time.monotonic() - connected < 10, "newest fix not stored within 10 s"
        time.sleep(0.005)
    newest_after_s = time.monotonic() - connected
    assert newest_after_s <= 2.0, f"newest fix stored {newest_after_s:.2f}s after connect"

    wait_drained([agent.outbox.path], 60, settle=0.5)
    state, view = assert_invariant(agent.outbox.path, server_db, device)
    assert state["fixes_accepted"] == 3600 and view.fixes == 3600

    with read_only(server_db) as db:
        frames = db.execute(
            "SELECT seq, type, received_ms, payload FROM frames WHERE device_id=? AND type IN "
            "(?,?) ORDER BY seq",
            (device, POSITION, POSITION_BATCH),
        ).fetchall()
    messages = [
        (seq, kind, received, decode(bytes(payload)).envelope.message)
        for seq, kind, received, payload in frames
    ]
    _, first_type, first_received, first = messages[0]
    # The first position frame is the live Position carrying the newest fix, and it was
    # received no later than any of the older fixes.
    assert first_type == POSITION and first.fix.time_ms == newest
    assert [m for m in messages if m[1] == POSITION] == [messages[0]]
    batches = messages[1:]
    assert all(received >= first_received for _, _, received, _ in batches)
    # Then the rest of the hour, oldest first, at most 100 fixes a batch.
    assert all(len(m.fixes) <= 100 for *_, m in batches)
    backfill = [f.time_ms for *_, m in batches for f in m.fixes]
    assert backfill == times[:-1]
    assert len(batches) == 36
    print(f"\nnewest fix of the hour stored {newest_after_s * 1000:.0f} ms after connect")


# --- 5. disk budget filled ---------------------------------------------------------------------


def jpeg_snapshot(rng: random.Random, captured_ms: int) -> Snapshot:
    body = b"\xff\xd8\xff\xe0" + rng.randbytes(rng.randint(1500, 2500)) + b"\xff\xd9"
    return Snapshot(
        captured_ms=captured_ms,
        trigger=SnapshotTrigger.PERIODIC,
        width=64,
        height=48,
        sha256=hashlib.sha256(body).digest(),
        jpeg=body,
    )


@pytest.mark.slow
def test_disk_budget_evicts_snapshots_then_thins_old_fixes_and_reports_it(
    tmp_path: Path, broker: LocalBroker, server_factory, fleet: AgentFleet
) -> None:
    st = server_factory(broker)
    server_db = st.server.store.path
    device = "ft-budget"
    rng = random.Random(55)
    policy = dataclasses.replace(FAST_POLICY, disk_budget_mb=0.05, heartbeat_s=3600)
    agent = fleet.add(enrol(st.server, device, broker), seed=5, policy=policy)
    fleet.sources[-1].on = False
    walker = SimulatedWalker(*POST, seed=5)
    outbox = agent.outbox
    assert outbox.budget_bytes == int(0.05 * 1024 * 1024)

    # Six hours offline: a fix every 5 s, a snapshot every 30 min and one at the very end.
    step_s, hours = 5, 6
    start_ms = (int(time.time()) - hours * 3600) * 1000
    fix_times: list[int] = []
    snap_times: list[int] = []
    prev = outbox.counters()
    first_thinning: int | None = None
    snapshot_evictions_after_thinning = 0
    with read_only(outbox.path) as db:
        for k in range(hours * 3600 // step_s):
            t = start_ms + k * step_s * 1000
            if k % (1800 // step_s) == 0 or k == hours * 3600 // step_s - 1:
                outbox.record_snapshot(jpeg_snapshot(rng, t))
                snap_times.append(t)
            outbox.record_fix(walker.read(t))
            fix_times.append(t)
            now = outbox.counters()
            if now["fixes_thinned"] > prev["fixes_thinned"]:
                # Fixes are thinned only once no snapshot is left to give up.
                assert now["backlog_snapshots"] == 0, (k, now)
                first_thinning = k if first_thinning is None else first_thinning
            if now["snapshots_evicted"] > prev["snapshots_evicted"] and first_thinning is not None:
                snapshot_evictions_after_thinning += 1
            # Snapshots go oldest first: those left are the newest ones recorded.
            left = [int(r[0]) for r in db.execute(
                "SELECT time_ms FROM backlog WHERE kind=2 ORDER BY time_ms"
            )]  # fmt: skip
            assert left == snap_times[len(snap_times) - len(left) :], k
            # The last ten minutes of fixes are never thinned.
            recent = [int(r[0]) for r in db.execute(
                "SELECT time_ms FROM backlog WHERE kind=1 AND time_ms>=? ORDER BY time_ms",
                (t - 600_000,),
            )]  # fmt: skip
            assert recent == [x for x in fix_times if x >= t - 600_000], k
            assert outbox.bytes_used() <= outbox.budget_bytes + 512, k
            prev = now
        # Thinning kept the track, coarser: every minute still has a fix.
        minutes = {
            int(r[0]) // 60_000 for r in db.execute("SELECT time_ms FROM backlog WHERE kind=1")
        }
        assert minutes == {x // 60_000 for x in fix_times}

    counters = outbox.counters()
    assert counters["fixes_accepted"] == len(fix_times)
    assert counters["snapshots_accepted"] == len(snap_times)
    assert 0 < counters["snapshots_evicted"] < len(snap_times)
    assert counters["fixes_thinned"] > 0 and first_thinning is not None
    assert snapshot_evictions_after_thinning > 0, "no snapshot recorded after thinning was evicted"
    assert counters["backlog_fixes"] + counters["fixes_thinned"] == len(fix_times)
    assert counters["fixes_thinned_reported"] == counters["fixes_thinned"]
    assert counters["snapshots_evicted_reported"] == counters["snapshots_evicted"]

    agent.start()
    wait_drained([outbox.path], 60, settle=0.5)
    _, view = assert_invariant(outbox.path, server_db, device)
    assert view.snapshots == len(snap_times) - counters["snapshots_evicted"] > 0
    assert view.fixes_thinned_reported == counters["fixes_thinned"]
    print(
        f"\nbudget: {len(fix_times)} fixes, {counters['fixes_thinned']} thinned; "
        f"{len(snap_times)} snapshots, {counters['snapshots_evicted']} evicted"
    )


class SimulatedCrash(BaseException):
    """Stands for kill -9: raised where the process would die, nothing after it runs."""


def test_agent_dying_between_eviction_and_its_report_still_reports_it(
    tmp_path: Path, broker: LocalBroker, server_factory, fleet: AgentFleet, monkeypatch
) -> None:
    """kill -9 after the eviction committed but before its Event was sealed: after the restart
    the count must still reach the server, even if the budget never overflows again."""
    from agent.outbox import Outbox

    st = server_factory(broker)
    server_db = st.server.store.path
    device = "ft-evict-crash"
    enrolment = enrol(st.server, device, broker)
    data = tmp_path / device
    policy = dataclasses.replace(FAST_POLICY, disk_budget_mb=0.01, heartbeat_s=3600)
    source = Switchable(SimulatedWalker(*POST, seed=6))
    source.on = False
    crashed = Agent(enrolment, data, source=source, policy=policy)

    def die(self: Outbox) -> None:
        raise SimulatedCrash

    walker = SimulatedWalker(*POST, seed=6)
    start_ms = (int(time.time()) - 3 * 3600) * 1000
    with monkeypatch.context() as patch:
        patch.setattr(Outbox, "_report_evictions", die)
        with pytest.raises(SimulatedCrash):
            for k in range(3 * 3600 // 5):
                crashed.outbox.record_fix(walker.read(start_ms + k * 5000))
    crashed.outbox.close()  # the process is gone; its link never came up
    state = agent_state(data / "outbox.db")
    assert state["fixes_thinned"] > 0 and state["fixes_thinned_reported"] == 0, state.meta

    # Restart: nothing more is recorded, so the budget never overflows again.
    agent = Agent(enrolment, data, source=source, policy=policy)
    fleet.agents.append(agent)
    agent.start()
    wait_drained([data / "outbox.db"], 30, settle=0.5)
    assert_invariant(data / "outbox.db", server_db, device)
