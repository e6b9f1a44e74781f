"""Paper-convention FLOPs (skt.md 1.3) reproduce every number of the SKT README."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from streamcount.models.flops import PAPER_INPUT_HW, count_params, paper_flops
from streamcount.models.registry import build


def meta_build(arch: str) -> nn.Module:
    """The architecture with storage-less parameters: counting needs only shapes."""
    with torch.device("meta"):
        return build(arch)


@pytest.mark.parametrize(("arch", "hw", "gflops"), [
    ("csrnet", (576, 864), 205.88),
    ("csrnet_1_4", (576, 864), 13.09),
    ("csrnet", (2032, 2912), 2447.91),
    ("csrnet_1_4", (2032, 2912), 155.69),
    ("bl_vgg19", (576, 864), 205.32),
    ("bl_vgg19_1_4", (576, 864), 13.06),
    ("bl_vgg19", (2032, 2912), 2441.23),
    ("bl_vgg19_1_4", (2032, 2912), 155.30),
    # skt.md 1.2 table, other students
    ("csrnet_1_2", (576, 864), 51.77),
    ("csrnet_1_3", (576, 864), 23.11),
    ("csrnet_1_5", (576, 864), 8.45),
])
def test_paper_flops_match_the_readme(arch: str, hw: tuple[int, int], gflops: float) -> None:
    assert round(paper_flops(meta_build(arch), hw) / 1e9, 2) == gflops


def test_real_and_meta_networks_count_the_same() -> None:
    assert paper_flops(build("csrnet_1_4"), (72, 96)) == paper_flops(meta_build("csrnet_1_4"),
                                                                     (72, 96))


def test_default_input_is_the_shanghaitech_a_size() -> None:
    net = build("csrnet_1_4")
    assert PAPER_INPUT_HW == (576, 864)
    assert paper_flops(net) == paper_flops(net, (576, 864))


def test_hand_counted_tiny_network() -> None:
    # conv 3->4 k3 pad1 on 6x8: 9*3*4*48 MACs + 4*48 bias; ReLU 4*48; pool input 4*48;
    # conv 4->1 k1 no bias on 3x4: 4*12
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 1, 1, bias=False))
    expected = 9 * 3 * 4 * 48 + 4 * 48 + 4 * 48 + 4 * 48 + 4 * 12
    assert paper_flops(net, (6, 8)) == expected


def test_grouped_conv_divides_input_channels() -> None:
    net = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False))
    assert paper_flops(net, (5, 5)) == 9 * 2 * 8 * 25


def test_ceil_mode_pooling_counts_padded_outputs() -> None:
    # ceil mode: 5x5 -> 3x3 after the pool, so the second conv runs on 9 positions
    net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.MaxPool2d(2, 2, ceil_mode=True),
                        nn.Conv2d(1, 1, 1, bias=False))
    assert paper_flops(net, (5, 5)) == 25 + 25 + 9


def test_counting_leaves_the_network_untouched() -> None:
    net = build("csrnet_1_4")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    paper_flops(net, (64, 64))
    after = net.state_dict()
    assert all(v.device.type == "cpu" and torch.equal(v, after[k]) for k, v in before.items())
    assert not any(m._forward_hooks for m in net.modules())


def test_params_exclude_nothing_registered() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 1, 1, bias=False))
    assert count_params(net) == 3 * 4 * 9 + 4 + 4


def test_rejects_empty_input() -> None:
    with pytest.raises(ValueError, match="positive"):
        paper_flops(build("mcnn"), (0, 10))
