"""training.widen: a CSRNet teacher that computes exactly a trained student's density map."""

from __future__ import annotations

import pytest
import torch

from streamcount.models.csrnet import CSRNet, CSRNetStudent
from streamcount.models.weights import load_model
from training.widen import main as widen_main
from training.widen import widen_student


def _student(seed: int = 0) -> CSRNetStudent:
    torch.manual_seed(seed)
    s = CSRNetStudent(4)
    with torch.no_grad():  # positive-ish biases: keep ReLUs alive so the check is not vacuous
        for m in s.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.bias.uniform_(0.0, 0.05)
    return s.eval()


@pytest.mark.parametrize("spread", [0.0, 0.3])
def test_widened_teacher_computes_the_students_density_and_features(spread):
    s = _student()
    t = widen_student(s, spread=spread, seed=1)
    assert isinstance(t, CSRNet)
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        sd, sf = s.forward_features(x)
        td, tf = t.forward_features(x)
    assert sd.abs().sum() > 0
    torch.testing.assert_close(td, sd, rtol=1e-4, atol=1e-5)
    for a, b in zip(sf, tf, strict=True):  # teacher channel j copies student channel j % c
        c = a.shape[1]
        assert b.shape[1] == 4 * c
        for k in range(4):
            torch.testing.assert_close(b[:, k * c:(k + 1) * c], a, rtol=1e-4, atol=1e-5)


def test_unequal_split_factors_break_the_copies_symmetry():
    s = _student()
    x = torch.randn(1, 3, 32, 32)
    grads = {}
    for spread in (0.0, 0.3):
        t = widen_student(s, spread=spread, seed=1)
        t.train()
        t(x).sum().backward()
        g = t.frontend[0].weight.grad  # 64 filters: 4 copies of the student's 16
        grads[spread] = (g[:16] - g[16:32]).abs().max().item()
    assert grads[0.0] < 1e-6 * max(1.0, grads[0.3])  # equal split: copies get equal gradients
    assert grads[0.3] > 0  # unequal split: they can diverge


def test_spread_must_be_below_one():
    with pytest.raises(ValueError, match="spread"):
        widen_student(_student(), spread=1.0)


def test_cli_writes_a_teacher_model_file(tmp_path, capsys):
    from streamcount.models.card import ModelCard
    from streamcount.models.weights import save_model

    src = tmp_path / "student.safetensors"
    s = _student()
    save_model(src, s, ModelCard.for_arch("csrnet_1_4", "s"))
    out = tmp_path / "teacher.safetensors"
    assert widen_main([str(src), "--out", str(out), "--seed", "3"]) == 0
    net, card = load_model(out)
    assert card.arch == "csrnet" and "training.widen" in card.source
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(net(x), s(x), rtol=1e-4, atol=1e-5)
    capsys.readouterr()
    assert widen_main([str(tmp_path / "missing.safetensors"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("missing.safetensors") == 1 and len(err.strip().splitlines()) == 1
    assert widen_main([str(src), "--out", str(tmp_path / "no" / "dir" / "t.safetensors")]) == 0
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert widen_main([str(src), "--out", str(blocker / "t.safetensors")]) == 2
    assert "cannot write" in capsys.readouterr().err
