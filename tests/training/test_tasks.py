"""Tasks: loss dicts, teacher checkpoint loading (CSRNet-pytorch format), SKT needs a teacher."""

from __future__ import annotations

import pytest
import torch

from streamcount.errors import ConfigError, ModelError
from streamcount.models.csrnet import CSRNet
from training.config import load_config
from training.tasks import StudentTask, TeacherTask, load_weights_into
from training.train import train


def test_student_task_is_sum_mse_against_target():
    torch.manual_seed(0)
    task = StudentTask("csrnet_1_4")
    x = torch.randint(0, 255, (2, 3, 24, 16), dtype=torch.uint8)
    y = torch.rand(2, 1, 3, 2)
    out = task(x, y)
    pred = task.predict(x)
    assert set(out) == {"total", "gt"}
    assert float(out["gt"].detach()) == pytest.approx(float(((pred - y) ** 2).sum().detach()),
                                                      rel=1e-5)
    assert task.deploy_net() is task.net


def test_teacher_loads_csrnet_pytorch_checkpoint(tmp_path):
    src = CSRNet()
    state = {f"module.{k}": v for k, v in src.state_dict().items()}
    ckpt = tmp_path / "PartBmodel_best.pth.tar"
    torch.save({"epoch": 1, "arch": "x", "state_dict": state, "best_prec1": 9.0}, ckpt)
    task = TeacherTask("csrnet", init=str(ckpt))
    for k, v in src.state_dict().items():
        torch.testing.assert_close(task.net.state_dict()[k], v)
    bad = tmp_path / "bad.pth.tar"
    torch.save({"state_dict": {"frontend.0.weight": torch.zeros(1)}}, bad)
    with pytest.raises(ModelError, match="bad.pth.tar"):
        load_weights_into(CSRNet(), bad)


def test_skt_without_teacher_is_a_config_error(tmp_path):
    cfg = load_config(None, ["task.kind=skt", f"run.out_dir={tmp_path}",
                             "data.root=/nonexistent"])
    with pytest.raises(ConfigError, match="task.teacher"):
        train(cfg)
