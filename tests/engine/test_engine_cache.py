"""Engine cache: keyed, verified, rebuilt when stale/corrupt/foreign (a fake builder, no GPU)."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from streamcount.engine.engine_cache import EngineCache, EngineKey, engines_root

KEY = EngineKey(model_sha256="ab" * 32, input_size=(544, 960), batch=(1, 4, 8), precision="fp16",
                gpu="NVIDIA H100 80GB HBM3", capability="9.0",
                runtime="torch_tensorrt=2.14.0 tensorrt=11.1.0 torch=2.14.0")


class FakeBuilder:
    """Writes an 'engine' whose bytes name the key, counting builds."""

    def __init__(self) -> None:
        self.builds = 0

    def __call__(self, path: Path) -> None:
        self.builds += 1
        path.write_bytes(f"engine #{self.builds}".encode())


def read(path: Path) -> str:
    text = path.read_bytes().decode()
    if not text.startswith("engine #"):
        raise RuntimeError("not an engine")
    return text


def test_root_follows_streamcount_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STREAMCOUNT_CACHE", str(tmp_path / "c"))
    assert engines_root() == tmp_path / "c" / "engines"


def test_build_once_then_cached(tmp_path: Path) -> None:
    cache, build = EngineCache(tmp_path), FakeBuilder()
    out, how = cache.load_or_build(KEY, build, read)
    assert (out, how) == ("engine #1", "built: not built yet")
    out, how = cache.load_or_build(KEY, build, read)
    assert (out, how) == ("engine #1", "cached") and build.builds == 1
    meta = json.loads(cache.meta_path(KEY).read_text())
    assert meta["key"]["gpu"] == KEY.gpu and meta["key"]["batch"] == [1, 4, 8]
    assert cache.engine_path(KEY).name.endswith(
        "_544x960_b1-4-8_fp16_nvidia-h100-80gb-hbm3-sm90.ep")
    assert not list(tmp_path.glob(".*.tmp*"))


@pytest.mark.parametrize("field, value", [
    ("runtime", "torch_tensorrt=2.15.0 tensorrt=11.2.0 torch=2.15.0"),
    ("calibration", "cd" * 32),
])
def test_stale_engine_in_the_same_slot_is_rebuilt(tmp_path: Path, field: str, value: str) -> None:
    cache, build = EngineCache(tmp_path), FakeBuilder()
    cache.load_or_build(KEY, build, read)
    newer = replace(KEY, **{field: value})
    assert newer.slot == KEY.slot
    assert cache.check(newer) == f"stale: built for a different {field}"
    out, how = cache.load_or_build(newer, build, read)
    assert out == "engine #2" and how == f"built: stale: built for a different {field}"
    assert cache.check(newer) is None and cache.check(KEY) is not None


def test_other_gpu_or_size_uses_another_slot(tmp_path: Path) -> None:
    cache, build = EngineCache(tmp_path), FakeBuilder()
    cache.load_or_build(KEY, build, read)
    other_gpu = replace(KEY, gpu="NVIDIA L4", capability="8.9")
    other_size = replace(KEY, input_size=(360, 640))
    assert len({KEY.slot, other_gpu.slot, other_size.slot}) == 3
    cache.load_or_build(other_gpu, build, read)
    cache.load_or_build(other_size, build, read)
    assert build.builds == 3 and cache.check(KEY) is None
    assert [r.status for r in cache.records()] == ["ok"] * 3


def test_corrupt_engine_is_rebuilt_not_loaded(tmp_path: Path) -> None:
    cache, build = EngineCache(tmp_path), FakeBuilder()
    cache.load_or_build(KEY, build, read)
    cache.engine_path(KEY).write_bytes(b"engine #1 but truncated")
    assert cache.check(KEY).startswith("corrupt")
    [rec] = cache.records()
    assert rec.status == "corrupt"
    loaded: list[str] = []

    def spy(path: Path) -> str:
        loaded.append(path.read_bytes().decode())
        return read(path)

    out, how = cache.load_or_build(KEY, build, spy)
    assert out == "engine #2" and how.startswith("built: corrupt")
    assert loaded == ["engine #2"]  # the corrupt file was never handed to the loader


def test_foreign_engine_without_metadata_is_rebuilt(tmp_path: Path) -> None:
    cache, build = EngineCache(tmp_path), FakeBuilder()
    tmp_path.mkdir(exist_ok=True)
    cache.engine_path(KEY).write_bytes(b"engine #99 copied from elsewhere")
    assert cache.records()[0].status == "no-metadata"
    out, how = cache.load_or_build(KEY, build, read)
    assert out == "engine #1" and "without metadata" in how


def test_unreadable_metadata_is_rebuilt(tmp_path: Path) -> None:
    cache, build = EngineCache(tmp_path), FakeBuilder()
    cache.load_or_build(KEY, build, read)
    cache.meta_path(KEY).write_text("{not json")
    assert cache.check(KEY).startswith("unreadable metadata")
    assert cache.load_or_build(KEY, build, read)[0] == "engine #2"


def test_engine_that_fails_to_load_is_rebuilt_once(tmp_path: Path) -> None:
    cache, build = EngineCache(tmp_path), FakeBuilder()
    cache.load_or_build(KEY, build, read)
    calls: list[int] = []

    def flaky(path: Path) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("deserialisation failed: incompatible TensorRT version\ndetails")
        return read(path)

    out, how = cache.load_or_build(KEY, build, flaky)
    assert out == "engine #2"
    assert how == "built: cached engine failed to load (deserialisation failed: " \
                  "incompatible TensorRT version)"


def test_fresh_engine_that_fails_to_load_raises(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)

    def broken(path: Path) -> None:
        path.write_bytes(b"garbage")

    with pytest.raises(RuntimeError, match="not an engine"):
        cache.load_or_build(KEY, broken, read)


def test_failed_build_leaves_no_partial_files(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)

    def crash(path: Path) -> None:
        path.write_bytes(b"half an eng")
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError, match="builder crashed"):
        cache.load_or_build(KEY, crash, read)
    assert cache.records() == [] and not list(tmp_path.glob(".*.tmp*"))


def test_concurrent_builders_build_once(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    build = FakeBuilder()
    gate = threading.Barrier(4)
    results: list[str] = []

    def worker() -> None:
        gate.wait()
        results.append(EngineCache(tmp_path).load_or_build(KEY, build, read)[0])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == ["engine #1"] * 4 and build.builds == 1
    assert cache.check(KEY) is None


def test_clear_all_or_one_model(tmp_path: Path) -> None:
    cache, build = EngineCache(tmp_path), FakeBuilder()
    other = replace(KEY, model_sha256="ef" * 32)
    cache.load_or_build(KEY, build, read)
    cache.load_or_build(other, build, read)
    assert cache.clear(model_sha256=other.model_sha256) == 1
    assert [r.key for r in cache.records()] == [KEY]
    assert cache.clear() == 1 and cache.records() == []


def test_key_validation() -> None:
    with pytest.raises(ValueError, match="batch range"):
        replace(KEY, batch=(4, 2, 8))
    with pytest.raises(ValueError, match="engine format"):
        replace(KEY, fmt="onnx")
    assert EngineKey.from_dict(KEY.to_dict()) == KEY
