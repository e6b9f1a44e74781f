"""Darknet (``.cfg`` + ``.weights``) networks in PyTorch, for the YOLO detectors the hybrid
counter uses on sparse scenes.

Supported sections: ``[net]`` (ignored apart from its size), ``[convolutional]`` (groups,
batch-norm, ``leaky``/``linear``), ``[shortcut]`` (linear), ``[route]`` (concatenation),
``[upsample]`` (nearest), ``[maxpool]`` (stride 1 with odd size, or size = stride),
``[dropout]`` (identity at inference) and ``[yolo]``. Anything else is a :class:`ModelError`
naming the section and its line.

Conventions follow Darknet (AlexeyAB's fork) and OpenCV's Darknet importer, against which the
conversion is checked (``tests/models/test_darknet.py``):

* ``pad=1`` means padding ``size // 2``; leaky slope 0.1; batch-norm epsilon 1e-6.
* ``[yolo]`` decodes to ``(cx, cy, w, h, objectness, class scores)`` per anchor, centre and
  size as fractions of the network input, class score = objectness x class probability, rows
  ordered (scale, y, x, anchor) as OpenCV returns them.
* The network sees the whole frame resized (no letterbox) to its input size, RGB, 0-1.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from streamcount.errors import ModelError

if TYPE_CHECKING:
    from streamcount.models.card import ModelCard

log = logging.getLogger(__name__)

#: the packaged cfg of Yolo-Fastest 1.1 "body" (dog-qiuqiu/Yolo-Fastest, public domain)
YOLO_FASTEST_BODY_CFG = Path(__file__).resolve().parent / "cfg" / "yolo-fastest-1.1_body.cfg"
LEAKY_SLOPE = 0.1
BN_EPS = 1e-6  # Darknet normalize_cpu and OpenCV; 1e-5 moves objectness by 2e-3


@dataclass(frozen=True)
class Section:
    """One ``[kind]`` block of a Darknet cfg with its ``key=value`` options."""

    kind: str
    options: tuple[tuple[str, str], ...]
    line: int

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.options:
            if k == key:
                return v
        return default

    def int(self, key: str, default: int | None = None) -> int:
        v = self.get(key)
        if v is None:
            if default is None:
                raise ModelError(f"darknet cfg line {self.line}: [{self.kind}] needs '{key}'")
            return default
        return int(v)

    def ints(self, key: str) -> list[int]:
        v = self.get(key)
        if v is None:
            raise ModelError(f"darknet cfg line {self.line}: [{self.kind}] needs '{key}'")
        return [int(x) for x in v.split(",") if x.strip()]


def parse_cfg(text: str) -> list[Section]:
    """Sections of a Darknet cfg (comments and blank lines skipped)."""
    sections: list[Section] = []
    kind, opts, start = None, [], 0
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            if kind is not None:
                sections.append(Section(kind, tuple(opts), start))
            kind, opts, start = line[1:-1].strip(), [], no
        elif "=" in line and kind is not None:
            k, v = line.split("=", 1)
            opts.append((k.strip(), v.strip()))
        else:
            raise ModelError(f"darknet cfg line {no}: cannot parse {raw.strip()!r}")
    if kind is not None:
        sections.append(Section(kind, tuple(opts), start))
    if not sections or sections[0].kind not in ("net", "network"):
        raise ModelError("darknet cfg: the first section must be [net]")
    return sections


class ConvBlock(nn.Module):
    """Darknet ``[convolutional]``: conv (+ batch-norm) + activation."""

    def __init__(self, cin: int, cout: int, size: int, stride: int, pad: int, groups: int,
                 batch_norm: bool, activation: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, size, stride, pad, groups=groups, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS) if batch_norm else None
        self.leaky = activation == "leaky"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.leaky_relu(x, LEAKY_SLOPE) if self.leaky else x


class YoloHead(nn.Module):
    """Darknet ``[yolo]``: decodes ``A x (5 + C)`` channels per cell to boxes (see module doc)."""

    def __init__(self, anchors: Sequence[tuple[float, float]], classes: int,
                 scale_x_y: float = 1.0) -> None:
        super().__init__()
        self.classes = classes
        self.scale_x_y = scale_x_y
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32),
                             persistent=False)

    def forward(self, x: torch.Tensor, net_h: int, net_w: int) -> torch.Tensor:
        n, _, h, w = x.shape
        a = self.anchors.shape[0]
        x = x.reshape(n, a, 5 + self.classes, h, w).permute(0, 3, 4, 1, 2)  # n, h, w, a, 5+C
        gy = torch.arange(h, dtype=x.dtype, device=x.device).reshape(1, h, 1, 1)
        gx = torch.arange(w, dtype=x.dtype, device=x.device).reshape(1, 1, w, 1)
        s = self.scale_x_y
        cx = (torch.sigmoid(x[..., 0]) * s - (s - 1) / 2 + gx) / w
        cy = (torch.sigmoid(x[..., 1]) * s - (s - 1) / 2 + gy) / h
        bw = torch.exp(x[..., 2]) * self.anchors[:, 0] / net_w
        bh = torch.exp(x[..., 3]) * self.anchors[:, 1] / net_h
        obj = torch.sigmoid(x[..., 4])
        cls = torch.sigmoid(x[..., 5:]) * obj.unsqueeze(-1)
        out = torch.cat([torch.stack([cx, cy, bw, bh, obj], -1), cls], -1)
        return out.reshape(n, h * w * a, 5 + self.classes)


class _Index(nn.Module):
    """Shortcut/route/upsample/maxpool/dropout: parameter-free, wired by layer index."""

    def __init__(self, kind: str, sources: Sequence[int] = (), size: int = 0,
                 stride: int = 1) -> None:
        super().__init__()
        self.kind, self.sources, self.size, self.stride = kind, tuple(sources), size, stride

    def forward(self, x: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
        if self.kind == "shortcut":
            return x + outputs[self.sources[0]]
        if self.kind == "route":
            parts = [outputs[i] for i in self.sources]
            return parts[0] if len(parts) == 1 else torch.cat(parts, 1)
        if self.kind == "upsample":
            return F.interpolate(x, scale_factor=float(self.stride), mode="nearest")
        if self.kind == "maxpool":
            pad = (self.size - 1) // 2 if self.stride == 1 else 0
            return F.max_pool2d(x, self.size, self.stride, pad)
        return x  # dropout


class DarknetNet(nn.Module):
    """A Darknet detector built from a parsed cfg; ``forward`` returns ``N x boxes x (5 + C)``.

    Input: float RGB ``N x 3 x H x W`` in 0-1, H and W multiples of :attr:`input_multiple`.
    """

    def __init__(self, sections: Sequence[Section]) -> None:
        super().__init__()
        net, body = sections[0], sections[1:]
        channels = [net.int("channels", 3)]
        self.default_size = (net.int("height", 416), net.int("width", 416))
        layers: list[nn.Module] = []
        out_ch: list[int] = []
        stride = 1
        strides: list[int] = []
        self.yolo_layers: list[int] = []
        for i, s in enumerate(body):
            cin = out_ch[-1] if out_ch else channels[0]

            def rel(j: int, i: int = i, s: Section = s) -> int:
                k = i + j if j < 0 else j
                if not 0 <= k < i:
                    raise ModelError(f"darknet cfg line {s.line}: layer index {j} out of range")
                return k

            if s.kind == "convolutional":
                size = s.int("size", 1)
                pad = size // 2 if s.int("pad", 0) else s.int("padding", 0)
                act = s.get("activation", "logistic")
                if act not in ("leaky", "linear"):
                    raise ModelError(f"darknet cfg line {s.line}: activation {act!r} is not "
                                     f"supported (leaky, linear)")
                cout, st = s.int("filters", 1), s.int("stride", 1)
                layers.append(ConvBlock(cin, cout, size, st, pad, s.int("groups", 1),
                                        bool(s.int("batch_normalize", 0)), act))
                stride *= st
            elif s.kind == "shortcut":
                if s.get("activation", "linear") != "linear":
                    raise ModelError(f"darknet cfg line {s.line}: shortcut activation must be "
                                     f"linear")
                src = rel(s.ints("from")[0])
                if out_ch[src] != cin:
                    raise ModelError(f"darknet cfg line {s.line}: shortcut adds {out_ch[src]} "
                                     f"to {cin} channels")
                layers.append(_Index("shortcut", [src]))
                cout = cin
            elif s.kind == "route":
                if s.get("groups") not in (None, "1"):
                    raise ModelError(f"darknet cfg line {s.line}: grouped route not supported")
                srcs = [rel(j) for j in s.ints("layers")]
                layers.append(_Index("route", srcs))
                cout = sum(out_ch[j] for j in srcs)
                stride = strides[srcs[0]]
            elif s.kind == "upsample":
                st = s.int("stride", 2)
                layers.append(_Index("upsample", stride=st))
                cout, stride = cin, stride // st
            elif s.kind == "maxpool":
                size, st = s.int("size", 1), s.int("stride", 1)
                if not ((st == 1 and size % 2 == 1) or size == st):
                    raise ModelError(f"darknet cfg line {s.line}: maxpool size {size} stride "
                                     f"{st} not supported")
                layers.append(_Index("maxpool", size=size, stride=st))
                cout, stride = cin, stride * st
            elif s.kind == "dropout":
                layers.append(_Index("dropout"))
                cout = cin
            elif s.kind == "yolo":
                mask = s.ints("mask")
                flat = [float(v) for v in (s.get("anchors") or "").split(",") if v.strip()]
                anchors = [(flat[2 * m], flat[2 * m + 1]) for m in mask]
                classes = s.int("classes", 1)
                if cin != len(mask) * (5 + classes):
                    raise ModelError(f"darknet cfg line {s.line}: yolo expects "
                                     f"{len(mask) * (5 + classes)} channels, gets {cin}")
                layers.append(YoloHead(anchors, classes, float(s.get("scale_x_y", "1"))))
                self.yolo_layers.append(i)
                self.classes = classes
                cout = cin
            else:
                raise ModelError(f"darknet cfg line {s.line}: section [{s.kind}] not supported")
            out_ch.append(cout)
            strides.append(stride)
        if not self.yolo_layers:
            raise ModelError("darknet cfg has no [yolo] layer")
        self.layers = nn.ModuleList(layers)
        # the coarsest scale decides the size multiple (upsample + route need exact halves)
        self.input_multiple = max(strides[i] for i in self.yolo_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net_h, net_w = x.shape[2], x.shape[3]
        outputs: list[torch.Tensor] = []
        dets: list[torch.Tensor] = []
        for layer in self.layers:
            if isinstance(layer, ConvBlock):
                x = layer(x)
            elif isinstance(layer, YoloHead):
                dets.append(layer(x, net_h, net_w))
            else:
                x = layer(x, outputs)
            outputs.append(x)
        return torch.cat(dets, 1)


def load_darknet_weights(net: DarknetNet, path: str | Path) -> None:
    """Read a Darknet ``.weights`` file into ``net`` (conv layers in cfg order).

    Per conv: bias (or BN beta), then with batch-norm gamma, running mean and running
    variance, then the weights; after a header of three int32 versions and a ``seen`` counter
    (int64 from version 0.2 on).
    """
    data = Path(path).read_bytes()
    major, minor, _rev = np.frombuffer(data[:12], dtype=np.int32)
    offset = 12 + (8 if major * 10 + minor >= 2 else 4)
    values = np.frombuffer(data[offset:], dtype=np.float32)
    pos = 0

    def take(t: torch.Tensor) -> None:
        nonlocal pos
        n = t.numel()
        if pos + n > values.size:
            raise ModelError(f"{path}: weights file too short for the cfg")
        t.data.copy_(torch.from_numpy(values[pos:pos + n].copy()).view_as(t))
        pos += n

    with torch.no_grad():
        for layer in net.layers:
            if not isinstance(layer, ConvBlock):
                continue
            if layer.bn is not None:
                take(layer.bn.bias)
                take(layer.bn.weight)
                take(layer.bn.running_mean)
                take(layer.bn.running_var)
            else:
                take(layer.conv.bias)
            take(layer.conv.weight)
    if pos != values.size:
        raise ModelError(f"{path}: {values.size - pos} values left over after the last conv "
                         f"layer: weights do not fit the cfg")
    log.debug("read %d values from %s", pos, path)


def darknet_from_files(cfg: str | Path, weights: str | Path | None = None) -> DarknetNet:
    """Build the network of ``cfg`` and, if given, load ``weights``; in eval mode."""
    net = DarknetNet(parse_cfg(Path(cfg).read_text()))
    if weights is not None:
        load_darknet_weights(net, weights)
    return net.eval()


#: provenance of the packaged ``yolo_fastest_body`` weights (written into its model card)
YOLO_FASTEST_BODY_CARD: dict[str, object] = {
    "training_data": "not stated by its authors",
    "licence": "YOLO LICENSE v2 (Darknet is public domain; 'do whatever you want')",
    "source": "dog-qiuqiu/Yolo-Fastest commit 96a2900, ModelZoo/yolo-fastest-1.1_body/ "
              "(yolo-fastest-1.1_body.cfg + .weights)",
    "recipe": "converted from Darknet by streamcount.models.darknet; not trained by streamcount",
}
#: detector defaults recorded in the card's ``extra`` (read by :mod:`streamcount.detect`)
DETECTOR_DEFAULTS: dict[str, object] = {
    "input_size": [416, 416],  # height, width: the whole frame resized, no letterbox
    "score_threshold": 0.4,
    "nms_iou": 0.45,
    "classes": ["body"],
}


def convert_darknet(cfg: str | Path, weights: str | Path, arch: str, name: str,
                    **card_fields: object) -> tuple[DarknetNet, ModelCard]:
    """Load Darknet ``cfg`` + ``weights`` for registry architecture ``arch`` with its card."""
    import hashlib

    from streamcount.models.card import ModelCard

    net = darknet_from_files(cfg, weights)
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    extra = dict(DETECTOR_DEFAULTS, source_sha256=digest)
    extra.update(card_fields.pop("extra", {}) or {})  # type: ignore[arg-type]
    card = ModelCard.for_arch(arch, name, extra=extra, **card_fields)  # type: ignore[arg-type]
    return net, card


if __name__ == "__main__":  # pragma: no cover - one-time conversion of the packaged weights
    import sys

    from streamcount.models.weights import load_state_checked, save_model
    from streamcount.models.registry import build

    cfg_path, weights_path, out_path = sys.argv[1:4]
    net_, card_ = convert_darknet(cfg_path, weights_path, "yolo_fastest_body",
                                  Path(out_path).stem, **YOLO_FASTEST_BODY_CARD)
    load_state_checked(build("yolo_fastest_body"), net_.state_dict(), out_path)
    print(save_model(out_path, net_, card_))
