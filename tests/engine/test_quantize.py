"""Quantisation helpers: graph edges, count deviation, calibration checks, recipe choice."""

from __future__ import annotations

import numpy as np
import pytest

from streamcount.engine import quantize
from streamcount.engine.quantize import QuantRecipe


def test_edge_layers_of_a_multi_column_graph() -> None:
    # MCNN-like: input -> three columns of two convs -> concat -> fuse conv -> relu
    order = ["in", "a1", "a2", "b1", "b2", "c1", "pool", "c2", "cat", "fuse", "relu"]
    inputs = {"a1": ["in"], "a2": ["a1"], "b1": ["in"], "b2": ["b1"], "c1": ["in"],
              "pool": ["c1"], "c2": ["pool"], "cat": ["a2", "b2", "c2"], "fuse": ["cat"],
              "relu": ["fuse"]}
    convs = {"a1", "a2", "b1", "b2", "c1", "c2", "fuse"}
    first, last = quantize.edge_layers(order, inputs, convs)
    assert first == ["a1", "b1", "c1"]
    assert last == ["fuse"]
    assert quantize.float_layers(QuantRecipe("x"), first, last) == ["fuse"]
    assert quantize.float_layers(QuantRecipe("x", keep_first=True), first, last) == [
        "a1", "b1", "c1", "fuse"]
    assert quantize.float_layers(QuantRecipe("x", keep_last=False), first, last) == []


def test_count_deviation() -> None:
    assert quantize.count_deviation([100, 50], [101, 49]) == pytest.approx(0.015)
    # counts near zero compare in absolute terms (max(|r|, 1))
    assert quantize.count_deviation([0.01], [0.51]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        quantize.count_deviation([1, 2], [1])


def test_check_calibration_frames() -> None:
    ok = np.zeros((16, 24, 3), np.uint8)
    assert len(quantize.check_calibration_frames([ok, ok], 8)) == 2
    assert quantize.check_calibration_frames(None, 8) == []
    with pytest.raises(ValueError, match="uint8"):
        quantize.check_calibration_frames([ok.astype(np.float32)], 8)
    with pytest.raises(ValueError, match="multiple of 8"):
        quantize.check_calibration_frames([np.zeros((20, 24, 3), np.uint8)], 8)


def test_choose_takes_first_acceptable_else_best() -> None:
    recipes = [QuantRecipe("a"), QuantRecipe("b"), QuantRecipe("c")]
    built: list[str] = []

    def make(r: QuantRecipe) -> str:
        built.append(r.name)
        return r.name

    devs = {"a": 0.03, "b": 0.005, "c": 0.0}
    chosen, trials = quantize.choose(recipes, make, devs.__getitem__)
    assert chosen.recipe.name == "b" and built == ["a", "b"] and len(trials) == 2
    devs = {"a": 0.03, "b": 0.02, "c": 0.04}
    built.clear()
    chosen, trials = quantize.choose(recipes, make, devs.__getitem__)
    assert chosen.recipe.name == "b" and built == ["a", "b", "c"]


def test_choose_skips_failing_recipes() -> None:
    def make(r: QuantRecipe) -> str:
        if r.name == "a":
            raise RuntimeError("unsupported op")
        return r.name

    chosen, trials = quantize.choose([QuantRecipe("a"), QuantRecipe("b")], make, lambda _: 0.0)
    assert chosen.recipe.name == "b" and [t.recipe.name for t in trials] == ["b"]
    with pytest.raises(RuntimeError, match="unsupported"):
        quantize.choose([QuantRecipe("a")], make, lambda _: 0.0)
