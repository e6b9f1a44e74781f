"""training.scale_test: bad input is one line and exit 2 (the measurement itself runs on real
data in tests/accuracy/test_scale_robustness.py)."""

from __future__ import annotations

from pathlib import Path

from training.scale_test import main


def test_missing_dataset_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "part_B/test_data/images/IMG_1.jpg" in err[0]
    assert not (tmp_path / "r.json").exists()


def test_val_of_measures_the_shb_images_of_a_checkpoints_holdout(tmp_path: Path, capsys) -> None:
    """``--val-of``: the SHB images of a checkpoint's hold-out, never a test image (the data
    here has no test split at all), each resized to every scale and counted."""
    import json

    from tests.training.synth import make_shanghaitech
    from tests.training.test_train import PTS, _cfg
    from training.scale_test import SCALES, holdout_images
    from training.train import train

    make_shanghaitech(tmp_path / "data", split="part_A/train_data", n=5, pts=PTS, h=64, w=80)
    train(_cfg(tmp_path, "data.train_split=part_A/train_data+part_B/train_data",
               "data.rule=adaptive"))
    ck = str(tmp_path / "run" / "last.pt")
    paths = holdout_images(ck, tmp_path / "data")
    assert len(paths) == 2 and all("part_B/train_data" in str(p) for p in paths)
    out = tmp_path / "scale.json"
    assert main(["--model", ck, "--data", str(tmp_path / "data"), "--val-of", ck,
                 "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["images"] == 2 and "hold-out" in res["split"]
    assert set(res["mean_abs_rel_change"]) == {str(s) for s in SCALES}
    assert "0.5x" in capsys.readouterr().out
