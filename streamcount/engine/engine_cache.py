"""On-disk cache of compiled inference engines (TensorRT): build once, reuse, rebuild when stale.

An engine is only valid for the exact model, input size, batch range and precision it was built
for, and only on the GPU model and TensorRT / torch-tensorrt versions that built it. Each engine
lives in ``$STREAMCOUNT_CACHE/engines`` (default ``~/.cache/streamcount/engines``) as
``<slot>.<ext>`` with a metadata JSON ``<slot>.json`` beside it holding the full
:class:`EngineKey`, the engine's sha256 and build time.

The *slot* name covers what selects an engine (model, input size, batch range, precision, GPU);
the runtime versions and calibration set are checked against the metadata instead. So after a
driver/TensorRT upgrade the same slot is rebuilt in place rather than accumulating dead engines,
and a *stale* engine (key mismatch), a *corrupt* one (hash mismatch, unreadable metadata, loader
error) or a *foreign* one (copied in without matching metadata) is rebuilt, never loaded.

Builds write to a temporary file that is renamed into place, then the metadata is written (the
commit marker); a per-slot ``fcntl`` lock keeps two processes from building the same engine at
once. Pure Python: the builder and loader are callables, so all of this is tested without a GPU.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from streamcount.engine.cache import cache_root

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: metadata layout version (bump when the JSON changes incompatibly)
META_VERSION = 1
#: engine file extension per serialisation format
FORMAT_SUFFIX: dict[str, str] = {"exported_program": ".ep", "torchscript": ".ts"}


def engines_root() -> Path:
    """``$STREAMCOUNT_CACHE/engines`` (default ``~/.cache/streamcount/engines``)."""
    return cache_root() / "engines"


def _tag(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine's validity depends on."""

    model_sha256: str  # the weights' digest (ModelCard.sha256)
    input_size: tuple[int, int]  # (height, width) of the model input
    batch: tuple[int, int, int]  # (min, opt, max) batch of the optimisation profile
    precision: str  # fp32 | fp16 | int8
    gpu: str  # device name, e.g. "NVIDIA H100 80GB HBM3"
    capability: str  # compute capability, e.g. "9.0"
    runtime: str  # e.g. "torch_tensorrt=2.14.0 tensorrt=11.1.0 torch=2.14.0"
    calibration: str = ""  # sha256 of the int8 calibration frames ("" otherwise)
    fmt: str = "exported_program"  # serialisation: exported_program | torchscript

    def __post_init__(self) -> None:
        if self.fmt not in FORMAT_SUFFIX:
            raise ValueError(f"unknown engine format {self.fmt!r}")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise ValueError(f"batch range must satisfy 1 <= min <= opt <= max, got {self.batch}")

    @property
    def slot(self) -> str:
        """File stem: model, size, batch range, precision and GPU (not versions)."""
        h, w = self.input_size
        lo, opt, hi = self.batch
        return (f"{self.model_sha256[:16] or 'nomodel'}_{h}x{w}_b{lo}-{opt}-{hi}_"
                f"{self.precision}_{_tag(self.gpu)}-sm{self.capability.replace('.', '')}")

    @property
    def suffix(self) -> str:
        return FORMAT_SUFFIX[self.fmt]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineKey:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown key fields {sorted(unknown)}")
        d = dict(d)
        d["input_size"] = tuple(d["input_size"])
        d["batch"] = tuple(d["batch"])
        return cls(**d)

    def differences(self, other: EngineKey) -> list[str]:
        """Names of the fields where ``other`` differs."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


@dataclass(frozen=True)
class EngineRecord:
    """One engine (or leftover) found in the cache directory."""

    slot: str
    engine_path: Path | None
    meta_path: Path | None
    key: EngineKey | None
    status: str  # ok | corrupt | no-metadata | no-engine
    size_bytes: int = 0
    built_at: float | None = None
    build_s: float | None = None
    reason: str = ""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class EngineCache:
    """Engines under :func:`engines_root` (or ``root``)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else engines_root()

    def engine_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.slot}{key.suffix}"

    def meta_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.slot}.json"

    # -- validity ------------------------------------------------------------------------------

    def check(self, key: EngineKey) -> str | None:
        """None if a valid engine for ``key`` is cached, else why not (for logs)."""
        engine, meta_path = self.engine_path(key), self.meta_path(key)
        if not engine.is_file() and not meta_path.is_file():
            return "not built yet"
        if not meta_path.is_file():
            return "engine without metadata (foreign or interrupted build)"
        try:
            meta = json.loads(meta_path.read_text())
            stored = EngineKey.from_dict(meta["key"])
            digest = meta["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"unreadable metadata ({e})"
        diff = stored.differences(key)
        if diff:
            return "stale: built for a different " + ", ".join(diff)
        if not engine.is_file():
            return "metadata without engine file"
        actual = file_sha256(engine)
        if actual != digest:
            return "corrupt: engine file does not match its recorded sha256"
        return None

    # -- build / load --------------------------------------------------------------------------

    def load_or_build(self, key: EngineKey, build: Callable[[Path], None],
                      load: Callable[[Path], _T]) -> tuple[_T, str]:
        """``(load(engine_path), how)`` with ``how`` = ``"cached"`` or ``"built: <reason>"``.

        ``build(path)`` must write the engine to ``path``. A cached engine that fails the
        :meth:`check` or fails to load is rebuilt once; a freshly built one that fails to load
        raises.
        """
        reason = self.check(key)
        load_failed = False
        if reason is None:
            try:
                return load(self.engine_path(key)), "cached"
            except Exception as e:  # noqa: BLE001 - any loader failure means "rebuild"
                reason = f"cached engine failed to load ({_first_line(e)})"
                load_failed = True
        with self._lock(key):
            # another process may have built it while we waited for the lock
            if not load_failed and self.check(key) is None:
                return load(self.engine_path(key)), "cached"
            log.info("building engine %s: %s", key.slot, reason)
            self._build_locked(key, build)
        return load(self.engine_path(key)), f"built: {reason}"

    def build(self, key: EngineKey, build: Callable[[Path], None]) -> Path:
        """(Re)build the engine for ``key`` unconditionally; its path."""
        with self._lock(key):
            self._build_locked(key, build)
        return self.engine_path(key)

    def _build_locked(self, key: EngineKey, build: Callable[[Path], None]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        engine, meta_path = self.engine_path(key), self.meta_path(key)
        # keep the real suffix last: some serialisers look at it
        tmp = engine.with_name(f".{key.slot}.{os.getpid()}.tmp{key.suffix}")
        t0 = time.perf_counter()
        try:
            build(tmp)
            if not tmp.is_file():
                raise RuntimeError(f"engine builder wrote no file at {tmp}")
            digest = file_sha256(tmp)
            meta_path.unlink(missing_ok=True)  # invalidate first: engine and meta change together
            os.replace(tmp, engine)
        finally:
            tmp.unlink(missing_ok=True)
        meta = {"version": META_VERSION, "key": key.to_dict(), "engine": engine.name,
                "sha256": digest, "bytes": engine.stat().st_size, "built_at": time.time(),
                "build_s": round(time.perf_counter() - t0, 3)}
        tmp_meta = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
        tmp_meta.write_text(json.dumps(meta, indent=1, sort_keys=True))
        os.replace(tmp_meta, meta_path)
        log.info("built engine %s in %.1f s", engine.name, meta["build_s"])

    @contextlib.contextmanager
    def _lock(self, key: EngineKey) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{key.slot}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- listing / clearing --------------------------------------------------------------------

    def records(self) -> list[EngineRecord]:
        """Every engine, metadata file and orphan in the cache, sorted by slot."""
        if not self.root.is_dir():
            return []
        slots: dict[str, dict[str, Path]] = {}
        for p in self.root.iterdir():
            if p.name.startswith(".") or not p.is_file():
                continue
            if p.suffix == ".json":
                slots.setdefault(p.stem, {})["meta"] = p
            elif p.suffix in FORMAT_SUFFIX.values():
                slots.setdefault(p.stem, {})["engine"] = p
        return [self._record(slot, parts) for slot, parts in sorted(slots.items())]

    def _record(self, slot: str, parts: dict[str, Path]) -> EngineRecord:
        engine, meta_path = parts.get("engine"), parts.get("meta")
        size = engine.stat().st_size if engine else 0
        if meta_path is None:
            return EngineRecord(slot, engine, None, None, "no-metadata", size,
                                reason="engine without metadata")
        try:
            meta = json.loads(meta_path.read_text())
            key = EngineKey.from_dict(meta["key"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            return EngineRecord(slot, engine, meta_path, None, "corrupt", size,
                                reason=f"unreadable metadata ({e})")
        rec = dict(built_at=meta.get("built_at"), build_s=meta.get("build_s"))
        if engine is None:
            return EngineRecord(slot, None, meta_path, key, "no-engine", 0, **rec,
                                reason="metadata without engine file")
        if file_sha256(engine) != meta.get("sha256"):
            return EngineRecord(slot, engine, meta_path, key, "corrupt", size, **rec,
                                reason="sha256 mismatch")
        return EngineRecord(slot, engine, meta_path, key, "ok", size, **rec)

    def clear(self, model_sha256: str | None = None) -> int:
        """Delete cached engines (all, or one model's); how many slots were removed."""
        removed = 0
        for rec in self.records():
            if model_sha256 and (rec.key is None or rec.key.model_sha256 != model_sha256):
                continue
            for p in (rec.engine_path, rec.meta_path):
                if p is not None:
                    p.unlink(missing_ok=True)
            (self.root / f".{rec.slot}.lock").unlink(missing_ok=True)
            removed += 1
        return removed


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
