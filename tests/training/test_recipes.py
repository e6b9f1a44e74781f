"""Every shipped training recipe (``configs/train/*.yaml``) is a valid config: the README and
MODEL_CARD give them as the commands behind their figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import load_config

RECIPES = sorted((Path(__file__).resolve().parents[2] / "configs" / "train").glob("*.yaml"))


def test_recipes_are_shipped() -> None:
    assert len(RECIPES) >= 20


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_each_recipe_loads_under_its_own_name(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.run.max_minutes is None or cfg.run.max_minutes > 0
