"""Darknet loader: cfg parsing, shapes, and parity with OpenCV 4.x's independent importer."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streamcount.errors import ModelError
from streamcount.models.darknet import (YOLO_FASTEST_BODY_CFG, DarknetNet, convert_darknet,
                                        darknet_from_files, load_darknet_weights, parse_cfg)
from streamcount.models.deploy import CountingNet
from streamcount.models.registry import build
from streamcount.models.weights import load_model, resolve_model, state_sha256

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "yolo_fastest_body"

TINY = """[net]
width=64
height=64
channels=3
[convolutional]
filters=4
size=3
stride=2
pad=1
batch_normalize=1
activation=leaky
[convolutional]
filters=4
groups=4
size=3
stride=1
pad=1
batch_normalize=1
activation=leaky
[dropout]
probability=.1
[shortcut]
from=-3
activation=linear
[maxpool]
size=3
stride=1
[route]
layers=-1,-4
[convolutional]
filters=6
size=1
stride=1
pad=1
activation=linear
[yolo]
mask=0
anchors=10,20, 30,40
classes=1
"""


def _opencv_reference() -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    meta = json.loads((FIXTURE / "reference.json").read_text())
    with np.load(FIXTURE / "opencv_outputs.npz") as z:
        ref = np.concatenate([z[k] for k in meta["outputs"]])
    image = cv2.imread(str(FIXTURE / "input_bgr.png"), cv2.IMREAD_COLOR)
    return image, ref, meta


def test_parse_cfg_and_tiny_network_shapes() -> None:
    sections = parse_cfg(TINY)
    assert [s.kind for s in sections] == ["net", "convolutional", "convolutional", "dropout",
                                          "shortcut", "maxpool", "route", "convolutional",
                                          "yolo"]
    net = DarknetNet(sections).eval()
    assert net.input_multiple == 2
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 96))
    assert tuple(out.shape) == (2, 32 * 48, 6)
    assert bool(((out[..., :2] >= 0) & (out[..., :2] <= 1)).all())
    assert bool((out[..., 5] <= out[..., 4]).all())  # class score = objectness x probability


@pytest.mark.parametrize(("text", "message"), [
    ("[convolutional]\nfilters=1\n", "first section must be [net]"),
    ("[net]\n[lstm]\nbatch=1\n[yolo]\nmask=0\nanchors=1,1\n", "section [lstm] not supported"),
    ("[net]\nwhat is this\n", "cannot parse"),
    ("[net]\n[convolutional]\nfilters=6\nactivation=mish\n", "activation 'mish'"),
    ("[net]\n[convolutional]\nfilters=6\nactivation=linear\n", "no [yolo] layer"),
    ("[net]\n[route]\nlayers=-1\n", "out of range"),
])
def test_bad_cfgs_are_one_line_model_errors(text: str, message: str) -> None:
    with pytest.raises(ModelError, match=message.replace("[", r"\[").replace("]", r"\]")):
        DarknetNet(parse_cfg(text))


def test_weights_file_must_fit_the_cfg(tmp_path: Path) -> None:
    net = DarknetNet(parse_cfg(TINY))
    n = sum(p.numel() for p in net.parameters()) + sum(
        b.numel() for k, b in net.state_dict().items() if "running" in k)
    header = np.array([0, 2, 5], np.int32).tobytes() + np.int64(0).tobytes()
    good = tmp_path / "good.weights"
    good.write_bytes(header + np.arange(n, dtype=np.float32).tobytes())
    load_darknet_weights(net, good)
    assert net.layers[0].bn.bias[0].item() == 0.0  # BN beta comes first
    short = tmp_path / "short.weights"
    short.write_bytes(header + np.zeros(n - 1, np.float32).tobytes())
    with pytest.raises(ModelError, match="too short"):
        load_darknet_weights(net, short)
    long = tmp_path / "long.weights"
    long.write_bytes(header + np.zeros(n + 3, np.float32).tobytes())
    with pytest.raises(ModelError, match="3 values left over"):
        load_darknet_weights(net, long)


def test_registry_architecture_is_a_detector() -> None:
    net = build("yolo_fastest_body")
    assert sum(p.numel() for p in net.parameters()) == 281_132
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 320, 416))
    assert tuple(out.shape) == (1, 3 * (10 * 13 + 20 * 26), 6)


def test_packaged_weights_match_opencv_importer() -> None:
    """fp32 PyTorch conversion vs OpenCV 4.10's ``readNetFromDarknet`` on a real frame."""
    image, ref, meta = _opencv_reference()
    assert str(meta["opencv"]).startswith("4.")
    net, card = load_model(resolve_model("yolo_fastest_body"))
    assert card.task == "detect" and card.training_data == "not stated by its authors"
    assert "public domain" in card.licence
    with torch.no_grad():
        out = CountingNet(net, card)(torch.from_numpy(image)[None])[0].numpy()
    assert out.shape == ref.shape == (2535, 6)
    np.testing.assert_allclose(out[:, :5], ref[:, :5], rtol=0, atol=1e-5)
    # OpenCV zeroes class scores below its region threshold 0.2
    shown = ref[:, 5] > 0
    assert shown.sum() >= 10
    np.testing.assert_allclose(out[shown, 5], ref[shown, 5], rtol=0, atol=1e-5)
    assert (out[~shown, 5] < 0.2 + 1e-5).all()


def test_conversion_from_darknet_files_reproduces_packaged_weights(shared_data: Path) -> None:
    src = shared_data / "weights" / "yolo-fastest-body"
    cfg, weights = src / "yolo-fastest-1.1_body.cfg", src / "yolo-fastest-1.1_body.weights"
    assert cfg.read_text() == YOLO_FASTEST_BODY_CFG.read_text()
    net, card = convert_darknet(cfg, weights, "yolo_fastest_body", "x")
    packaged, packaged_card = load_model(resolve_model("yolo_fastest_body"))
    assert state_sha256(net.state_dict()) == packaged_card.sha256
    assert card.extra["source_sha256"] == packaged_card.extra["source_sha256"]
    assert isinstance(darknet_from_files(cfg), DarknetNet)
