"""``streamcount engines``: build refuses cleanly without a GPU; list/clear work anywhere."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from streamcount.cli.main import main
from streamcount.engine.cuda import probe_cuda
from streamcount.engine.engine_cache import EngineCache, EngineKey
from streamcount.engine.tensorrt import probe_tensorrt

KEY = EngineKey(model_sha256="12" * 32, input_size=(536, 960), batch=(1, 4, 16),
                precision="fp16", gpu="NVIDIA H100 80GB HBM3", capability="9.0",
                runtime="torch_tensorrt=2.14.0 tensorrt=11.1.0 torch=2.14.0")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> EngineCache:
    monkeypatch.setenv("STREAMCOUNT_CACHE", str(tmp_path))
    return EngineCache()


def _fake_engine(cache: EngineCache, key: EngineKey, data: bytes = b"serialized engine") -> None:
    cache.build(key, lambda p: p.write_bytes(data))


@pytest.mark.skipif(probe_cuda().available and probe_tensorrt().available,
                    reason="TensorRT can run here")
def test_build_without_gpu_exits_2_with_one_line(cache: EngineCache, capsys) -> None:
    assert main(["engines", "build", "--precision", "fp16", "--input", "544x960"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("streamcount: error: TensorRT needs an NVIDIA GPU and "
                               "torch-tensorrt: ")
    assert "torch-tensorrt" in lines[0].split(": ", 2)[2]
    assert cache.records() == []


def test_build_argument_errors(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["engines", "build", "--batch", "8:4:16"])
    assert e.value.code == 2
    assert "MIN <= OPT <= MAX" in capsys.readouterr().err


def test_list_empty_then_with_engines(cache: EngineCache, capsys) -> None:
    assert main(["engines", "list"]) == 0
    assert capsys.readouterr().out.startswith("no engines in ")
    _fake_engine(cache, KEY)
    _fake_engine(cache, replace(KEY, input_size=(360, 640), precision="int8"))
    (cache.root / "deadbeef_1x1.ep").write_bytes(b"stray")  # a foreign file
    assert main(["engines", "list"]) == 0
    out = capsys.readouterr().out
    assert "536x960" in out and "1:4:16" in out and "NVIDIA H100" in out
    assert "int8" in out and "no-metadata" in out and "3 engine(s)" in out


def test_list_marks_corrupt_engines(cache: EngineCache, capsys) -> None:
    _fake_engine(cache, KEY)
    cache.engine_path(KEY).write_bytes(b"bit rot")
    main(["engines", "list"])
    assert capsys.readouterr().out.splitlines()[1].startswith("corrupt")


def test_clear_removes_everything(cache: EngineCache, capsys) -> None:
    _fake_engine(cache, KEY)
    _fake_engine(cache, replace(KEY, model_sha256="34" * 32))
    assert main(["engines", "clear"]) == 0
    assert "removed 2 engine(s)" in capsys.readouterr().out
    assert cache.records() == []
