"""The disk budget's eviction order, as pure functions over (id, time) rows.

When the outbox exceeds its budget it gives up, in this order (documented in README and
``docs/architecture.md``):

1. **snapshots**, oldest first — a picture is worth less than knowing where someone was;
2. **thinning fixes** older than ``KEEP_RECENT_S`` to one a minute, then one per 5 minutes,
   15 minutes and an hour — the track stays, coarser;
3. as a last resort, the **oldest fixes**.

Never: urgent messages (SOS, dispatch responses, roll-call answers), check-in/out and other
presence, eviction reports, or any frame already sealed (numbered). Every fix or snapshot given
up is counted, and the counts are reported to the server in ``Event`` messages so inspectors see
them.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Fixes newer than this are never thinned: the recent track is what a duty officer needs.
KEEP_RECENT_S = 600
#: Successively coarser thinning steps, seconds.
THINNING_STEPS_S = (60, 300, 900, 3600)


def thin(rows: Sequence[tuple[int, int]], step_ms: int) -> list[int]:
    """Ids to delete so that at most one fix remains per ``step_ms`` bucket (the earliest).

    ``rows`` are (id, time_ms), in any order.
    """
    keep: dict[int, tuple[int, int]] = {}
    for row_id, time_ms in rows:
        bucket = time_ms // step_ms
        kept = keep.get(bucket)
        if kept is None or (time_ms, row_id) < (kept[1], kept[0]):
            keep[bucket] = (row_id, time_ms)
    kept_ids = {row_id for row_id, _ in keep.values()}
    return [row_id for row_id, _ in rows if row_id not in kept_ids]
