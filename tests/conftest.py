"""Shared test fixtures: locating the reference fixtures and sample videos."""

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]


def _shared_dir():
    return _REPO.parent / "shared"


def golden_dir():
    """The golden fixtures folder, or None when it is not available."""
    env = os.environ.get("KERAS_SLOWFAST_GOLDEN")
    candidates = [Path(env)] if env else []
    candidates.append(_shared_dir() / "golden")
    for c in candidates:
        if (c / "models").is_dir():
            return c
    return None


def videos_dir():
    g = golden_dir()
    candidates = []
    if g is not None:
        candidates.append(g.parent / "videos")
    candidates.append(_shared_dir() / "videos")
    for c in candidates:
        if c.is_dir() and any(c.glob("*.mp4")):
            return c
    return None


@pytest.fixture(scope="session")
def golden():
    g = golden_dir()
    if g is None:
        pytest.skip(
            "golden fixtures not found: set KERAS_SLOWFAST_GOLDEN or place shared/golden "
            "beside the repository"
        )
    return g


@pytest.fixture(scope="session")
def videos():
    v = videos_dir()
    if v is None:
        pytest.skip("sample videos not found: expected shared/videos beside the repository")
    return v
