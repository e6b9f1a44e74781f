"""Architectures: official state_dict key names (skt.md section 5), shapes, parameter counts."""

from __future__ import annotations

import pytest
import torch

from streamcount.models.csrnet import CSRNet, CSRNetStudent, SKTAdapters
from streamcount.models.flops import count_params
from streamcount.models.registry import ARCHITECTURES, build

# skt.md section 5: the official 1/4-CSRNet student keys, in registration order
OFFICIAL_STUDENT_MODULES = (
    "conv0_0.0 transform0_0.0 conv0_1.0 transform1_0.0 conv1_0.0 conv1_1.0 transform2_0.0 "
    "conv2_0.0 conv2_1.0 conv2_2.0 transform3_0.0 conv3_0.0 conv3_1.0 conv3_2.0 "
    "conv4_0.0 transform4_0.0 conv4_1.0 conv4_2.0 conv4_3.0 transform4_3.0 conv4_4.0 conv4_5.0 "
    "conv5_0"
).split()
OFFICIAL_STUDENT_KEYS = [f"{m}.{p}" for m in OFFICIAL_STUDENT_MODULES for p in ("weight", "bias")]

# skt.md section 5: CSRNet-pytorch teacher keys
TEACHER_MODULES = ([f"frontend.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)]
                   + [f"backend.{i}" for i in (0, 2, 4, 6, 8, 10)] + ["output_layer"])
TEACHER_KEYS = [f"{m}.{p}" for m in TEACHER_MODULES for p in ("weight", "bias")]

# skt.md section 1.4: BL teacher keys
BL_CONVS = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
BL_MODULES = [f"features.{i}" for i in BL_CONVS] + [f"reg_layer.{i}" for i in (0, 2, 4)]
BL_KEYS = [f"{m}.{p}" for m in BL_MODULES for p in ("weight", "bias")]

MCNN_KEYS = [f"branch{b}.{i}.conv.{p}" for b in (1, 2, 3) for i in (0, 2, 4, 5)
             for p in ("weight", "bias")] + ["fuse.0.conv.weight", "fuse.0.conv.bias"]


def test_student_keys_are_the_official_keys_without_adapters() -> None:
    deploy = [k for k in OFFICIAL_STUDENT_KEYS if not k.startswith("transform")]
    assert list(CSRNetStudent(4).state_dict()) == deploy


def test_student_with_adapters_has_exactly_the_official_key_set() -> None:
    student = CSRNetStudent(4)
    adapters = SKTAdapters(student.tap_channels())
    keys = set(student.state_dict()) | set(adapters.state_dict())
    assert keys == set(OFFICIAL_STUDENT_KEYS)


def test_official_example_shapes() -> None:
    student = CSRNetStudent(4)
    adapters = SKTAdapters(student.tap_channels())
    assert tuple(student.state_dict()["conv0_0.0.weight"].shape) == (16, 3, 3, 3)
    assert tuple(adapters.state_dict()["transform4_0.0.weight"].shape) == (512, 128, 1, 1)
    assert count_params(adapters) == 105_728  # skt.md 1.2: adapters of the 1/4 student


def test_teacher_keys() -> None:
    assert list(CSRNet().state_dict()) == TEACHER_KEYS


def test_bl_teacher_keys_and_student_layout() -> None:
    with torch.device("meta"):
        assert list(build("bl_vgg19").state_dict()) == BL_KEYS
        assert list(build("bl_vgg19_1_4").state_dict()) == BL_KEYS


def test_mcnn_keys_match_the_published_h5_without_prefix() -> None:
    assert sorted(build("mcnn").state_dict()) == sorted(MCNN_KEYS)


@pytest.mark.parametrize(("arch", "params"), [
    ("csrnet", 16_263_489), ("csrnet_1_2", 4_067_489), ("csrnet_1_3", 1_812_326),
    ("csrnet_1_4", 1_017_681), ("csrnet_1_5", 647_489),
    ("bl_vgg19", 21_499_457), ("bl_vgg19_1_4", 1_345_169), ("mcnn", 127_953),
    ("csrnet_1_4_dual", 2 * 1_017_681), ("csrnet_dual", 2 * 16_263_489),
])
def test_param_counts(arch: str, params: int) -> None:
    with torch.device("meta"):
        net = build(arch)
    assert count_params(net) == params


# odd sizes: CSRNet-family ceil-mode pooling (37 -> 19 -> 10 -> 5), BL floor pooling at
# stride 16 then x2, MCNN floor pooling at stride 4
@pytest.mark.parametrize(("arch", "out_hw"), [
    ("csrnet", (5, 7)), ("csrnet_1_4", (5, 7)), ("csrnet_1_5", (5, 7)),
    ("bl_vgg19_1_4", (4, 6)), ("mcnn", (9, 13)),
])
def test_output_shapes_for_odd_sizes(arch: str, out_hw: tuple[int, int]) -> None:
    spec = ARCHITECTURES[arch]
    channels = 1 if spec.colour == "gray" else 3
    with torch.device("meta"):
        net = build(arch)
        out = net(torch.empty(2, channels, 37, 53))
    assert tuple(out.shape) == (2, 1, *out_hw)


def test_forward_features_taps_match_declared_channels() -> None:
    student = CSRNetStudent(4).eval()
    with torch.no_grad():
        density, feats = student.forward_features(torch.zeros(1, 3, 32, 48))
    assert [f.shape[1] for f in feats] == list(student.tap_channels())
    assert tuple(density.shape) == (1, 1, 4, 6)
