"""Weight files: safetensors with the model card in the header; model lookup by name or path."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from typing import TYPE_CHECKING

from safetensors import SafetensorError

from streamcount.errors import ModelError
from streamcount.models.card import ModelCard
from streamcount.models.registry import ARCHITECTURES, build

if TYPE_CHECKING:  # torch is imported where tensors are needed, not to read a card
    import torch
    from torch import nn

log = logging.getLogger(__name__)

CARD_KEY = "streamcount.card"
PACKAGED_DIR = Path(__file__).resolve().parent / "weights"
#: the packaged model used when ``--model`` is not given
DEFAULT_MODEL = "default"


def user_model_dir() -> Path:
    """Where imported models are stored (``$STREAMCOUNT_HOME/models``)."""
    home = os.environ.get("STREAMCOUNT_HOME")
    base = Path(home) if home else Path(os.environ.get(
        "XDG_DATA_HOME", Path.home() / ".local" / "share")) / "streamcount"
    return base / "models"


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """Digest of a state dict's tensors (names, shapes and bytes, in sorted key order)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_model(path: str | Path, net: nn.Module, card: ModelCard,
               dtype: torch.dtype | None = None) -> ModelCard:
    """Write ``net``'s weights and ``card`` (sha256 filled in) to a safetensors file.

    ``dtype`` (e.g. ``torch.float16``) stores floating-point tensors at that precision (half
    the size for large teachers); loading converts them back to the network's float32.
    """
    from safetensors.torch import save_file

    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
             .detach().cpu().contiguous() for k, v in net.state_dict().items()}
    card = card.with_(sha256=state_sha256(state))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={CARD_KEY: card.to_json()})
    return card


def read_card(path: str | Path) -> ModelCard:
    """The card stored in a weight file, without loading the tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{path}: not a streamcount model file ({e})") from None
    if CARD_KEY not in meta:
        raise ModelError(f"{path}: weight file has no streamcount model card")
    try:
        return ModelCard.from_json(meta[CARD_KEY])
    except (ValueError, TypeError, KeyError) as e:
        raise ModelError(f"{path}: corrupt model card ({e})") from None


def load_model(path: str | Path) -> tuple[nn.Module, ModelCard]:
    """Build the card's architecture and load the weights (shapes verified), in eval mode."""
    from safetensors.torch import load_file

    card = read_card(path)
    if card.arch not in ARCHITECTURES:
        raise ModelError(f"{path}: unknown architecture '{card.arch}' in model card")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ModelError(f"{path}: cannot read weights ({e})") from None
    net = build(card.arch)
    load_state_checked(net, state, str(path))
    net.eval()
    return net, card


def load_state_checked(net: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` strictly, with one-line errors naming missing/unexpected/mis-shaped keys."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        raise ModelError(f"{what}: weights do not fit the architecture: {'; '.join(parts)}")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ModelError(f"{what}: key {k} has shape {tuple(state[k].shape)}, "
                             f"architecture expects {tuple(v.shape)}")
    net.load_state_dict(state, strict=True)


def available_models() -> dict[str, Path]:
    """Named weight files: packaged ones, overridden by the user's imported ones."""
    found: dict[str, Path] = {}
    for d in (PACKAGED_DIR, user_model_dir()):
        if d.is_dir():
            for p in sorted(d.glob("*.safetensors")):
                found[p.stem] = p
    return found


def resolve_model(ref: str | None) -> Path:
    """Resolve ``--model``: a file path, an imported or packaged name, or an architecture name.

    An architecture name resolves to a named weight file with that architecture (the default
    model first).
    """
    ref = ref or DEFAULT_MODEL
    p = Path(ref).expanduser()
    if p.suffix or os.sep in ref:
        if not p.is_file():
            raise ModelError(f"model file not found: {ref}")
        return p
    models = available_models()
    if ref in models:
        return models[ref]
    if ref in ARCHITECTURES:
        ordered = sorted(models.items(), key=lambda kv: kv[0] != DEFAULT_MODEL)
        for _name, path in ordered:
            if read_card(path).arch == ref:
                return path
        raise ModelError(f"no weights for architecture '{ref}': import some with "
                         f"'streamcount models import FILE --arch {ref} --name NAME'")
    raise ModelError(f"unknown model '{ref}' (known: {', '.join(sorted(models)) or 'none'}; "
                     f"architectures: {', '.join(ARCHITECTURES)})")
