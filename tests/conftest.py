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


# ---------------------------------------------------------------------------------------
# Shared narrow models and the weights mirror (first used by test_models, test_hub,
# test_weights_cache and test_detector_init; any test file may use them).


@pytest.fixture(scope="session")
def narrow_model():
    """`narrow_model(**kwargs)`: `keras_slowfast.SlowFast(**NARROW_ARGS, **kwargs)`, built
    once per session for each distinct set of arguments (`helpers.NARROW_ARGS`: width 8, 5
    classes, 8 frames of 64x64).

    For tests where the network's size is not the point. The model is shared: never change
    its layers, and never rely on its weights' values (random; a test may assign others).
    """
    from helpers import NARROW_ARGS

    import keras_slowfast

    built = {}

    def get(**kwargs):
        args = dict(NARROW_ARGS, **kwargs)
        key = repr(sorted(args.items()))
        if key not in built:
            built[key] = keras_slowfast.SlowFast(**args)
        return built[key]

    return get


@pytest.fixture(scope="session")
def mirror(golden, tmp_path_factory):
    """A real HTTP server on 127.0.0.1 serving the golden checkpoints at the published paths
    (see weights_mirror.py), one per session."""
    from weights_mirror import make_mirror

    m = make_mirror(golden, tmp_path_factory.mktemp("mirror"))
    yield m
    m.close()


@pytest.fixture
def served(mirror, tmp_path, monkeypatch):
    """The mirror as download base, an empty KERAS_HOME, the default lock timeout, and the
    mirror back to serving files at once with empty request lists (before and after)."""
    from keras_slowfast import hub

    monkeypatch.setenv(hub.MIRROR_ENV, mirror.url)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(hub.LOCK_TIMEOUT_ENV, raising=False)
    mirror.reset()
    yield mirror
    mirror.reset()
