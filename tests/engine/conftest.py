"""Fixtures for the CPU backend tests: models and one artefact cache per session.

The ONNX export of a model takes several seconds, so every test shares one session cache
directory (each model is exported once); tests about the cache itself use their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from streamcount.engine.cache import ENV_VAR, ArtefactCache
from streamcount.models.card import ModelCard
from streamcount.models.registry import build
from tests.engine.cpu_support import load_mcnn_b


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The artefact cache shared by this session's tests."""
    return tmp_path_factory.mktemp("artefacts")


@pytest.fixture()
def cache(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ArtefactCache]:
    """The session cache, also set as ``$STREAMCOUNT_CACHE`` (for the factory)."""
    monkeypatch.setenv(ENV_VAR, str(cache_dir))
    yield ArtefactCache(cache_dir)


@pytest.fixture(scope="session")
def student() -> tuple[nn.Module, ModelCard]:
    """The 1/4-CSRNet student with seeded random weights."""
    torch.manual_seed(0)
    return build("csrnet_1_4").eval(), ModelCard.for_arch("csrnet_1_4", name="student-random")


@pytest.fixture(scope="session")
def mcnn_b(shared_data: Path) -> tuple[nn.Module, ModelCard]:
    """MCNN with real (published) part B weights."""
    return load_mcnn_b(shared_data)
