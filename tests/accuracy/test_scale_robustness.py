"""The shipped default counts a person as one whatever their size in pixels (accuracy issue,
item 4): SHB test images resized to 0.5x, 0.75x, 1.5x and 2x of native, counted through
streamcount's inference path with no downscaling (max side 4096); the mean absolute relative
change of the count against native stays within 10 % at each scale."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamcount.models.weights import PACKAGED_DIR
from training.scale_test import scale_changes

MAX_RELATIVE_CHANGE = 0.10


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="accuracy issue, item 4, not met yet: the shipped default "
                   "(A+B student, log-scale crops) changes its count by 14.0 % / 11.1 % / 14.3 % / "
                   "32.4 % at 0.5x / 0.75x / 1.5x / 2x (measured 3 Dec 2026, evening); strict, so a default that passes makes this fail "
                   "until the marker is removed")
def test_default_count_does_not_depend_on_person_size(shanghaitech: Path) -> None:
    mean = scale_changes(str(PACKAGED_DIR / "default.safetensors"), shanghaitech)
    print("mean |relative change| vs native:",
          ", ".join(f"{s}x {m:.1%}" for s, m in mean.items()))
    assert all(m <= MAX_RELATIVE_CHANGE for m in mean.values()), mean
