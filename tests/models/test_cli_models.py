"""`streamcount models` sub-commands: list, info, import, export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from streamcount.cli.main import main
from streamcount.errors import ModelError
from streamcount.models.card import Metric, ModelCard
from streamcount.models.registry import ARCHITECTURES, build
from streamcount.models.weights import available_models, read_card, save_model, user_model_dir
from tests.models.test_importers import official_student_state, skt_checkpoint


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STREAMCOUNT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def student_ckpt(tmp_path: Path) -> Path:
    f = tmp_path / "epoch412_best_mae.pth.tar"
    torch.save(skt_checkpoint(official_student_state(ratio=5)), f)
    return f


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def archs_with_weights() -> set[str]:
    """Architectures that packaged or imported (readable) weight files provide."""
    archs = set()
    for path in available_models().values():
        try:
            archs.add(read_card(path).arch)
        except ModelError:
            continue
    return archs


def test_info_of_architecture(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "models", "info", "csrnet_1_4")
    assert code == 0
    info = json.loads(out)
    assert info["arch"] == "csrnet_1_4"
    assert info["params"] == 1_017_681
    assert info["input"] == "576x864"
    assert round(info["flops"] / 1e9, 2) == 13.09 == info["gflops"]
    if "csrnet_1_4" in archs_with_weights():  # e.g. the packaged default model
        assert info["card"]["arch"] == "csrnet_1_4"
    else:
        assert info["path"] is None and "card" not in info


def test_info_of_architecture_without_weights(capsys: pytest.CaptureFixture[str]) -> None:
    free = [a for a in ARCHITECTURES if a not in archs_with_weights()]
    code, out, _ = run_cli(capsys, "models", "info", free[0])
    info = json.loads(out)
    assert code == 0 and info["arch"] == free[0]
    assert info["path"] is None and "card" not in info


def test_info_input_size(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "models", "info", "csrnet", "--input", "2032x2912")
    assert code == 0
    info = json.loads(out)
    assert (info["input"], info["gflops"], info["params"]) == ("2032x2912", 2447.91, 16_263_489)


@pytest.mark.parametrize("bad", ["576", "576x", "axb", "0x10", "99999x10"])
def test_info_bad_input(capsys: pytest.CaptureFixture[str], bad: str) -> None:
    code, out, err = run_cli(capsys, "models", "info", "csrnet_1_4", "--input", bad)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and "--input" in err


def test_info_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "models", "info", "resnet50")
    assert code == 2
    assert err.startswith("streamcount: error: unknown model 'resnet50'")
    assert err.count("\n") == 1


def test_import_then_info_list_and_resolve(capsys: pytest.CaptureFixture[str],
                                           student_ckpt: Path, home: Path) -> None:
    assert "csrnet_1_5" not in archs_with_weights()
    code, out, err = run_cli(capsys, "models", "import", str(student_ckpt),
                             "--arch", "csrnet_1_5", "--name", "skt_b")
    assert code == 0, err
    stored = user_model_dir() / "skt_b.safetensors"
    assert stored.is_file() and stored.is_relative_to(home)
    assert str(stored) in out

    code, out, _ = run_cli(capsys, "models", "info", "skt_b", "--input", "288x432")
    info = json.loads(out)
    assert info["arch"] == "csrnet_1_5" and info["path"] == str(stored)
    assert info["card"]["source"] == student_ckpt.name
    assert len(info["card"]["extra"]["source_sha256"]) == 64
    assert info["input"] == "288x432"

    # an architecture name now resolves to the imported weights
    code, out, _ = run_cli(capsys, "models", "info", "csrnet_1_5")
    assert json.loads(out)["path"] == str(stored)

    code, out, _ = run_cli(capsys, "models", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["skt_b"]["arch"] == "csrnet_1_5" and rows["skt_b"]["path"] == str(stored)
    assert "csrnet_1_5" not in rows  # the architecture has weights now
    assert rows["csrnet"]["path"] is None and rows["csrnet"]["params"] == 16_263_489


def test_list_table(capsys: pytest.CaptureFixture[str]) -> None:
    card = ModelCard.for_arch("mcnn", "mcnn_b", training_data="SHB train",
                              metrics=(Metric("shanghaitech/part_B/test_data", 25.1, 43.6, 316),))
    save_model(user_model_dir() / "mcnn_b.safetensors", build("mcnn"), card)
    (user_model_dir() / "broken.safetensors").write_bytes(b"garbage")
    code, out, _ = run_cli(capsys, "models", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "ARCH", "PARAMS"]
    mcnn = next(ln for ln in lines if ln.startswith("mcnn_b "))
    assert "127,953" in mcnn and "SHB train" in mcnn and "25.1/43.6 shanghaitech/part_B" in mcnn
    assert any(ln.startswith("broken ") and "(unreadable)" in ln for ln in lines)
    for arch in set(ARCHITECTURES) - archs_with_weights():
        row = next(ln for ln in lines if ln.startswith(f"{arch} "))
        assert "no weights" in row


def test_import_errors(capsys: pytest.CaptureFixture[str], student_ckpt: Path,
                       tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "models", "import", str(tmp_path / "missing.pth"),
                           "--arch", "csrnet_1_4", "--name", "x")
    assert code == 2 and "checkpoint file not found" in err and err.count("\n") == 1

    code, _, err = run_cli(capsys, "models", "import", str(student_ckpt),
                           "--arch", "csrnet", "--name", "x")
    assert code == 2 and err.count("\n") == 1
    assert student_ckpt.name in err and "fit 'csrnet_1_5'" in err


def test_export_onnx_via_cli(capsys: pytest.CaptureFixture[str], student_ckpt: Path,
                             tmp_path: Path) -> None:
    assert main(["models", "import", str(student_ckpt), "--name", "s"]) == 0
    out_file = tmp_path / "out" / "s.onnx"
    code, out, err = run_cli(capsys, "models", "export", "s", "--format", "onnx",
                             "--out", str(out_file), "--exporter", "torchscript")
    assert code == 0, err
    sess = ort.InferenceSession(str(out_file), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == "tensor(uint8)"


def test_export_unknown_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "models", "export", "nope", "--out", str(tmp_path / "x.onnx"))
    assert code == 2 and "unknown model 'nope'" in err


def test_console_script_entry_point(tmp_path: Path) -> None:
    env_home = tmp_path / "sub_home"
    proc = subprocess.run([sys.executable, "-m", "streamcount", "models", "info", "mcnn",
                           "--input", "768x1024"], capture_output=True, text=True,
                          env={**os.environ, "STREAMCOUNT_HOME": str(env_home)},
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["params"] == 127_953 and info["input"] == "768x1024"
    assert not env_home.exists()  # read-only command
