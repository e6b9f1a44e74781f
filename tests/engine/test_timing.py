"""time_backend: the shape of its result (never the speed itself)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from torch import nn

from streamcount.engine.timing import time_backend
from streamcount.engine.torch_cpu import TorchBackend
from streamcount.models.card import ModelCard


def test_time_backend_reports_median_min_max_and_fps(student: tuple[nn.Module, ModelCard]
                                                     ) -> None:
    backend = TorchBackend(*student, threads=2)
    x = np.zeros((2, 32, 48, 3), np.uint8)
    r = time_backend(backend, x, warmup=1, runs=5)
    assert json.dumps(r)
    assert r["backend"] == "torch" and r["batch"] == 2 and (r["height"], r["width"]) == (32, 48)
    assert r["runs"] == 5
    assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]
    assert r["fps"] == pytest.approx(2000.0 / r["median_ms"])
    assert r["ms_per_frame"] == pytest.approx(r["median_ms"] / 2)


def test_time_backend_stops_after_max_seconds(student: tuple[nn.Module, ModelCard]) -> None:
    backend = TorchBackend(*student, threads=2)
    r = time_backend(backend, np.zeros((1, 16, 16, 3), np.uint8), warmup=0, runs=1000,
                     max_seconds=0.0)
    assert r["runs"] == 3


def test_time_backend_rejects_bad_arguments(student: tuple[nn.Module, ModelCard]) -> None:
    backend = TorchBackend(*student, threads=2)
    with pytest.raises(ValueError):
        time_backend(backend, np.zeros((1, 16, 16, 3), np.uint8), runs=0)
    with pytest.raises(ValueError):
        time_backend(backend, np.zeros((16, 16, 3), np.uint8))
