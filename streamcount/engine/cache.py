"""On-disk cache of derived model artefacts (exported ONNX, int8 models, compiled engines).

An artefact lives in its own directory ``<root>/<backend>/<digest>/`` where the digest covers
everything that determines its bytes (:class:`ArtefactKey`): the model's weights, the backend,
the runtime versions, the calibration frames and the build options. A directory is complete only
once its ``meta.json`` exists: builds go to a temporary sibling that is renamed into place, so an
interrupted build never leaves a half-written artefact that a later run would load.

The root is ``$STREAMCOUNT_CACHE`` or ``~/.cache/streamcount`` (``$XDG_CACHE_HOME`` honoured).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from streamcount.models.card import ModelCard

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

ENV_VAR = "STREAMCOUNT_CACHE"
META_FILE = "meta.json"

_T = TypeVar("_T")


def cache_root() -> Path:
    """The artefact cache directory: ``$STREAMCOUNT_CACHE`` or ``~/.cache/streamcount``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "streamcount"


@functools.cache
def package_version(name: str) -> str:
    """The installed version of distribution ``name`` (``"none"`` if absent), read from its
    metadata: the same string as ``module.__version__`` without importing the module (torch
    costs 1.2 s, nncf 2 s)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def model_fingerprint(net: nn.Module | Any, card: ModelCard) -> str:
    """sha256 identifying the deploy graph: the weights (``card.sha256``, or hashed from ``net``
    when the card has none) plus the preprocessing folded into the graph."""
    from streamcount.models.weights import state_sha256

    weights = card.sha256 or state_sha256(net.state_dict())
    prep = json.dumps([card.arch, card.colour, list(card.mean), list(card.std),
                       card.input_scale, card.output_stride])
    return hashlib.sha256(f"{weights}\n{prep}".encode()).hexdigest()


def frames_fingerprint(frames: Sequence[np.ndarray]) -> str:
    """sha256 of a sequence of frames (shapes, dtypes and pixels, in order)."""
    h = hashlib.sha256()
    for f in frames:
        a = np.ascontiguousarray(f)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ArtefactKey:
    """Everything that determines an artefact's bytes."""

    model: str  # model_fingerprint()
    backend: str  # e.g. "onnx-int8"
    runtime: str  # runtime versions, e.g. "onnxruntime=1.32.0 torch=2.13.0"
    calibration: str = ""  # frames_fingerprint() of the calibration frames, "" if none
    options: str = ""  # build options that change the artefact (quantisation settings)

    def digest(self) -> str:
        """Short hex digest naming the artefact's directory."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:24]


class ArtefactCache:
    """Artefact directories under :func:`cache_root` (or ``root``), built once and reused."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else cache_root()

    def directory(self, key: ArtefactKey) -> Path:
        """Where the artefact for ``key`` lives (complete only if :meth:`lookup` finds it)."""
        return self.root / key.backend / key.digest()

    def lookup(self, key: ArtefactKey) -> Path | None:
        """The complete artefact directory for ``key``, or None."""
        d = self.directory(key)
        return d if (d / META_FILE).is_file() else None

    def get_or_build(self, key: ArtefactKey, build: Callable[[Path], None]) -> Path:
        """The artefact directory for ``key``, calling ``build(tmpdir)`` to fill it if absent.

        ``build`` writes its files into the directory it is given; on success the directory is
        renamed into place (atomically; a concurrent builder of the same key simply wins).
        """
        found = self.lookup(key)
        if found is not None:
            log.debug("artefact cache hit: %s", found)
            return found
        final = self.directory(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        t0 = time.perf_counter()
        log.info("building the %s artefact once (cached under %s)", key.backend, self.root)
        try:
            build(tmp)
            meta = asdict(key) | {"built_at": time.time(),
                                  "build_s": round(time.perf_counter() - t0, 3),
                                  "files": sorted(p.name for p in tmp.iterdir())}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))
            if final.exists() and self.lookup(key) is None:  # an incomplete leftover
                shutil.rmtree(final, ignore_errors=True)
            try:
                tmp.rename(final)
            except OSError:
                if self.lookup(key) is None:
                    raise
                log.debug("artefact %s built concurrently; using the other copy", final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        log.info("built %s artefact in %.1f s: %s", key.backend, time.perf_counter() - t0, final)
        return final

    def invalidate(self, key: ArtefactKey) -> None:
        """Delete the artefact for ``key`` (e.g. found corrupt), so the next use rebuilds it."""
        d = self.directory(key)
        if d.exists():
            log.warning("removing unusable cached artefact %s", d)
            shutil.rmtree(d, ignore_errors=True)

    def load(self, key: ArtefactKey, build: Callable[[Path], None],
             load: Callable[[Path], _T]) -> _T:
        """``load(directory)`` of the artefact for ``key``, building it first if absent.

        A cached artefact that fails to load (truncated, corrupt, written by an incompatible
        runtime) is removed and rebuilt once; a freshly built one that fails raises.
        """
        found = self.lookup(key)
        if found is not None:
            try:
                return load(found)
            except Exception as e:  # noqa: BLE001 - any load failure means "rebuild"
                why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                log.warning("cached %s artefact %s does not load (%s); rebuilding",
                            key.backend, found, why)
                self.invalidate(key)
        return load(self.get_or_build(key, build))

    def _pointer(self, key: ArtefactKey) -> Path:
        ident = json.dumps([key.model, key.runtime, key.options]).encode()
        return self.root / key.backend / f"latest-{hashlib.sha256(ident).hexdigest()[:24]}.json"

    def remember(self, key: ArtefactKey) -> None:
        """Mark ``key`` as the latest calibrated artefact of its model, backend and runtime,
        for :meth:`recall` when a later run has no calibration frames."""
        p = self._pointer(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(key), sort_keys=True))
        tmp.replace(p)

    def recall(self, key: ArtefactKey) -> ArtefactKey | None:
        """The artefact last :meth:`remember` ed for ``key``'s model, backend, runtime and
        options (whatever its calibration), if it is still in the cache."""
        p = self._pointer(key)
        try:
            found = ArtefactKey(**json.loads(p.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return found if self.lookup(found) is not None else None
