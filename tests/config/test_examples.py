"""The shipped example configs validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamcount.config.loader import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["service.example.yaml", "service.minimal.yaml"])
def test_example_configs_validate(name: str, shared_data: Path) -> None:
    cfg = load_config(CONFIGS / name, env={})
    assert any(c.loop and Path(c.source).is_file() for c in cfg.cameras)
    if cfg.mqtt is not None:
        assert cfg.mqtt.username is None and cfg.mqtt.password is None  # ${VAR:-} unset
