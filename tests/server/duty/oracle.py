"""A literal, second-by-second reading of docs/metrics.md §1–2 and §7: slow and obviously
right.

The two real computations (batch, incremental) are held to this in the property tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from server.duty.geo import Fence
from server.duty.rules import (
    ALIVE_GAP_S,
    BACKFILL_AFTER_S,
    FIX_MAX_AGE_S,
    MAX_ACCURACY_M,
    State,
)
from server.store import EvidenceRow, FixRow

#: Where a device's data count: ``[from_ms, to_ms)`` windows, or None for throughout.
Held = Sequence[tuple[int, int]] | None


def states(
    start_s: int,
    end_s: int,
    fence: Fence,
    fixes: Sequence[FixRow],
    evidence: Sequence[EvidenceRow],
) -> list[State]:
    """One device's shift."""
    return states_of(start_s, end_s, fence, {"d1": (fixes, evidence)})


def states_of(
    start_s: int,
    end_s: int,
    fence: Fence,
    devices: Mapping[str, tuple[Sequence[FixRow], Sequence[EvidenceRow]]],
    held: Mapping[str, Held] | None = None,
) -> list[State]:
    """A shift of several devices (§7): each device's rows while held, merged as one set, the
    device id breaking a tie between two devices' fixes of equal (time, seq, idx)."""

    def counts(device: str, t_ms: int) -> bool:
        windows = (held or {}).get(device)
        return windows is None or any(a <= t_ms < b for a, b in windows)

    # Flagged fixes are neither position nor evidence.
    good = [
        (f, device)
        for device, (fixes, _) in devices.items()
        for f in fixes
        if f[6] == 0 and counts(device, f[0])
    ]
    # Evidence per second: "on" wins over "off" within a second, whichever device.
    ev: dict[int, bool] = {}
    for device, (_, evidence) in devices.items():
        for sent_ms, off in evidence:
            if counts(device, sent_ms):
                s = sent_ms // 1000
                ev[s] = ev.get(s, False) or not off
    for f, _ in good:
        ev[f[0] // 1000] = True
    # The winning fix of each second: greatest (time_ms, seq, idx, device id).
    best: dict[int, tuple[FixRow, str]] = {}
    for f, device in good:
        s = f[0] // 1000
        if s not in best or (f[0], f[1], f[2], device) > (
            best[s][0][0],
            best[s][0][1],
            best[s][0][2],
            best[s][1],
        ):
            best[s] = (f, device)
    out = []
    for t in range(start_s, end_s):
        ev_s = max((s for s in ev if s <= t), default=None)
        alive = ev_s is not None and ev[ev_s] and t - ev_s < ALIVE_GAP_S
        fix_s = max((s for s in best if s <= t), default=None)
        if not alive:
            out.append(State.OFFLINE)
            continue
        if fix_s is None or t - fix_s >= FIX_MAX_AGE_S:
            out.append(State.NO_FIX)
            continue
        time_ms, _, _, lat, lon, acc, _, received_ms = best[fix_s][0]
        if acc is not None and acc > MAX_ACCURACY_M:
            out.append(State.NO_FIX)
        elif not fence.contains(lat, lon, 0.0 if acc is None else acc):
            out.append(State.OFF_POST)
        elif received_ms - time_ms > BACKFILL_AFTER_S * 1000:
            out.append(State.ON_POST_BACKFILLED)
        else:
            out.append(State.ON_POST)
    return out


def phone_only_seconds(merged: Sequence[State], signed: Sequence[State]) -> int:
    """§7, literally: the seconds on post from all the devices and not from the signed ones."""
    on = (State.ON_POST, State.ON_POST_BACKFILLED)
    return sum(1 for m, g in zip(merged, signed, strict=True) if m in on and g not in on)
