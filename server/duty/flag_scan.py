"""Reads what the anti-gaming rules need for one shift from the store, and applies them.

The rules themselves (``server.duty.flags``) are pure; this is the only place that knows
which store queries feed them. Roll calls and the terminal's other shifts are not in the
store's telemetry: the caller, who holds the roll-call log and the organisation, passes them.
Fixes are read as the store's packed array (``Store.fix_array``), which the rules take as it
is: no Python object per fix.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..org.model import Shift
from ..store import Store
from .flags import FIX_MARGIN_MS, Flag, SpotRequest, shift_days, shift_flags
from .rules import ShiftResult


def scan_shift(
    store: Store,
    shift: Shift,
    result: ShiftResult,
    *,
    spot_requests: Iterable[SpotRequest] = (),
    other_shifts: Iterable[Shift] = (),
) -> list[Flag]:
    """The flags of one shift, whose timeline ``result`` the duty engine computed.

    ``spot_requests``: ``(sent_ms, deadline_ms, answered_ms | None)`` of the roll calls sent
    to the shift's terminal; ``other_shifts``: other shifts that used the same terminal (any
    others are ignored).
    """
    device = shift.device_id
    if device is None:
        return shift_flags(shift, result, (), (), (), (), ())
    fixes = store.fix_array(device, shift.start_ms - FIX_MARGIN_MS, shift.end_ms + FIX_MARGIN_MS)
    skews = store.skew_rows(device, shift.start_ms, shift.end_ms)
    first_day, last_day = shift_days(shift.start_ms, shift.end_ms)
    rejections = store.rejections(device_id=device, first_day=first_day, last_day=last_day)
    future = store.future_frame_times(device, shift.start_ms, shift.end_ms)
    return shift_flags(
        shift, result, fixes, skews, rejections, spot_requests, other_shifts, future
    )
