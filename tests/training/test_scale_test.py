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
