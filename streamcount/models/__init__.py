"""Model zoo: architectures, model cards, weight files.

The names below are imported on first use (PEP 562), so ``import streamcount.models.card``
and the other light modules do not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Metric": "streamcount.models.card", "ModelCard": "streamcount.models.card",
    "CountingNet": "streamcount.models.deploy",
    "ARCHITECTURES": "streamcount.models.registry", "arch_spec": "streamcount.models.registry",
    "build": "streamcount.models.registry",
    "load_model": "streamcount.models.weights", "resolve_model": "streamcount.models.weights",
    "save_model": "streamcount.models.weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamcount.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
