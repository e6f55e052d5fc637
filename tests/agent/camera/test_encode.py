from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.camera import encode_within, quality_checks


def noisy(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def scene(h: int = 360, w: int = 640) -> np.ndarray:
    img = np.full((h, w, 3), 120, np.uint8)
    for k in range(12):
        cv2.rectangle(img, (k * w // 12, k * h // 24), (k * w // 12 + 40, h - 1), (k * 20,) * 3, 2)
        cv2.putText(img, f"patrol {k}", (10, 20 + k * 25), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255)
    return img


def test_a_generous_budget_gets_max_quality_at_full_size() -> None:
    enc = encode_within(scene(), max_bytes=500_000)
    assert (enc.quality, enc.width, enc.height) == (90, 640, 360)
    assert enc.jpeg[:2] == b"\xff\xd8" and len(enc.jpeg) <= 500_000


def test_quality_is_searched_before_the_size_changes() -> None:
    full = len(encode_within(scene(), max_bytes=10**6).jpeg)
    enc = encode_within(scene(), max_bytes=full * 2 // 3)
    assert 20 <= enc.quality < 90 and enc.width == 640
    assert len(enc.jpeg) <= full * 2 // 3
    # the next quality up would not have fitted: the search returns the highest that fits
    ok, above = cv2.imencode(".jpg", scene(), [cv2.IMWRITE_JPEG_QUALITY, enc.quality + 1])
    assert ok and len(above) > full * 2 // 3


def test_downscales_when_min_quality_does_not_fit() -> None:
    frame = noisy(720, 1280)
    enc = encode_within(frame, max_bytes=20_000)
    assert len(enc.jpeg) <= 20_000 and enc.width < 1280 and enc.quality >= 20
    assert enc.height == round(720 * enc.width / 1280)
    decoded = cv2.imdecode(np.frombuffer(enc.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (enc.height, enc.width, 3)


def test_wider_than_max_width_is_scaled_down_first() -> None:
    enc = encode_within(scene(720, 1920), max_bytes=10**6, max_width=1280)
    assert (enc.width, enc.height) == (1280, 480)


def test_grey_frames_encode() -> None:
    enc = encode_within(scene()[:, :, 0], max_bytes=50_000)
    assert len(enc.jpeg) <= 50_000


def test_an_impossible_budget_raises_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="cannot fit a JPEG in 100 bytes"):
        encode_within(scene(), max_bytes=100)


@pytest.mark.parametrize(
    ("frame", "kwargs"),
    [
        (np.zeros((10, 10, 3), np.float32), {}),
        (np.zeros((10, 10, 4), np.uint8), {}),
        (np.zeros((0, 10, 3), np.uint8), {}),
        (np.zeros((10, 10, 3), np.uint8), {"min_quality": 95, "max_quality": 90}),
        (np.zeros((10, 10, 3), np.uint8), {"max_bytes": 0}),
    ],
)
def test_bad_frames_and_settings_raise(frame: np.ndarray, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        encode_within(frame, **{"max_bytes": 10_000, **kwargs})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 400),
    w=st.integers(1, 600),
    kind=st.sampled_from(["noise", "flat", "gradient"]),
    seed=st.integers(0, 2**16),
    max_bytes=st.integers(200, 60_000),
)
def test_encode_within_never_exceeds_max_bytes(
    h: int, w: int, kind: str, seed: int, max_bytes: int
) -> None:
    if kind == "noise":
        frame = noisy(h, w, seed)
    elif kind == "flat":
        frame = np.full((h, w, 3), seed % 256, np.uint8)
    else:
        frame = np.tile(np.linspace(0, 255, w, dtype=np.uint8)[None, :, None], (h, 1, 3))
    try:
        enc = encode_within(frame, max_bytes=max_bytes)
    except ValueError as exc:
        assert "cannot fit a JPEG" in str(exc)  # the only refusal for a valid frame
        return
    assert len(enc.jpeg) <= max_bytes
    assert enc.jpeg[:2] == b"\xff\xd8"
    assert 1 <= enc.width <= w and 20 <= enc.quality <= 90


def test_quality_checks_tell_sharp_blurred_and_dark_apart() -> None:
    sharp = scene()
    blurred = cv2.GaussianBlur(sharp, (0, 0), 8)
    dark = (sharp * 0.1).astype(np.uint8)
    q_sharp, q_blur, q_dark = map(quality_checks, (sharp, blurred, dark))
    assert not q_sharp.is_blurred() and not q_sharp.is_dark()
    assert q_blur.is_blurred() and not q_blur.is_dark()
    assert q_dark.is_dark()
    assert q_sharp.blur > 10 * q_blur.blur
    assert q_sharp.is_blurred(threshold=q_sharp.blur + 1)  # thresholds are parameters
