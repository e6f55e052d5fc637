"""JPEG within a byte target, and cheap image-quality checks.

``encode_within`` chooses, in this order:

1. the size: a frame wider than ``max_width`` is first scaled down to it (``INTER_AREA``);
2. the quality: ``max_quality`` if that fits, else a binary search over
   ``[min_quality, max_quality)`` for the highest quality that fits ``max_bytes`` (JPEG size is
   monotone enough in quality for this; the search returns only sizes it has measured);
3. only when even ``min_quality`` does not fit, the size again: the image is scaled down by a
   factor estimated from how far over it is (``sqrt(max_bytes / size)``, clamped to
   [0.5, 0.9] per step, so at least 10 % per step) and step 2 repeats.

Quality before size because a slightly softer full-size image shows more (faces, plates) than
a sharp thumbnail, and below ``min_quality`` (20) blocking artefacts cost more than halving the
resolution does. When the image would have to shrink below ``min_side`` pixels on its shorter
side and still does not fit, ``encode_within`` raises ``ValueError`` (the caller skips the
snapshot); it never returns more than ``max_bytes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

BLUR_THRESHOLD = 60.0  # variance of the Laplacian of a ≤320-px-wide grey image
DARK_THRESHOLD = 35.0  # mean grey level, 0–255
_QUALITY_WIDTH = 320


@dataclass(frozen=True, slots=True)
class Encoded:
    jpeg: bytes
    width: int
    height: int
    quality: int


@dataclass(frozen=True, slots=True)
class Quality:
    blur: float  # variance of the Laplacian (low: blurred or featureless)
    brightness: float  # mean grey level, 0–255

    def is_blurred(self, threshold: float = BLUR_THRESHOLD) -> bool:
        return self.blur < threshold

    def is_dark(self, threshold: float = DARK_THRESHOLD) -> bool:
        return self.brightness < threshold


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise ValueError("frame: expected a numpy uint8 array")
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3)):
        raise ValueError(f"frame: expected H×W or H×W×{{1,3}}, got shape {frame.shape}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"frame: empty, shape {frame.shape}")


def _grey(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return frame.reshape(frame.shape[0], frame.shape[1])


def small_grey(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """A ``width``×``height`` grey thumbnail (``INTER_AREA``), as float32 0–255."""
    return cv2.resize(_grey(frame), (width, height), interpolation=cv2.INTER_AREA).astype(
        np.float32
    )


def quality_checks(frame: np.ndarray) -> Quality:
    """Blur and brightness on a grey copy at most 320 px wide (cheap, and resolution-stable)."""
    _check_frame(frame)
    grey = _grey(frame)
    h, w = grey.shape
    if w > _QUALITY_WIDTH:
        grey = cv2.resize(
            grey,
            (_QUALITY_WIDTH, max(1, round(h * _QUALITY_WIDTH / w))),
            interpolation=cv2.INTER_AREA,
        )
    blur = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    return Quality(blur=blur, brightness=float(grey.mean()))


def _encode(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("cv2.imencode could not encode the frame as JPEG")
    return buf.tobytes()


def _resize(image: np.ndarray, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    height = max(1, round(h * width / w))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def encode_within(
    frame: np.ndarray,
    *,
    max_bytes: int,
    min_quality: int = 20,
    max_quality: int = 90,
    max_width: int = 1280,
    min_side: int = 16,
) -> Encoded:
    """The best JPEG of ``frame`` that is at most ``max_bytes``; see the module docstring.

    Raises ``ValueError`` for a frame that is not an image, bad settings, or a ``max_bytes``
    that no image of at least ``min_side`` px at ``min_quality`` fits.
    """
    _check_frame(frame)
    if not 1 <= min_quality <= max_quality <= 100:
        raise ValueError(
            f"need 1 <= min_quality <= max_quality <= 100, got {min_quality}, {max_quality}"
        )
    if max_bytes < 1 or max_width < 1 or min_side < 1:
        raise ValueError("max_bytes, max_width and min_side must be positive")
    image = frame
    if image.shape[1] > max_width:
        image = _resize(image, max_width)
    while True:
        best = _fit_quality(image, max_bytes, min_quality, max_quality)
        if isinstance(best, Encoded):
            return best
        h, w = image.shape[:2]
        scale = min(0.9, max(0.5, math.sqrt(max_bytes / best) * 0.95))
        new_w = int(w * scale)
        if min(new_w, round(h * scale)) < min_side:
            raise ValueError(
                f"cannot fit a JPEG in {max_bytes} bytes: {w}×{h} at quality {min_quality} "
                f"takes {best} and a smaller image would be under {min_side} px"
            )
        image = _resize(image, new_w)


def _fit_quality(image: np.ndarray, max_bytes: int, lo: int, hi: int) -> Encoded | int:
    """The highest-quality fit, or the size at ``lo`` (int) when nothing fits."""
    h, w = image.shape[:2]
    jpeg = _encode(image, hi)
    if len(jpeg) <= max_bytes:
        return Encoded(jpeg, w, h, hi)
    floor = _encode(image, lo)
    if len(floor) > max_bytes:
        return len(floor)
    best = Encoded(floor, w, h, lo)
    low, high = lo + 1, hi - 1  # invariant: lo fits, hi does not
    while low <= high:
        mid = (low + high) // 2
        jpeg = _encode(image, mid)
        if len(jpeg) <= max_bytes:
            best = Encoded(jpeg, w, h, mid)
            low = mid + 1
        else:
            high = mid - 1
    return best
