"""experiment.py end to end with tiny budgets (synthetic data; one slow run on real images)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.training.synth import make_shanghaitech
from training.experiment import format_table, main, run_experiment

PTS = np.array([[8.0 + 6 * i, 6.0 + 4 * (i % 9)] for i in range(12)])

TINY = ["data.crop.mode=fixed", "data.crop.crop_size=32", "data.crop.replicate=1",
        "data.val_images=2", "data.val_max_side=null", "run.batch_size=2",
        "run.progress=false", "run.threads=1"]


def test_three_models_same_budget_table(tmp_path, capsys):
    root = make_shanghaitech(tmp_path / "data", n=6, pts=PTS, h=64, w=80)
    args = ["--out", str(tmp_path / "exp"), "--iters", "2", "--eval-split", "part_B/train_data",
            "--max-side", "0", "--set", f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}",
            *TINY, "--teacher-set", "optim.lr=1e-5"]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].split()[:2] == ["model", "iters"]
    assert [ln.split()[0] for ln in lines[1:]] == ["teacher", "1/4", "1/4"]
    assert "SKT" in lines[3]
    for f in ("teacher", "student", "skt"):
        assert (tmp_path / "exp" / f"{f}.safetensors").is_file()
    assert (tmp_path / "exp" / "results.json").is_file()


@pytest.mark.slow
def test_real_handful_of_images_about_one_minute(shanghaitech, tmp_path):
    res = run_experiment(
        tmp_path / "exp", minutes=0.2, eval_split="part_B/test_data", eval_limit=3, max_side=256,
        overrides=[f"data.root={shanghaitech}", f"data.cache_dir={tmp_path / 'c'}",
                   "data.limit_train=4", "data.crop.mode=fixed", "data.crop.crop_size=64",
                   "data.crop.replicate=1", "data.val_images=2", "data.val_max_side=256",
                   "run.batch_size=2", "run.progress=false", "run.threads=2"],
        teacher_overrides=["optim.lr=1e-5"])
    assert len(res) == 3
    for r in res.values():
        assert r["iterations"] >= 1 and r["images"] == 3
        assert math.isfinite(r["mae"]) and math.isfinite(r["val"]["mae"])
    assert "student + SKT" in format_table(res)


def test_fine_tuning_experiment_from_one_trained_student(tmp_path, capsys):
    """--init: the teacher starts as the widened student, both students from the student, the SKT
    adapters fitted; the table's first row is the common starting point."""
    import torch

    from streamcount.models.card import ModelCard
    from streamcount.models.csrnet import CSRNetStudent
    from streamcount.models.weights import load_model, save_model

    root = make_shanghaitech(tmp_path / "data", n=6, pts=PTS, h=64, w=80)
    torch.manual_seed(0)
    init = tmp_path / "student.safetensors"
    save_model(init, CSRNetStudent(4), ModelCard.for_arch("csrnet_1_4", "student"))
    args = ["--out", str(tmp_path / "exp"), "--iters", "1", "--eval-split", "part_B/train_data",
            "--max-side", "0", "--init", str(init), "--set", f"data.root={root}",
            f"data.cache_dir={tmp_path / 'c'}", *TINY, "task.adapter_fit_batches=1",
            "--student-set", "data.target_scale=100"]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines[1:]] == ["start:", "teacher", "1/4", "1/4"]
    assert lines[1].split()[1:3] == ["student", "0"]
    widened, card = load_model(tmp_path / "exp" / "widened_teacher_init.safetensors")
    assert card.arch == "csrnet"
    src, _ = load_model(init)
    x = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        torch.testing.assert_close(widened(x), src(x), rtol=1e-4, atol=1e-5)
    assert main([*args[:2], "--iters", "1", "--init", str(tmp_path / "nope.safetensors")]) == 2
