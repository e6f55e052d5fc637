"""A literal, second-by-second reading of docs/metrics.md §1–2: slow and obviously right.

The two real computations (batch, incremental) are held to this in the property tests.
"""

from __future__ import annotations

from collections.abc import Sequence

from server.duty.geo import Fence
from server.duty.rules import (
    ALIVE_GAP_S,
    BACKFILL_AFTER_S,
    FIX_MAX_AGE_S,
    MAX_ACCURACY_M,
    State,
)
from server.store import EvidenceRow, FixRow


def states(
    start_s: int,
    end_s: int,
    fence: Fence,
    fixes: Sequence[FixRow],
    evidence: Sequence[EvidenceRow],
) -> list[State]:
    good = [f for f in fixes if f[6] == 0]  # flagged fixes are neither position nor evidence
    # Evidence per second: "on" wins over "off" within a second.
    ev: dict[int, bool] = {}
    for sent_ms, off in evidence:
        s = sent_ms // 1000
        ev[s] = ev.get(s, False) or not off
    for f in good:
        ev[f[0] // 1000] = True
    # The winning fix of each second: greatest (time_ms, seq, idx).
    best: dict[int, FixRow] = {}
    for f in good:
        s = f[0] // 1000
        if s not in best or (f[0], f[1], f[2]) > (best[s][0], best[s][1], best[s][2]):
            best[s] = f
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
        time_ms, _, _, lat, lon, acc, _, received_ms = best[fix_s]
        if acc is not None and acc > MAX_ACCURACY_M:
            out.append(State.NO_FIX)
        elif not fence.contains(lat, lon, 0.0 if acc is None else acc):
            out.append(State.OFF_POST)
        elif received_ms - time_ms > BACKFILL_AFTER_S * 1000:
            out.append(State.ON_POST_BACKFILLED)
        else:
            out.append(State.ON_POST)
    return out
