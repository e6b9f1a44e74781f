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


def test_init_is_loaded_as_true_density_times_target_scale(tmp_path):
    """A .safetensors init holds true densities; a training checkpoint's own target_scale is
    divided out; either way the task's net outputs target_scale x density."""
    from streamcount.models.card import ModelCard
    from streamcount.models.csrnet import CSRNetStudent
    from streamcount.models.weights import save_model

    torch.manual_seed(0)
    src = CSRNetStudent(4).eval()
    f = tmp_path / "s.safetensors"
    save_model(f, src, ModelCard.for_arch("csrnet_1_4", "s"))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        ref = src(x)
        task = StudentTask("csrnet_1_4", init=str(f), target_scale=100.0)
        torch.testing.assert_close(task.net.eval()(x.contiguous()), ref * 100, rtol=1e-4,
                                   atol=1e-6)
    # a training checkpoint trained at scale 100, loaded into a task at scale 10
    ck = tmp_path / "last.pt"
    torch.save({"deploy_prefix": "net.", "config": {"data": {"target_scale": 100.0}},
                "model": {f"net.{k}": v for k, v in task.net.state_dict().items()}}, ck)
    net = CSRNetStudent(4)
    load_weights_into(net, ck, target_scale=10.0)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), ref * 10, rtol=1e-4, atol=1e-6)


class _Ones(torch.nn.Module):
    """A 'network' whose map is k per stride-8 cell: its count grows with the input's area."""

    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k * torch.ones(x.shape[0], 1, x.shape[2] // 8, x.shape[3] // 8)


def test_count_loss_is_the_squared_count_error_in_people_at_full_and_half_size():
    """target_scale 100; a crop of 32x32 with GT count 3. The map k=100 per cell gives 16 cells
    = 16 people at full size and 4 cells = 4 people on the half-size view: count loss
    (16-3)^2 + (4-3)^2, added to the pixel SSE with weight lambda_count."""
    x = torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8)
    y = torch.zeros(1, 1, 4, 4)
    y[0, 0, 1, 2] = 3.0
    for half, expect in ((False, 13.0 ** 2), (True, 13.0 ** 2 + 1.0)):
        task = StudentTask("csrnet_1_4", target_scale=100.0, lambda_count=0.5, count_half=half)
        task.net = _Ones(100.0)
        out = task(x, y)
        assert float(out["count"]) == pytest.approx(expect)
        assert float(out["total"]) == pytest.approx(float(out["gt"]) + 0.5 * expect)
        out["total"].backward()  # the half view is in the graph: it trains the network
        assert task.net.k.grad is not None and float(task.net.k.grad) > 0
    # lambda_count 0: the official loss, no count term
    assert set(StudentTask("csrnet_1_4")(x, y)) == {"total", "gt"}


def test_count_loss_trains_and_logs_and_is_refused_for_skt(tmp_path):
    from tests.training.test_train import _cfg

    s = train(_cfg(tmp_path, "task.lambda_count=1", "task.count_half=true"))
    assert s["global_it"] == 2
    head, *rows = (tmp_path / "run" / "train.csv").read_text().splitlines()
    assert head.endswith(",count") and rows and all(r.split(",")[-1] for r in rows)
    with pytest.raises(ConfigError, match="lambda_count"):
        train(_cfg(tmp_path / "skt", "task.kind=skt", "task.lambda_count=1"))


def test_routed_teacher_sends_each_sample_to_its_domains_teacher():
    """Per-domain SKT: sample i is taught by ``nets[domain[i]]``, outputs in batch order."""
    from training.tasks import RoutedTeacher

    torch.manual_seed(0)
    nets = [CSRNet().eval(), CSRNet().eval()]
    routed = RoutedTeacher(nets)
    x = torch.rand(3, 3, 32, 32)
    domain = torch.tensor([1, 0, 1])
    with torch.no_grad():
        dens, feats = routed.forward_features(x, domain)
        for i, d in enumerate(domain.tolist()):
            want_d, want_f = nets[d].forward_features(x[i:i + 1])
            torch.testing.assert_close(dens[i:i + 1], want_d)
            assert len(feats) == len(want_f)
            for got, want in zip(feats, want_f):
                torch.testing.assert_close(got[i:i + 1], want)
    with pytest.raises(ValueError, match="domain 2"):
        routed.forward_features(x, torch.tensor([0, 2, 1]))
    with pytest.raises(ValueError, match="one index per sample"):
        routed.forward_features(x, torch.tensor([0, 1]))


def test_skt_with_a_teacher_per_dataset_trains_and_checks_its_keys(tmp_path):
    """task.teachers: A crops go to A's teacher, B crops to B's; a dataset without a teacher
    (or a teacher for a dataset not trained on) is a ConfigError naming task.teachers; the
    teachers' weights stay out of the checkpoint, and the run resumes."""
    from streamcount.models.card import ModelCard
    from streamcount.models.weights import save_model
    from tests.training.synth import make_shanghaitech
    from tests.training.test_train import PTS, _cfg
    from training.checkpointing import load_checkpoint
    from training.tasks import SKTTask

    torch.manual_seed(0)
    files = {}
    for part in ("A", "B"):
        files[part] = tmp_path / f"teacher_{part}.safetensors"
        save_model(files[part], CSRNet(), ModelCard.for_arch("csrnet", f"t{part}"))
    make_shanghaitech(tmp_path / "data", split="part_A/train_data", n=5, pts=PTS, h=64, w=80)
    both = ["data.train_split=part_A/train_data+part_B/train_data", "data.rule=adaptive",
            "task.kind=skt", "data.crop.upscale=cubic", "data.crop.scale=[0.5, 2.0]"]
    a, b = "shanghaitech/part_A", "shanghaitech/part_B"
    with pytest.raises(ConfigError, match="task.teachers.*part_B"):
        train(_cfg(tmp_path, *both, f"task.teachers={{{a}: {files['A']}}}"))
    with pytest.raises(ConfigError, match="task.teachers.*part_C"):
        train(_cfg(tmp_path, *both, f"task.teachers={{{a}: {files['A']}, {b}: {files['B']}, "
                                    f"shanghaitech/part_C: {files['B']}}}"))
    with pytest.raises(ConfigError, match="task.teachers"):
        train(_cfg(tmp_path, *both, f"task.teacher={files['A']}",
                   f"task.teachers={{{a}: {files['A']}, {b}: {files['B']}}}"))
    teachers = f"task.teachers={{{a}: {files['A']}, {b}: {files['B']}}}"
    s = train(_cfg(tmp_path, *both, teachers, "task.adapter_init=lstsq"))
    assert s["global_it"] == 2
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert not [k for k in ck["model"] if k.startswith("teacher")]
    s = train(_cfg(tmp_path, *both, teachers, "run.max_iters=1"))
    assert s["global_it"] == 3
    # the task's forward needs the domains when routed
    task = SKTTask(teachers=[str(files["A"]), str(files["B"])])
    x = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    y = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="domain"):
        task(x, y)
    assert torch.isfinite(task(x, y, domain=torch.tensor([0, 1]))["total"])
