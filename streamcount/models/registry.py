"""Architecture registry: names -> builders and their input conventions.

Importing this module does not import torch: each builder imports its architecture's module
when called, so reading a model card or listing the registry stays cheap (``streamcount
models list``, ``--help``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamcount.errors import ModelError

if TYPE_CHECKING:
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ArchSpec:
    """How to build an architecture and how its input must be prepared.

    Input is given to :class:`~streamcount.models.deploy.CountingNet` as float 0-255 in the
    ``colour`` order; it computes ``(x * input_scale - mean) / std`` inside the graph.
    """

    name: str
    builder: Callable[[], nn.Module]
    colour: str  # "rgb" or "gray"
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_scale: float
    output_stride: int
    description: str
    input_multiple: int = 8  # input H and W are cropped to a multiple of this
    #: "density" (output: density map, count = sum) or "detect" (output: N x boxes x (5 + C)
    #: rows cx, cy, w, h, objectness, class scores; see :mod:`streamcount.models.darknet`)
    task: str = "density"


def _lazy(target: str, *args: Any) -> Callable[[], nn.Module]:
    """A builder that imports ``module:Class`` only when it is called."""
    module, _, name = target.partition(":")

    def builder() -> nn.Module:
        return getattr(importlib.import_module(module), name)(*args)

    builder.__qualname__ = f"{name}{args if args else ''}"
    return builder


_CSRNET = "streamcount.models.csrnet"


def _yolo_fastest_body() -> nn.Module:
    from streamcount.models.darknet import YOLO_FASTEST_BODY_CFG, darknet_from_files

    return darknet_from_files(YOLO_FASTEST_BODY_CFG)


def _rgb(name: str, builder: Callable[[], nn.Module], desc: str) -> ArchSpec:
    return ArchSpec(name, builder, "rgb", IMAGENET_MEAN, IMAGENET_STD, 1 / 255.0, 8, desc)


ARCHITECTURES: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        _rgb("csrnet", _lazy(f"{_CSRNET}:CSRNet"),
             "CSRNet teacher (VGG-16 front end, dilated back end), 16.26 M params"),
        _rgb("csrnet_1_2", _lazy(f"{_CSRNET}:CSRNetStudent", 2),
             "1/2-CSRNet SKT student, 4.07 M params"),
        _rgb("csrnet_1_3", _lazy(f"{_CSRNET}:CSRNetStudent", 3),
             "1/3-CSRNet SKT student, 1.81 M params"),
        _rgb("csrnet_1_4", _lazy(f"{_CSRNET}:CSRNetStudent", 4),
             "1/4-CSRNet SKT student, 1.02 M params"),
        _rgb("csrnet_1_5", _lazy(f"{_CSRNET}:CSRNetStudent", 5),
             "1/5-CSRNet SKT student, 0.65 M params"),
        _rgb("csrnet_1_4_dual", _lazy("streamcount.models.dual:DualDensity"),
             "sparse + dense 1/4-CSRNet SKT students blended by local density, 2.04 M params"),
        _rgb("csrnet_dual", _lazy("streamcount.models.dual:DualDensity", 1),
             "sparse + dense CSRNet teachers blended by frame density, 32.53 M params"),
        _rgb("bl_vgg19", _lazy("streamcount.models.bl:BLVGG19", 1),
             "Bayesian-Loss VGG-19 teacher, 21.50 M params"),
        _rgb("bl_vgg19_1_4", _lazy("streamcount.models.bl:BLVGG19", 4),
             "1/4-BL SKT student, 1.35 M params"),
        ArchSpec("mcnn", _lazy("streamcount.models.mcnn:MCNN"), "gray", (0.0,), (1.0,), 1.0, 4,
                 "MCNN multi-column CNN (Zhang et al. 2016), 0.13 M params", input_multiple=4),
        ArchSpec("yolo_fastest_body", _yolo_fastest_body, "rgb", (0.0, 0.0, 0.0),
                 (1.0, 1.0, 1.0), 1 / 255.0, 32,
                 "Yolo-Fastest 1.1 'body' person detector (Darknet), 0.28 M params",
                 input_multiple=32, task="detect"),
    )
}


def arch_spec(name: str) -> ArchSpec:
    """Look up an architecture by registry name (a :class:`ModelError` names the choices)."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ModelError(
            f"unknown architecture '{name}' (known: {', '.join(ARCHITECTURES)})") from None


def build(name: str) -> nn.Module:
    """A freshly initialised network of architecture ``name``."""
    return arch_spec(name).builder()
