"""The live capacity benchmark on a real gst-rtsp-server and the real service (small clip,
short windows: behaviour, not speed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamcount.bench.capacity import format_result
from streamcount.bench.live_capacity import LiveSettings, find_live_capacity, run_live_trial
from streamcount.bench.rtsp_server import (RtspServer, ffmpeg_missing, gst_rtsp_missing,
                                           make_h264_clip, repeat_clip)
from streamcount.cli.main import main as cli_main

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, vtest_avi: Path) -> RtspServer:
    for why in (ffmpeg_missing(), gst_rtsp_missing()):
        if why:
            pytest.skip(why)
    d = tmp_path_factory.mktemp("rtsp")
    clip = make_h264_clip(vtest_avi, d / "vtest_384.mp4", seconds=10, width=384, fps=25,
                          gop=50)
    srv = RtspServer(repeat_clip(clip, d / "vtest_384_long.mp4", 12)).start()
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def backend() -> object:
    from streamcount.engine.factory import create_backend
    from streamcount.models.weights import resolve_model

    return create_backend("openvino", resolve_model(None), threads=2)


def test_trial_runs_the_service_on_rtsp_cameras(server: RtspServer, backend: object) -> None:
    s = LiveSettings(url=server.url, fps=2, duration_s=3.0, warmup_s=0.5)
    t = run_live_trial(backend, 2, s)  # type: ignore[arg-type]
    assert t.streams == 2 and t.errors == 0
    assert t.fps_min > 0 and t.latency_p95_s is not None and t.latency_p95_s > 0
    assert t.passed == (t.fps_mean >= 0.95 * 2 and t.fps_min >= 0.85 * 2
                        and t.latency_p95_s <= 1.0)
    # the readers hand over more frames than 2 inferences/s take: the rest are dropped
    assert t.dropped is not None and t.dropped > 0 and t.decode_fps_min is not None
    assert set(t.methods) <= {"detect", "hybrid", "density"}  # counted with counting: auto
    # the same cameras against a latency limit no machine meets fail
    strict = run_live_trial(backend, 1, LiveSettings(url=server.url, fps=2, duration_s=2.0,  # type: ignore[arg-type]
                                                     warmup_s=0.5, max_p95_s=1e-6))
    assert not strict.passed and strict.fps_min > 0


def test_search_reports_every_trial(server: RtspServer, backend: object, tmp_path: Path) -> None:
    s = LiveSettings(url=server.url, fps=1, duration_s=2.0, warmup_s=0.5, counting="density")
    r = find_live_capacity(backend, s, server.clip, start=1, max_streams=2)  # type: ignore[arg-type]
    assert [t.streams for t in r.trials][:1] == [1] and r.frame_size == (288, 384)
    assert "counting density" in r.decode_note and "capacity:" in format_result(r)
    assert r.to_json()["trials"][0]["dropped"] is not None


def test_rtsp_capacity_needs_a_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench", "capacity", "--rtsp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--source" in err[0]
