"""Parameter and FLOP counts of the architectures, cached so ``models list`` / ``models info``
need torch only the first time.

Counting builds the network on torch's ``meta`` device (:mod:`streamcount.models.flops`), and
importing torch costs more than a second. The counts depend only on the architecture code, so
they are stored in ``<cache>/arch-stats.json`` under a fingerprint of the files that define the
architectures (``streamcount/models/*.py`` and the packaged Darknet cfgs) and of the torch
version; any change to them recounts.

Example:
    >>> arch_params("csrnet_1_4")                                   # doctest: +SKIP
    1017681
    >>> round(arch_flops("csrnet_1_4", (576, 864)) / 1e9, 2)        # doctest: +SKIP
    13.09
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATS_FILE = "arch-stats.json"
#: input size (H, W) of the SKT README's ShanghaiTech-A FLOP and timing numbers
PAPER_INPUT_HW: tuple[int, int] = (576, 864)
_MODELS_DIR = Path(__file__).resolve().parent


@functools.cache
def code_fingerprint() -> str:
    """sha256 of the architecture definitions (and the torch version that counts them)."""
    from streamcount.engine.cache import package_version

    h = hashlib.sha256(package_version("torch").encode())
    files = sorted(_MODELS_DIR.glob("*.py")) + sorted((_MODELS_DIR / "cfg").glob("*"))
    for p in files:
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:24]


def _path() -> Path:
    from streamcount.engine.cache import cache_root

    return cache_root() / STATS_FILE


def _read() -> dict[str, Any]:
    try:
        data = json.loads(_path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("fingerprint") != code_fingerprint():
        return {}
    return data


def _write(data: dict[str, Any]) -> None:
    path = _path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError as e:  # a read-only cache only costs the recount next time
        log.debug("cannot write %s: %s", path, e)


def _cached(entry: str, compute: Any) -> Any:
    data = _read()
    values = data.get("values", {})
    if entry in values:
        return values[entry]
    value = compute()
    data = _read() or {"fingerprint": code_fingerprint(), "values": {}}
    data.setdefault("values", {})[entry] = value
    _write(data)
    return value


def _shape_only(arch: str) -> Any:
    import torch

    from streamcount.models.registry import build

    with torch.device("meta"):
        return build(arch)


def arch_params(arch: str) -> int:
    """Number of parameters of architecture ``arch`` (cached)."""
    def compute() -> int:
        from streamcount.models.flops import count_params

        return count_params(_shape_only(arch))
    return int(_cached(f"params:{arch}", compute))


def arch_flops(arch: str, input_hw: tuple[int, int]) -> int:
    """Paper-convention FLOPs of ``arch`` on one ``H x W`` image (cached per size)."""
    h, w = input_hw
    if h <= 0 or w <= 0:
        raise ValueError(f"input size must be positive, got {h}x{w}")

    def compute() -> int:
        from streamcount.models.flops import paper_flops

        return paper_flops(_shape_only(arch), input_hw)
    return int(_cached(f"flops:{arch}:{h}x{w}", compute))
