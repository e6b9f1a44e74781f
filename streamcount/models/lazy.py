"""A weight file whose network is built only when something needs its tensors.

Backends that run a cached artefact (the exported ONNX graph, an int8 model, a compiled
engine) need only the model card to find it: the card carries the weights' sha256, which keys
the cache. :func:`load_lazy` returns a :class:`LazyNet` in place of the ``nn.Module``, so a
warm start reads the card from the safetensors header and never imports torch; the first
attribute access (an export on a cache miss, the torch backend) loads the real network.

Example:
    >>> from streamcount.models.weights import resolve_model
    >>> net, card = load_lazy(resolve_model(None))      # doctest: +SKIP
    >>> net.loaded                                      # doctest: +SKIP
    False
    >>> materialize(net).training                       # doctest: +SKIP
    False
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamcount.models.card import ModelCard

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


class LazyNet:
    """Stands in for the ``nn.Module`` of a weight file until one of its attributes is used.

    Args:
        path: the safetensors weight file.
        card: its model card (already read from the header).
    """

    def __init__(self, path: str | Path, card: ModelCard) -> None:
        self.path = Path(path)
        self.card = card
        self._net: nn.Module | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the network was built (torch imported, weights read)."""
        return self._net is not None

    def module(self) -> nn.Module:
        """The real network (built and loaded on the first call; eval mode)."""
        with self._lock:
            if self._net is None:
                from streamcount.models.weights import load_model

                log.debug("loading the network of %s (a cached artefact was not enough)",
                          self.path)
                self._net = load_model(self.path)[0]
            return self._net

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("path", "card", "_net", "_lock"):
            raise AttributeError(name)
        return getattr(self.module(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"LazyNet({str(self.path)!r}, loaded={self.loaded})"


def materialize(net: nn.Module | LazyNet) -> nn.Module:
    """``net`` itself, or the real network behind a :class:`LazyNet`."""
    return net.module() if isinstance(net, LazyNet) else net


def load_lazy(path: str | Path) -> tuple[LazyNet, ModelCard]:
    """``(LazyNet, card)`` for a weight file: the card now, the tensors on first use."""
    from streamcount.errors import ModelError
    from streamcount.models.registry import ARCHITECTURES
    from streamcount.models.weights import read_card

    card = read_card(path)
    if card.arch not in ARCHITECTURES:
        raise ModelError(f"{path}: unknown architecture '{card.arch}' in model card")
    return LazyNet(path, card), card
