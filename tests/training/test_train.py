"""train.py end to end on a tiny synthetic dataset: iterations, checkpoint, resume, export, eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from streamcount.errors import ConfigError
from streamcount.models.weights import load_model
from tests.training.synth import make_shanghaitech
from training.config import load_config
from training.evaluate import main as evaluate_main
from training.export import main as export_main
from training.checkpointing import deploy_network, deploy_state, load_checkpoint
from training.train import ResumableSampler, train

PTS = np.array([[8.0 + 6 * i, 6.0 + 4 * (i % 9)] for i in range(12)])


def _cfg(tmp_path, *extra):
    root = make_shanghaitech(tmp_path / "data", n=6, pts=PTS, h=64, w=80)
    return load_config(None, [
        f"data.root={root}", "data.train_split=part_B/train_data", "data.val_images=2",
        f"data.cache_dir={tmp_path / 'cache'}", "data.crop.mode=fixed",
        "data.crop.crop_size=32", "data.crop.scale=[0.5, 1.0]", "data.crop.replicate=1",
        "data.val_max_side=null", "task.kind=student", "task.arch=csrnet_1_4",
        "optim.lr=1e-4", "optim.schedule=cosine", "run.batch_size=2", "run.epochs=3",
        f"run.out_dir={tmp_path / 'run'}", "run.max_iters=2", "run.progress=false",
        "run.log_every=1", "run.val_every=1", "run.threads=1", *extra])


def test_train_two_iterations_checkpoint_and_resume(tmp_path):
    cfg = _cfg(tmp_path)
    s = train(cfg)
    assert s["stop_reason"] == "max_iters" and s["global_it"] == 2
    last = tmp_path / "run" / "last.pt"
    ck = load_checkpoint(last)
    assert ck["config"]["data"]["crop"]["crop_size"] == 32
    assert ck["config"]["run"]["out_dir"] == str(tmp_path / "run")
    assert ck["seeds"] == {"run": 0, "split": 0}
    # validation hold-out is disjoint from training and recorded
    assert len(ck["split"]["val"]) == 2 and not set(ck["split"]["val"]) & set(ck["split"]["train"])
    assert "optimizer" in ck and ck["optimizer_compact"]
    # 4 training images, batch 2 -> 2 iterations per epoch: epoch 0 done, validated
    assert (ck["epoch"], ck["step"]) == (1, 0)
    assert len(ck["history"]) == 1 and np.isfinite(ck["history"][0]["mae"])
    before = deploy_state(ck)
    s2 = train(cfg)  # automatic resume from last.pt
    assert s2["global_it"] == 4 and s2["epoch"] == 2
    ck2 = load_checkpoint(last)
    assert ck2["global_it"] == 4
    changed = any(not torch.equal(before[k], v) for k, v in deploy_state(ck2).items())
    assert changed
    rows = (tmp_path / "run" / "train.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,global_it") and len(rows) == 5
    best = sorted((tmp_path / "run").glob("best_*.pt"))
    assert best


def test_mid_epoch_stop_resumes_at_same_step(tmp_path):
    cfg = _cfg(tmp_path, "run.max_iters=1")
    train(cfg)
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (ck["epoch"], ck["step"], ck["global_it"]) == (0, 1, 1)
    train(cfg)
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (ck["epoch"], ck["step"], ck["global_it"]) == (1, 0, 2)


def test_export_loads_and_evaluates(tmp_path):
    cfg = _cfg(tmp_path)
    train(cfg)
    out = tmp_path / "m.safetensors"
    root = cfg.data.root
    assert export_main([str(tmp_path / "run" / "last.pt"), "--out", str(out), "--name", "tiny",
                        "--data", root, "--eval", "part_B/train_data", "--max-side", "0"]) == 0
    net, card = load_model(out)
    assert card.arch == "csrnet_1_4" and card.name == "tiny"
    assert card.metrics and card.metrics[0].images == 6
    assert "student" in card.recipe and card.extra["validation"]["images"] == 2
    assert not any(k.startswith("transform") for k in net.state_dict())
    res = tmp_path / "r.json"
    assert evaluate_main(["--model", str(out), "--data", root, "--split", "part_B/train_data",
                          "--max-side", "0", "--out", str(res)]) == 0
    r = json.loads(res.read_text())
    assert r["images"] == 6 and r["gt_count"] == "annotated points"
    assert r["mae"] == pytest.approx(card.metrics[0].mae, abs=1e-3)
    # the validation hold-out through streamcount's path matches the training-time validation
    last = str(tmp_path / "run" / "last.pt")
    assert evaluate_main(["--model", last, "--data", root, "--val-of", last, "--max-side", "0",
                          "--out", str(res)]) == 0
    r = json.loads(res.read_text())
    ck = load_checkpoint(last)
    assert r["images"] == 2
    assert r["mae"] == pytest.approx(ck["history"][-1]["mae"], rel=1e-3, abs=1e-3)


def test_sampler_matches_distributed_sampler():
    from torch.utils.data.distributed import DistributedSampler

    ds = list(range(11))
    for rank in (0, 1):
        ref = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=5)
        ref.set_epoch(3)
        mine = ResumableSampler(11, 5, rank, 2)
        mine.set_epoch(3)
        assert list(mine) == list(ref)
        mine.set_epoch(3, start=2)
        assert list(mine) == list(ref)[2:]


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="run.batch_sise"):
        load_config(None, ["run.batch_sise=2"])
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_export_recards_a_model_file(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    train(cfg)
    first = tmp_path / "m.safetensors"
    assert export_main([str(tmp_path / "run" / "last.pt"), "--out", str(first)]) == 0
    res = tmp_path / "r.json"
    assert evaluate_main(["--model", str(first), "--data", cfg.data.root, "--split",
                          "part_B/train_data", "--max-side", "0", "--out", str(res)]) == 0
    out = tmp_path / "renamed.safetensors"
    assert export_main([str(first), "--out", str(out), "--name", "renamed", "--metrics",
                        str(res), "--source", "trained elsewhere"]) == 0
    net0, card0 = load_model(first)
    net, card = load_model(out)
    assert card.name == "renamed" and card.source == "trained elsewhere"
    assert card.metrics[0].mae == pytest.approx(json.loads(res.read_text())["mae"], abs=1e-3)
    assert card.recipe == card0.recipe and card.sha256 == card0.sha256
    assert all(torch.equal(v, net0.state_dict()[k]) for k, v in net.state_dict().items())
    # a model file has no hold-out or training data to evaluate from
    assert export_main([str(first), "--out", str(out), "--eval", "part_B/train_data",
                        "--data", cfg.data.root]) == 2
    assert "--eval and --val need a training checkpoint" in capsys.readouterr().err


def test_target_scale_is_divided_out_at_export(tmp_path):
    cfg = _cfg(tmp_path, "data.target_scale=100", "data.border=renormalize")
    train(cfg)
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    raw = deploy_state(ck)
    net = deploy_network(ck)
    x = torch.rand(1, 3, 32, 40)
    from streamcount.models.registry import build

    scaled = build("csrnet_1_4")
    scaled.load_state_dict(raw)
    with torch.no_grad():
        torch.testing.assert_close(net(x), scaled.eval()(x) / 100, rtol=1e-4, atol=1e-6)
    assert ck["split"]["rule"] == "fixed_s15_renorm"


@pytest.mark.slow
def test_ddp_two_processes_under_torchrun(tmp_path):
    import subprocess
    import sys

    root = make_shanghaitech(tmp_path / "data", n=6, pts=PTS, h=64, w=80)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_port=29577", "-m", "training.train", f"data.root={root}",
           "data.val_images=2", f"data.cache_dir={tmp_path / 'c'}", "data.crop.mode=fixed",
           "data.crop.crop_size=32", "data.crop.replicate=2", "data.val_max_side=null",
           "run.batch_size=2", "run.epochs=2", f"run.out_dir={tmp_path / 'run'}",
           "run.progress=false", "run.threads=1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    # 4 images x 2 replicas = 8 samples, 2 processes x batch 2 -> 2 iterations per epoch
    assert (ck["epoch"], ck["global_it"]) == (2, 4)


def test_official_ratio_crops_batch_one_from_disk(tmp_path):
    cfg = _cfg(tmp_path, "data.crop.mode=ratio", "run.batch_size=1", "data.in_memory=false",
               "run.max_iters=3")
    s = train(cfg)
    assert s["global_it"] == 3
    with pytest.raises(Exception, match="batch_size must be 1"):
        train(_cfg(tmp_path, "data.crop.mode=ratio", "run.batch_size=2",
                   f"run.out_dir={tmp_path / 'other'}"))


def test_cpu_clock_budget_stops_on_cpu_time(tmp_path):
    """``run.clock=cpu``: the budget counts this process's CPU time (per thread), so a run is
    stopped by it, and its minutes are recorded in the checkpoint."""
    cfg = _cfg(tmp_path, "run.max_iters=null", "run.max_minutes=0.0001", "run.epochs=5",
               "run.clock=cpu", "run.threads=1")
    s = train(cfg)
    assert s["stop_reason"] == "max_minutes" and s["global_it"] == 1
    assert 0 < load_checkpoint(tmp_path / "run" / "last.pt")["train_minutes"] < 5


def test_time_budget_stop_validates_final_weights(tmp_path):
    cfg = _cfg(tmp_path, "run.max_iters=null", "run.max_minutes=0.0001", "run.epochs=5")
    s = train(cfg)
    assert s["stop_reason"] == "max_minutes" and s["global_it"] == 1
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (ck["epoch"], ck["step"]) == (0, 1)
    assert len(ck["history"]) == 1 and ck["history"][0]["global_it"] == 1
    assert list((tmp_path / "run").glob("best_e0000s1_mae*.pt"))


def test_two_train_splits_hold_out_each_and_need_one_rule(tmp_path):
    """``part_A/train_data+part_B/train_data``: one model on both; each split keeps its own
    hold-out; ids are qualified (both parts have ``train_data/IMG_1``); the official rules of A
    (adaptive) and B (sigma 15) differ, so ``data.rule`` must be set."""
    from streamcount.errors import ConfigError
    from training.evaluate import main as evaluate_main
    from training.train import held_out_items

    make_shanghaitech(tmp_path / "data", split="part_A/train_data", n=5, pts=PTS, h=64, w=80)
    both = "data.train_split=part_A/train_data+part_B/train_data"
    with pytest.raises(ConfigError, match="data.rule"):
        train(_cfg(tmp_path, both))
    s = train(_cfg(tmp_path, both, "data.rule=adaptive"))
    assert s["global_it"] == 2
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    val = ck["split"]["val"]
    assert len(val) == 4 and len(ck["split"]["train"]) == 7
    assert {v.split("/train_data/")[0] for v in val} == {"shanghaitech/part_A",
                                                          "shanghaitech/part_B"}
    held = held_out_items(ck, "shanghaitech", str(tmp_path / "data"))
    assert sorted(f"{it.dataset}/{it.image_id}" for it in held) == sorted(val)
    out = tmp_path / "val.json"
    assert evaluate_main(["--model", str(tmp_path / "run" / "last.pt"), "--data",
                          str(tmp_path / "data"), "--val-of", str(tmp_path / "run" / "last.pt"),
                          "--max-side", "0", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["images"] == 4
    assert {d: r["images"] for d, r in res["by_dataset"].items()} == {
        "shanghaitech/part_A": 2, "shanghaitech/part_B": 2}


def test_weight_average_is_validated_saved_and_resumed(tmp_path):
    """``optim.ema_decay``: the average is what validation and the best checkpoints see, the
    trained weights go on unaveraged, and a resumed run continues the same average."""
    from training.ema import WeightAverage

    cfg = _cfg(tmp_path, "optim.ema_decay=0.5", "optim.lr=1e-2", "run.keep_best=5")
    train(cfg)
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["ema"]["updates"] == 2 and ck["ema"]["decay"] == 0.5
    raw, avg = deploy_state(ck), ck["ema"]["avg"]
    assert any(not torch.allclose(raw[k].float(), avg[k]) for k in avg)  # lr 1e-2 moved them
    (best,) = sorted((tmp_path / "run").glob("best_*.pt"))
    saved = deploy_state(load_checkpoint(best))
    assert all(torch.allclose(saved[k].float(), avg[k]) for k in avg)
    train(cfg)  # resume: two more iterations blended into the same average
    ck2 = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck2["ema"]["updates"] == 4
    # swapping the average in and out leaves a network's own weights as they were
    net = deploy_network(ck2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    wa = WeightAverage(net, 0.9)
    wa.avg = {k: v + 1 for k, v in wa.avg.items()}
    with wa.swapped_in(net):
        assert all(torch.allclose(net.state_dict()[k], before[k] + 1) for k in wa.avg)
    assert all(torch.equal(net.state_dict()[k], before[k]) for k in before)
    with pytest.raises(ConfigError, match="optim.ema_decay"):
        _cfg(tmp_path, "optim.ema_decay=1.5")


def test_crops_on_people_train_and_need_fixed_crops(tmp_path):
    """``data.crop.on_people`` reaches the training crops (a run with it trains and records it);
    with ratio crops, which it does not apply to, the run stops naming the key."""
    s = train(_cfg(tmp_path, "data.crop.on_people=0.5"))
    assert s["global_it"] == 2
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["config"]["data"]["crop"]["on_people"] == 0.5
    with pytest.raises(ConfigError, match="data.crop.on_people"):
        train(_cfg(tmp_path, "data.crop.on_people=0.5", "data.crop.mode=ratio",
                   "run.batch_size=1", f"run.out_dir={tmp_path / 'ratio'}"))
