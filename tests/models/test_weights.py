"""Weight files: card round trip, model resolution, checked loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamcount.errors import ModelError
from streamcount.models.card import Metric, ModelCard
from streamcount.models.registry import build
from streamcount.models.weights import (available_models, load_model,
                                        load_state_checked, read_card, resolve_model,
                                        save_model, state_sha256, user_model_dir)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STREAMCOUNT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_user_model_dir_follows_streamcount_home(home: Path) -> None:
    assert user_model_dir() == home / "models"


def test_round_trip_keeps_weights_and_card(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build("mcnn")
    card = ModelCard.for_arch("mcnn", "m", training_data="SHB train", licence="MIT",
                              metrics=(Metric("shanghaitech/part_B/test_data", 25.1, 43.6, 316),),
                              extra={"k": [1, 2]})
    stored = save_model(tmp_path / "m.safetensors", net, card)
    assert stored.sha256 == state_sha256(net.state_dict())
    loaded, got = load_model(tmp_path / "m.safetensors")
    assert got == stored == read_card(tmp_path / "m.safetensors")
    assert not loaded.training
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_read_card_of_a_non_model_file(tmp_path: Path) -> None:
    f = tmp_path / "junk.safetensors"
    f.write_bytes(b"\x00" * 32)
    with pytest.raises(ModelError, match="junk.safetensors: not a streamcount model file"):
        read_card(f)


def test_resolve_by_path_name_and_architecture(tmp_path: Path) -> None:
    save_model(user_model_dir() / "mine.safetensors", build("csrnet_1_5"),
               ModelCard.for_arch("csrnet_1_5", "mine"))
    target = user_model_dir() / "mine.safetensors"
    assert resolve_model("mine") == target
    assert resolve_model(str(target)) == target
    assert resolve_model("csrnet_1_5") == target
    assert "mine" in available_models()


def test_user_models_override_packaged_ones(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    packaged = tmp_path / "packaged"
    monkeypatch.setattr("streamcount.models.weights.PACKAGED_DIR", packaged)
    save_model(packaged / "default.safetensors", build("mcnn"), ModelCard.for_arch("mcnn", "p"))
    assert resolve_model(None) == packaged / "default.safetensors"
    save_model(user_model_dir() / "default.safetensors", build("mcnn"),
               ModelCard.for_arch("mcnn", "u"))
    assert resolve_model(None) == user_model_dir() / "default.safetensors"


def test_resolve_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        resolve_model(str(tmp_path / "x.safetensors"))
    with pytest.raises(ModelError, match="unknown model 'nonesuch'"):
        resolve_model("nonesuch")


def test_load_state_checked_messages() -> None:
    net = build("mcnn")
    state = dict(net.state_dict())
    state["fuse.0.conv.weight"] = torch.zeros(1, 29, 1, 1)
    with pytest.raises(ModelError, match=r"f\.h5: key fuse\.0\.conv\.weight has shape "
                                         r"\(1, 29, 1, 1\), architecture expects \(1, 30, 1, 1\)"):
        load_state_checked(net, state, "f.h5")
    del state["fuse.0.conv.bias"]
    state["extra"] = torch.zeros(1)
    with pytest.raises(ModelError, match=r"missing keys \['fuse\.0\.conv\.bias'\]; "
                                         r"unexpected keys \['extra'\]"):
        load_state_checked(net, state, "f.h5")
