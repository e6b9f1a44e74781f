"""Export a model's deploy graph (:class:`CountingNet`) to ONNX.

The exported graph takes ``uint8`` frames ``N x H x W x 3`` in BGR order (colour conversion and
normalisation inside) and returns the ``float32`` density ``N x H/s x W/s``; batch, height and
width are dynamic. The model card is stored in the ONNX metadata under ``streamcount.card``
(:func:`read_onnx_card`).

Exporter choice (torch 2.13): both exporters give dynamic H/W graphs whose outputs match eager
PyTorch for every registry architecture. The default is the ``torch.export``-based exporter
(``dynamo=True``, opset 18): it is PyTorch's default since 2.9, keeps the symbolic output
shape (``(height - 1) // 8 + 1`` for ceil-mode pooling), and the TorchScript exporter
(``dynamo=False``, opset 17) is deprecated. The latter remains selectable as a fallback; it is
several times faster to run.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from streamcount.errors import ModelError
from streamcount.models.card import ModelCard
from streamcount.models.deploy import CountingNet
from streamcount.models.weights import CARD_KEY, load_model, resolve_model

log = logging.getLogger(__name__)

EXPORTERS: dict[str, int] = {"dynamo": 18, "torchscript": 17}
INPUT_NAME = "frames"
OUTPUT_NAME = "density"


def _example(multiple: int) -> torch.Tensor:
    # batch 2 and sizes unequal to each other and > 1: torch.export specialises 0/1 and
    # duplicated sizes, which would freeze those axes
    return torch.zeros(2, 8 * multiple, 12 * multiple, 3, dtype=torch.uint8)


def export_onnx(model: str | Path, out: str | Path, *, exporter: str = "dynamo",
                opset: int | None = None) -> Path:
    """Export the model named or stored at ``model`` to ONNX file ``out``; return ``out``.

    Args:
        model: a weight file or a model / architecture name (see ``resolve_model``).
        out: the ``.onnx`` file to write (its folder is created).
        exporter: ``"dynamo"`` (default) or ``"torchscript"``.
        opset: ONNX opset; defaults to 18 (dynamo) or 17 (torchscript).
    """
    if exporter not in EXPORTERS:
        raise ModelError(f"unknown ONNX exporter '{exporter}' (choose from "
                         f"{', '.join(EXPORTERS)})")
    net, card = load_model(resolve_model(str(model)))
    graph = CountingNet(net, card).eval()
    example = _example(card.input_multiple)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    opset = opset or EXPORTERS[exporter]
    log.info("exporting %s (%s) to %s with the %s exporter, opset %d",
             card.name, card.arch, out, exporter, opset)
    # torch.onnx warns about every torchvision operator it cannot register: irrelevant here
    reg_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    old_level = reg_log.level
    reg_log.setLevel(logging.ERROR)
    try:
        _export(graph, example, out, exporter, opset)
    finally:
        reg_log.setLevel(old_level)
    _attach_card(out, card.to_json())
    return out


def _export(graph: CountingNet, example: torch.Tensor, out: Path, exporter: str,
            opset: int) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if exporter == "dynamo":
            from torch.export import Dim

            dims = {0: Dim("batch"), 1: Dim("height"), 2: Dim("width")}
            torch.onnx.export(graph, (example,), str(out), dynamo=True, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_shapes={"frames": dims}, verbose=False,
                              external_data=False)
        else:
            torch.onnx.export(graph, (example,), str(out), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch", 1: "height", 2: "width"},
                                            OUTPUT_NAME: {0: "batch", 1: "out_height",
                                                          2: "out_width"}})


def _attach_card(path: Path, card_json: str) -> None:
    """Store the model card in the ONNX file's metadata (key ``streamcount.card``)."""
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = CARD_KEY, card_json
    onnx.save(proto, str(path))


def read_onnx_card(path: str | Path) -> ModelCard:
    """The model card stored in an ONNX file written by :func:`export_onnx`."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 (onnx raises several unrelated types)
        raise ModelError(f"{path}: not an ONNX model ({type(e).__name__})") from None
    for entry in proto.metadata_props:
        if entry.key == CARD_KEY:
            return ModelCard.from_json(entry.value)
    raise ModelError(f"{path}: ONNX model has no streamcount model card")
