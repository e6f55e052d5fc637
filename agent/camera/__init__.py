"""Camera snapshots for the agent (issue #5): capture, encode within a byte target, decide when.

- ``capture.Camera``: the one place that owns ``cv2.VideoCapture``.
- ``encode.encode_within`` / ``encode.quality_checks``: JPEG within a byte target; blur/darkness.
- ``policy.SnapPolicy`` / ``policy.Snapper``: which frames become ``protocol.Snapshot``.
"""

from .capture import Camera, CameraState
from .encode import Encoded, Quality, encode_within, quality_checks
from .policy import SnapInfo, Snapper, SnapPolicy, SnapStats

__all__ = [
    "Camera",
    "CameraState",
    "Encoded",
    "Quality",
    "SnapInfo",
    "SnapPolicy",
    "SnapStats",
    "Snapper",
    "encode_within",
    "quality_checks",
]
