"""ONNX export of the deploy graph: dynamic batch/height/width, parity with eager PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from streamcount.errors import ModelError
from streamcount.models.card import ModelCard
from streamcount.models.deploy import CountingNet
from streamcount.models.export import export_onnx, read_onnx_card
from streamcount.models.registry import build
from streamcount.models.weights import load_model, save_model


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMCOUNT_HOME", str(tmp_path / "home"))


def _model_file(tmp_path: Path, arch: str) -> Path:
    torch.manual_seed(0)
    net = build(arch)
    path = tmp_path / f"{arch}.safetensors"
    save_model(path, net, ModelCard.for_arch(arch, f"test_{arch}"))
    return path


def _check_parity(onnx_path: Path, model_path: Path, sizes: list[tuple[int, int, int]]) -> None:
    net, card = load_model(model_path)
    ref = CountingNet(net, card).eval()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.type == "tensor(uint8)"
    assert [d if isinstance(d, int) else "dyn" for d in inp.shape] == ["dyn", "dyn", "dyn", 3]
    rng = np.random.default_rng(0)
    for n, h, w in sizes:
        frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
        (got,) = sess.run(None, {inp.name: frames})
        with torch.no_grad():
            want = ref(torch.from_numpy(frames)).numpy()
        assert got.shape == want.shape == (n, -(-h // card.output_stride),
                                           -(-w // card.output_stride))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_student_export_has_dynamic_shapes_and_matches_torch(tmp_path: Path,
                                                              exporter: str) -> None:
    src = _model_file(tmp_path, "csrnet_1_4")
    out = export_onnx(src, tmp_path / "student.onnx", exporter=exporter)
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version == (18 if exporter == "dynamo" else 17)
    assert read_onnx_card(out) == load_model(src)[1]
    # sizes other than the example's (2 x 64 x 96), batch 1 and 3, sizes not multiples of 8
    _check_parity(out, src, [(1, 64, 96), (3, 72, 120), (1, 48, 40), (2, 44, 36)])


@pytest.mark.slow
def test_mcnn_gray_export(tmp_path: Path) -> None:
    src = _model_file(tmp_path, "mcnn")
    out = export_onnx(src, tmp_path / "mcnn.onnx")
    _check_parity(out, src, [(1, 36, 44), (2, 64, 96)])


def test_unknown_exporter(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown ONNX exporter 'tf'"):
        export_onnx(_model_file(tmp_path, "mcnn"), tmp_path / "x.onnx", exporter="tf")


def test_unknown_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown model 'nosuchmodel'"):
        export_onnx("nosuchmodel", tmp_path / "x.onnx")


def test_card_missing_from_foreign_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "foreign.onnx"
    bad.write_bytes(b"not onnx at all")
    with pytest.raises(ModelError, match="foreign.onnx: not an ONNX model"):
        read_onnx_card(bad)
