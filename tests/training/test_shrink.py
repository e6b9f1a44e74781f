"""training.shrink: a 1/4 student made of a CSRNet teacher's largest filters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamcount.models.csrnet import CSRNet
from streamcount.models.weights import load_model
from training import shrink


def _images(n: int = 2, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(n)]


def test_keeps_the_largest_filters_of_every_layer() -> None:
    torch.manual_seed(0)
    t = CSRNet()
    s = shrink.shrink_teacher(t, _images())
    t_convs = [m for m in shrink._ops_teacher(t) if isinstance(m, torch.nn.Conv2d)]
    s_convs = [m for m in shrink._ops_student(s) if isinstance(m, torch.nn.Conv2d)]
    # first layer: RGB inputs all kept, so the kept filters are the 16 of largest norm, each a
    # positive multiple of the teacher's (the fitted gain)
    norms = t_convs[0].weight.flatten(1).norm(dim=1)
    top = torch.sort(torch.topk(norms, 16).indices).values
    ratio = s_convs[0].weight.flatten(1) / t_convs[0].weight[top].flatten(1)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-4)
    assert torch.equal(s_convs[0].bias, t_convs[0].bias[top])
    assert [tuple(c.weight.shape) for c in s_convs][-1] == (1, 16, 1, 1)


def test_gains_fit_each_layer_by_least_squares() -> None:
    torch.manual_seed(1)
    t = CSRNet()
    imgs = _images()
    s = shrink.shrink_teacher(t, imgs)
    # refitting the gains of the shrunk student against itself changes nothing when the layer
    # is already optimal: a second layer-1 fit on the same data gives gain 1
    x = shrink._normalise(imgs)
    s_conv1 = s.conv0_1[0]
    t_conv1 = t.frontend[2]
    h_s = [s.conv0_0(xi) for xi in x]
    h_t = [torch.relu(t.frontend[0](xi)) for xi in x]
    in_idx = torch.sort(torch.topk(t.frontend[0].weight.flatten(1).norm(dim=1), 16).indices).values
    w_in = t_conv1.weight[:, in_idx]
    out_idx = torch.sort(torch.topk(w_in.flatten(1).norm(dim=1), 16).indices).values
    num = den = 0
    for hs, ht in zip(h_s, h_t, strict=True):
        zs = torch.nn.functional.conv2d(hs, s_conv1.weight, None, padding=1)
        zt = torch.nn.functional.conv2d(ht, t_conv1.weight[out_idx], None, padding=1)
        num = num + (zs * zt).sum(dim=(0, 2, 3))
        den = den + (zs * zs).sum(dim=(0, 2, 3))
    assert torch.allclose(num / den, torch.ones(16), atol=1e-3)


def test_cli_writes_a_loadable_student(tmp_path: Path, capsys) -> None:
    import cv2

    torch.manual_seed(2)
    from streamcount.models.card import ModelCard
    from streamcount.models.weights import save_model

    teacher = tmp_path / "t.safetensors"
    save_model(teacher, CSRNet(), ModelCard.for_arch("csrnet", "t"))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i, im in enumerate(_images(3)):
        cv2.imwrite(str(imgs / f"{i}.png"), im)
    out = tmp_path / "s.safetensors"
    assert shrink.main([str(teacher), "--images", str(imgs), "--out", str(out)]) == 0
    net, card = load_model(out)
    assert card.arch == "csrnet_1_4" and "largest-norm filters" in card.source
    assert shrink.main([str(teacher), "--images", str(tmp_path / "none"), "--out",
                        str(out)]) == 2
    assert "image folder not found" in capsys.readouterr().err


def test_real_teacher_shrinks_to_a_counting_student(shanghaitech: Path) -> None:
    from streamcount.models.weights import available_models

    if "csrnet_sha" not in available_models():
        pytest.skip("teacher csrnet_sha not imported (python -m training.teacher fetch)")
    from training.tasks import load_weights_into

    t = CSRNet()
    load_weights_into(t, "csrnet_sha")
    imgs = shrink.load_images(shanghaitech / "part_A/train_data/images", 4, max_side=384)
    s = shrink.shrink_teacher(t, imgs)
    x = shrink._normalise(shrink.load_images(shanghaitech / "part_A/test_data/images", 3,
                                             max_side=384))
    with torch.no_grad():
        ct = np.array([float(t(xi).sum()) for xi in x])
        cs = np.array([float(s(xi).sum()) for xi in x])
    # before any training the student counts the teacher's crowds to within a factor of 3
    assert np.all(cs > ct / 3) and np.all(cs < ct * 3), (ct, cs)
