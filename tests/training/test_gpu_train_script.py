"""scripts/gpu_train.sh end to end on the CPU with a tiny synthetic ShanghaiTech: the SHB
teacher is trained and exported as fp16 in parts that join back to the file, then the SKT
student from that teacher's filters is trained and exported; and the A+B student with a teacher
per dataset (the device runs, minus CUDA)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import torch

from streamcount.models.card import ModelCard
from streamcount.models.registry import build
from streamcount.models.weights import load_model, save_model
from tests.training.synth import PTS, make_shanghaitech

REPO = Path(__file__).resolve().parents[2]
TINY = ("run.device=cpu run.threads=1 data.workers=0 run.batch_size=2 data.val_images=2 "
        "data.crop.replicate=1 data.crop.crop_size=32 run.epochs=1 run.val_every=1 "
        "data.val_max_side=null task.adapter_fit_batches=1")


def _run(tmp_path: Path, images: int, mode: str = "train") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GPU_TRAIN_DATA": str(tmp_path / "data"), "OUT": str(tmp_path / "out"),
           "GPU_TRAIN_RUNS": str(tmp_path / "runs"), "GPU_TRAIN_PARTS": str(tmp_path / "parts"),
           "GPU_TRAIN_IMAGES": str(images), "TRAIN_OVERRIDES": TINY,
           "STREAMCOUNT_DENSITY_CACHE": str(tmp_path / "density"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "scripts/gpu_train.sh", mode], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def test_gpu_train_script_trains_teacher_then_student(tmp_path: Path) -> None:
    # the carried parts: images and ground truth in one, the fp16 init in another
    make_shanghaitech(tmp_path / "parts" / "gpu-train-1" / "shanghaitech", n=6, pts=PTS,
                      h=64, w=80)
    torch.manual_seed(0)
    save_model(tmp_path / "parts" / "gpu-train-2" / "csrnet_sha_fp16.safetensors",
               build("csrnet"), ModelCard.for_arch("csrnet", name="init"), dtype=torch.float16)
    r = _run(tmp_path, 6)
    assert r.returncode == 0, r.stdout + r.stderr
    out, runs = tmp_path / "out", tmp_path / "runs"
    teacher = runs / "gpu_teacher_shb" / "teacher_fp16.safetensors"
    parts = sorted(out.glob("teacher_fp16.part*"))
    assert parts and b"".join(p.read_bytes() for p in parts) == teacher.read_bytes()
    t_net, t_card = load_model(teacher)
    assert t_card.arch == "csrnet" and t_card.name == "gpu_teacher_shb"
    s_net, s_card = load_model(out / "gpu_skt_shb.safetensors")
    assert s_card.arch == "csrnet_1_4" and "SKT distillation" in s_card.recipe
    assert s_card.extra["validation"]["images"] == 2
    with tarfile.open(out / "csv.tgz") as tar:
        names = tar.getnames()
    assert sum(n.endswith("val.csv") for n in names) == 2
    assert (out / "teacher.log").is_file() and (out / "student.log").is_file()


def test_gpu_train_script_stops_when_a_part_is_missing(tmp_path: Path) -> None:
    make_shanghaitech(tmp_path / "parts" / "gpu-train-1" / "shanghaitech", n=3, pts=PTS)
    r = _run(tmp_path, 6)
    assert r.returncode == 2
    assert "holds 3 of the 6 train images" in r.stdout
    assert not (tmp_path / "runs").exists()


def test_gpu_train_script_trains_the_ab_student(tmp_path: Path) -> None:
    for part in ("part_A", "part_B"):
        make_shanghaitech(tmp_path / "parts" / "gpu-ab-1" / "shanghaitech",
                          split=f"{part}/train_data", n=5, pts=PTS, h=64, w=80)
    torch.manual_seed(0)
    for name in ("csrnet_sha_fp16", "gpu_teacher_shb_fp16"):
        save_model(tmp_path / "parts" / "gpu-ab-2" / f"{name}.safetensors", build("csrnet"),
                   ModelCard.for_arch("csrnet", name=name), dtype=torch.float16)
    r = _run(tmp_path, 10, "train-ab")
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "out"
    net, card = load_model(out / "gpu_skt_ab.safetensors")
    assert card.arch == "csrnet_1_4" and "SKT distillation" in card.recipe
    assert card.extra["validation"]["images"] == 4  # 2 held out of each split
    assert len(list(out.glob("best_*.pt"))) == 1
    with tarfile.open(out / "csv.tgz") as tar:
        assert sum(n.endswith("val.csv") for n in tar.getnames()) == 1
    # a missing teacher stops the run before training, naming the file
    (tmp_path / "data" / "gpu_teacher_shb_fp16.safetensors").unlink()
    for p in (tmp_path / "parts").glob("gpu-ab-2/*"):
        p.unlink()
    r = _run(tmp_path, 10, "train-ab")
    assert r.returncode == 2 and "gpu_teacher_shb_fp16.safetensors missing" in r.stdout
