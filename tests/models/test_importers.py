"""Importing published checkpoints, built here in the official formats (skt.md section 5)."""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import re
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from streamcount.errors import ModelError
from streamcount.models.card import Metric, ModelCard
from streamcount.models.csrnet import CSRNetStudent, SKTAdapters
from streamcount.models.importers import (UNKNOWN_PROVENANCE, fitting_architectures,
                                          import_checkpoint, normalise_keys)
from streamcount.models.registry import build
from streamcount.models.weights import load_model, save_model, user_model_dir
from tests.models.test_architectures import OFFICIAL_STUDENT_KEYS, TEACHER_KEYS


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STREAMCOUNT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def official_student_state(ratio: int = 4, seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """A student state dict as SKT_distill.py saves it: adapters interleaved, official order."""
    torch.manual_seed(seed)
    student = CSRNetStudent(ratio)
    adapters = SKTAdapters(student.tap_channels())
    merged = {**student.state_dict(), **adapters.state_dict()}
    assert set(merged) == set(OFFICIAL_STUDENT_KEYS)
    return OrderedDict((k, merged[k].clone()) for k in OFFICIAL_STUDENT_KEYS)


def skt_checkpoint(state: dict[str, torch.Tensor]) -> dict[str, object]:
    """The dict ``utils.save_checkpoint`` writes during SKT distillation."""
    return {"epoch": 412, "arch": "csrnet_student", "state_dict": state,
            "mae_best_prec1": torch.tensor(71.3), "mse_best_prec1": torch.tensor(114.9),
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]}}


def teacher_state(seed: int = 1) -> OrderedDict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = build("csrnet").state_dict()
    assert list(state) == TEACHER_KEYS
    return OrderedDict((k, v.clone()) for k, v in state.items())


def assert_weights(path: Path, arch: str, expected: dict[str, torch.Tensor]) -> ModelCard:
    net, card = load_model(path)
    assert card.arch == arch
    got = net.state_dict()
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert torch.equal(got[k], v), k
    return card


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ official SKT students

def test_official_student_checkpoint(tmp_path: Path, _home: Path) -> None:
    state = official_student_state()
    f = tmp_path / "epoch412_best_mae.pth.tar"
    torch.save(skt_checkpoint(state), f)

    out = import_checkpoint(f, "csrnet_1_4", "skt_shb")

    assert out == user_model_dir() / "skt_shb.safetensors"
    assert out.is_relative_to(_home)
    deploy = {k: v for k, v in state.items() if not k.startswith("transform")}
    card = assert_weights(out, "csrnet_1_4", deploy)
    assert card.name == "skt_shb"
    assert card.source == f.name
    assert card.extra["source_sha256"] == sha256(f)
    assert card.training_data == UNKNOWN_PROVENANCE
    assert card.licence == UNKNOWN_PROVENANCE
    assert (card.colour, card.output_stride, card.input_multiple) == ("rgb", 8, 8)


def test_bare_state_dict_with_dataparallel_prefix(tmp_path: Path) -> None:
    state = official_student_state(ratio=5)
    f = tmp_path / "student.pth"
    torch.save(OrderedDict((f"module.{k}", v) for k, v in state.items()), f)
    out = import_checkpoint(f, "csrnet_1_5", "s5")
    assert_weights(out, "csrnet_1_5",
                   {k: v for k, v in state.items() if not k.startswith("transform")})


def test_architecture_is_detected_when_not_given(tmp_path: Path) -> None:
    f = tmp_path / "student.pth"
    torch.save({"state_dict": official_student_state(ratio=3)}, f)
    out = import_checkpoint(f, None, "auto")
    assert load_model(out)[1].arch == "csrnet_1_3"


def test_legacy_pickle_with_metadata_falls_back_to_full_unpickling(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = official_student_state()
    ckpt = skt_checkpoint(state)
    ckpt["mae_best_prec1"] = np.float64(71.3)  # numpy scalars: refused by weights_only
    f = tmp_path / "checkpoint.pth.tar"
    torch.save(ckpt, f, _use_new_zipfile_serialization=False)
    with caplog.at_level(logging.WARNING, logger="streamcount.models.importers"):
        out = import_checkpoint(f, "csrnet_1_4", "legacy")
    assert "full unpickler" in caplog.text
    card = assert_weights(out, "csrnet_1_4",
                          {k: v for k, v in state.items() if not k.startswith("transform")})
    assert card.extra["source_format"] == "torch-legacy"


def test_zip_checkpoint_with_arbitrary_objects_is_refused(tmp_path: Path) -> None:
    ckpt = skt_checkpoint(official_student_state())
    ckpt["mae_best_prec1"] = np.float64(71.3)
    f = tmp_path / "modern.pth"
    torch.save(ckpt, f)
    with pytest.raises(ModelError, match=r"modern\.pth: checkpoint holds objects besides"):
        import_checkpoint(f, "csrnet_1_4", "modern")


class _Py2Str(bytes):
    """A Python 2 ``str``: pickled as SHORT_BINSTRING raw bytes."""


class _Py2Pickler(pickle._Pickler):  # type: ignore[misc,name-defined]
    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def _save_py2str(self, obj: bytes) -> None:
        self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + bytes(obj))
        self.memoize(obj)

    dispatch[_Py2Str] = _save_py2str


class _Py2PickleModule:
    """What ``torch.save`` needs of a pickle module, writing Python 2 style strings."""

    Pickler = _Py2Pickler

    @staticmethod
    def dump(obj: object, f: io.BufferedWriter, protocol: int = 2) -> None:
        _Py2Pickler(f, protocol=protocol).dump(obj)


def test_python2_pickle_with_latin1_strings(tmp_path: Path) -> None:
    state = official_student_state()
    ckpt = skt_checkpoint(state)
    ckpt["arch"] = _Py2Str("caf\xe9".encode("latin1"))  # not valid UTF-8
    f = tmp_path / "py2.pth.tar"
    torch.save(ckpt, f, pickle_module=_Py2PickleModule, pickle_protocol=2,
               _use_new_zipfile_serialization=False)
    with pytest.raises(UnicodeDecodeError):
        torch.load(f, weights_only=True)  # the file really needs the latin-1 retry
    out = import_checkpoint(f, "csrnet_1_4", "py2")
    assert_weights(out, "csrnet_1_4",
                   {k: v for k, v in state.items() if not k.startswith("transform")})


# ----------------------------------------------------------------------- CSRNet teacher

def test_csrnet_pytorch_teacher_checkpoint(tmp_path: Path) -> None:
    state = teacher_state()
    f = tmp_path / "PARTBmodel_best.pth.tar"
    torch.save({"epoch": 300, "arch": "vgg16", "state_dict": state, "best_prec1": 10.6,
                "optimizer": {"state": {}, "param_groups": []}}, f)
    out = import_checkpoint(f, "csrnet", "teacher_b")
    assert_weights(out, "csrnet", state)


def test_teacher_imported_as_student_names_the_keys_and_the_fitting_arch(
        tmp_path: Path) -> None:
    f = tmp_path / "teacher.pth.tar"
    torch.save({"state_dict": teacher_state()}, f)
    with pytest.raises(ModelError) as e:
        import_checkpoint(f, "csrnet_1_4", "wrong")
    msg = str(e.value)
    assert "\n" not in msg
    assert str(f) in msg
    assert "missing keys ['conv0_0.0.weight'" in msg
    assert "unexpected keys ['frontend.0.weight'" in msg
    assert "architecture 'csrnet_1_4'" in msg and "fit 'csrnet'" in msg
    assert not (user_model_dir() / "wrong.safetensors").exists()


def test_shape_mismatch_names_key_and_shapes(tmp_path: Path) -> None:
    f = tmp_path / "half.pth.tar"
    torch.save(skt_checkpoint(official_student_state(ratio=2)), f)
    with pytest.raises(ModelError, match=r"half\.pth\.tar: key conv0_0\.0\.weight has shape "
                                         r"\(32, 3, 3, 3\), architecture expects \(16, 3, 3, 3\)"
                                         r".*fit 'csrnet_1_2'"):
        import_checkpoint(f, "csrnet_1_4", "half")


def test_missing_key(tmp_path: Path) -> None:
    state = official_student_state()
    del state["conv4_5.0.bias"]
    f = tmp_path / "cut.pth"
    torch.save({"state_dict": state}, f)
    with pytest.raises(ModelError, match=r"cut\.pth: .*missing keys \['conv4_5\.0\.bias'\]"):
        import_checkpoint(f, "csrnet_1_4", "cut")


# ------------------------------------------------------------------------ MCNN (HDF5)

def write_mcnn_h5(path: Path, state: dict[str, torch.Tensor]) -> None:
    """crowdcount-mcnn's network.save_net layout: one dataset per tensor, ``DME.`` prefix."""
    with h5py.File(path, "w") as h5:
        for k, v in state.items():
            h5.create_dataset(f"DME.{k}", data=v.numpy())


def test_mcnn_h5(tmp_path: Path) -> None:
    torch.manual_seed(3)
    state = {k: torch.randn_like(v) for k, v in build("mcnn").state_dict().items()}
    f = tmp_path / "mcnn_custom.h5"
    write_mcnn_h5(f, state)
    out = import_checkpoint(f, "mcnn", "mcnn_custom")
    card = assert_weights(out, "mcnn", state)
    assert (card.colour, card.output_stride, card.input_multiple) == ("gray", 4, 4)
    assert card.extra["source_format"] == "hdf5"


def test_mcnn_h5_as_csrnet_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "m.h5"
    write_mcnn_h5(f, build("mcnn").state_dict())
    with pytest.raises(ModelError, match=r"m\.h5: .*architecture 'csrnet_1_4'.*fit 'mcnn'"):
        import_checkpoint(f, "csrnet_1_4", "m")


@pytest.mark.data
@pytest.mark.parametrize(("file", "part"), [("mcnn_shtechA_660.h5", "A"),
                                            ("mcnn_shtechB_110.h5", "B")])
def test_real_mcnn_weights(shared_data: Path, file: str, part: str) -> None:
    src = shared_data / "weights" / "mcnn" / file
    out = import_checkpoint(src, "mcnn", f"mcnn_{part.lower()}")
    net, card = load_model(out)
    with h5py.File(src, "r") as h5:
        for k, v in net.state_dict().items():
            np.testing.assert_array_equal(v.numpy(), h5[f"DME.{k}"][()])
    assert sum(v.numel() for v in net.state_dict().values()) == 127_953
    assert card.source == file
    assert card.extra["source_sha256"] == sha256(src)
    assert card.training_data == f"ShanghaiTech part {part} train (crowdcount-mcnn, svishwa)"
    assert card.licence.startswith("MIT")
    assert [m.dataset for m in card.metrics] == [f"shanghaitech/part_{part}/test_data"]


# ----------------------------------------------------------------------- safetensors

def test_streamcount_file_keeps_its_card(tmp_path: Path) -> None:
    net = build("csrnet_1_4")
    metric = Metric("shanghaitech/part_B/test_data", 9.5, 15.0, 316)
    src_card = ModelCard.for_arch("csrnet_1_4", "trained", training_data="SHB train",
                                  licence="Apache-2.0", metrics=(metric,))
    f = tmp_path / "trained.safetensors"
    save_model(f, net, src_card)
    out = import_checkpoint(f, None, "mine")
    card = assert_weights(out, "csrnet_1_4", net.state_dict())
    assert (card.name, card.training_data, card.licence, card.metrics) == (
        "mine", "SHB train", "Apache-2.0", (metric,))
    assert card.source == f.name
    assert card.extra["source_card_name"] == "trained"


def test_streamcount_file_of_another_arch_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "m.safetensors"
    save_model(f, build("mcnn"), ModelCard.for_arch("mcnn", "m"))
    with pytest.raises(ModelError, match=r"m\.safetensors: model card says architecture "
                                         r"'mcnn', not 'csrnet_1_4'"):
        import_checkpoint(f, "csrnet_1_4", "x")


def test_bare_safetensors_state(tmp_path: Path) -> None:
    state = official_student_state()
    f = tmp_path / "bare.safetensors"
    save_file(dict(state), str(f))
    out = import_checkpoint(f, "csrnet_1_4", "bare")
    card = assert_weights(out, "csrnet_1_4",
                          {k: v for k, v in state.items() if not k.startswith("transform")})
    assert card.extra["source_format"] == "safetensors"


# ----------------------------------------------------------------- bad files and names

@pytest.mark.parametrize(("content", "message"), [
    (b"", "not a checkpoint (empty file)"),
    (b"hello, this is text\n", "not a checkpoint"),
])
def test_not_a_checkpoint(tmp_path: Path, content: bytes, message: str) -> None:
    f = tmp_path / "x.pth"
    f.write_bytes(content)
    with pytest.raises(ModelError, match=re.escape(f"x.pth: {message}")):
        import_checkpoint(f, "csrnet_1_4", "x")


def test_pickle_of_something_else(tmp_path: Path) -> None:
    f = tmp_path / "list.pth"
    torch.save([1, 2, 3], f)
    with pytest.raises(ModelError, match=r"list\.pth: not a checkpoint \(holds a list"):
        import_checkpoint(f, "csrnet_1_4", "x")


def test_dict_without_tensors(tmp_path: Path) -> None:
    f = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "arch": "x"}, f)
    with pytest.raises(ModelError, match=r"meta\.pth: not a checkpoint \(no tensors"):
        import_checkpoint(f, "csrnet_1_4", "x")


def test_truncated_checkpoint(tmp_path: Path) -> None:
    f = tmp_path / "trunc.pth"
    torch.save({"state_dict": official_student_state()}, f)
    f.write_bytes(f.read_bytes()[: 3000])
    with pytest.raises(ModelError, match=r"trunc\.pth: "):
        import_checkpoint(f, "csrnet_1_4", "x")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="checkpoint file not found: .*nope.pth"):
        import_checkpoint(tmp_path / "nope.pth", "csrnet_1_4", "x")


def test_unknown_architecture(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown architecture 'resnet'"):
        import_checkpoint(tmp_path / "nope.pth", "resnet", "x")


@pytest.mark.parametrize("name", ["a.b", "../up", "", "-x", "sp ace"])
def test_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelError, match="invalid model name"):
        import_checkpoint(tmp_path / "nope.pth", "csrnet_1_4", name)


def test_existing_name_needs_overwrite(tmp_path: Path) -> None:
    f = tmp_path / "s.pth"
    torch.save({"state_dict": official_student_state(seed=1)}, f)
    import_checkpoint(f, "csrnet_1_4", "dup")
    with pytest.raises(ModelError, match="model 'dup' already exists"):
        import_checkpoint(f, "csrnet_1_4", "dup")
    torch.save({"state_dict": official_student_state(seed=2)}, f)
    out = import_checkpoint(f, "csrnet_1_4", "dup", overwrite=True)
    expected = {k: v for k, v in official_student_state(seed=2).items()
                if not k.startswith("transform")}
    assert_weights(out, "csrnet_1_4", expected)


def test_overrides_of_provenance(tmp_path: Path) -> None:
    f = tmp_path / "s.pth"
    torch.save({"state_dict": official_student_state()}, f)
    out = import_checkpoint(f, "csrnet_1_4", "prov", training_data="SHA train (SKT release)",
                            licence="research only")
    card = load_model(out)[1]
    assert (card.training_data, card.licence) == ("SHA train (SKT release)", "research only")


# ------------------------------------------------------------------------ key helpers

def test_normalise_keys_strips_prefixes_and_adapters() -> None:
    t = torch.zeros(1)
    got = normalise_keys({"module.DME.fuse.0.conv.weight": t, "module.DME.transform0_0.0.bias": t})
    assert list(got) == ["fuse.0.conv.weight"]


def test_fitting_architectures() -> None:
    state = normalise_keys(official_student_state(ratio=4))
    assert fitting_architectures(state) == ["csrnet_1_4"]
    assert fitting_architectures({"x": torch.zeros(1)}) == []
