"""The fp32 ONNX export of a model's deploy graph, cached: what every CPU backend reads.

Kept apart from the ONNX Runtime backend so that the OpenVINO backends load a cached export
without importing onnxruntime, onnx or torch (a warm start needs only the model card).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from streamcount.engine.cache import ArtefactCache, ArtefactKey, model_fingerprint, package_version
from streamcount.models.card import ModelCard
from streamcount.models.lazy import LazyNet, materialize

if TYPE_CHECKING:
    from torch import nn

MODEL_FILE = "model.onnx"
#: sha256 of the exported file, checked on every load (a truncated or corrupt export is rebuilt
#: without importing onnx, which costs 0.8 s)
DIGEST_FILE = "model.onnx.sha256"
#: exporter and opset of the cached fp32 ONNX (part of its cache key)
EXPORTER = "dynamo"


def default_threads() -> int:
    """Threads for one inference call: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _export(net: nn.Module | LazyNet, card: ModelCard, out: Path) -> None:
    """Export ``CountingNet(net, card)`` to ``out`` with :func:`streamcount.models.export
    .export_onnx` (which takes a weight file, so the weights pass through a temporary one)."""
    from streamcount.models.export import export_onnx
    from streamcount.models.weights import save_model

    with tempfile.TemporaryDirectory(prefix="streamcount-export-") as tmp, \
            contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        weights = Path(tmp) / "model.safetensors"
        save_model(weights, materialize(net), card)
        export_onnx(weights, out, exporter=EXPORTER)
    (out.parent / DIGEST_FILE).write_text(_file_sha256(out))


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def exported_onnx(net: nn.Module | LazyNet, card: ModelCard,
                  cache: ArtefactCache | None = None) -> Path:
    """The fp32 ONNX file of the deploy graph, exported once per model and cached (a cache hit
    needs only the card: a :class:`~streamcount.models.lazy.LazyNet` is never loaded)."""
    cache = cache or ArtefactCache()
    key = ArtefactKey(model=model_fingerprint(net, card), backend="onnx-export",
                      runtime=f"torch={package_version('torch')} onnx={package_version('onnx')}",
                      options=EXPORTER)

    def load(d: Path) -> Path:
        digest = d / DIGEST_FILE
        if digest.is_file():
            if digest.read_text().strip() != _file_sha256(d / MODEL_FILE):
                raise ValueError(f"{d / MODEL_FILE} does not match its recorded sha256")
        else:  # exported before digests were recorded: the full check, once
            import onnx

            onnx.checker.check_model(str(d / MODEL_FILE))
            digest.write_text(_file_sha256(d / MODEL_FILE))
        return d / MODEL_FILE

    return cache.load(key, lambda d: _export(net, card, d / MODEL_FILE), load)
