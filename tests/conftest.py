"""Shared fixtures: the real data in ../shared/data (skipped with a reason where absent)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (see README, 'Test data')")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests using it skip with a visible reason where it is absent."""
    return _need(SHARED_DATA)


@pytest.fixture(scope="session")
def vtest_avi() -> Path:
    """OpenCV's real CCTV sample clip (../shared or Debian's opencv-doc package)."""
    for p in (SHARED_DATA / "video" / "vtest.avi",
              Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")):
        if p.exists():
            return p
    pytest.skip("vtest.avi not available (../shared/data/video or Debian opencv-doc)")


@pytest.fixture(scope="session")
def shanghaitech() -> Path:
    """The ShanghaiTech dataset root (part_A, part_B)."""
    return _need(SHARED_DATA / "shanghaitech")


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged default model if present, else a random CSRNet 1/4 saved with its card."""
    import torch

    from streamcount.models.card import ModelCard
    from streamcount.models.registry import build
    from streamcount.models.weights import PACKAGED_DIR, save_model

    default = PACKAGED_DIR / "default.safetensors"
    if default.exists():
        return default
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(path, build("csrnet_1_4"), ModelCard.for_arch("csrnet_1_4", "tiny-random"))
    return path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Any]:
    """A real mosquitto on a free port (``tests.integration.mosquitto.Mosquitto``), stopped after
    the test; skipped with the reason where mosquitto is not installed."""
    from tests.integration.mosquitto import Mosquitto, mosquitto_binary

    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    b = Mosquitto(tmp_path / "mosquitto").start()
    yield b
    b.stop()
