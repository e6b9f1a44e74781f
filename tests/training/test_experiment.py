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
