"""``streamcount count`` over several inputs: an inputs list, OUT/<name> folders, ``--shard``
(every input counted by exactly one shard) and bad values (one line, exit 2)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from streamcount.cli.inputs import output_name, plan, read_inputs_file
from streamcount.cli.main import main
from streamcount.sharding import Shard

pytestmark = pytest.mark.timeout(180)

VIDEOS = ("north", "south", "east", "west", "gate")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("videos")
    out = []
    for i, name in enumerate(VIDEOS):
        path = d / f"{name}.mp4"
        try:
            subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                            "-i", f"testsrc=size=64x48:rate=2,hue=h={40 * i}", "-t", "1",
                            "-pix_fmt", "yuv420p", str(path)], check=True, timeout=60)
        except FileNotFoundError:
            pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
        out.append(path)
    return out


def count(*args: str) -> int:
    return main(["count", *args, "--backend", "torch", "--max-side", "64", "--quiet"])


def test_plan_names_folders_and_shards(tmp_path: Path) -> None:
    items = ["/v/a.mp4", "/w/a.mp4", "/v/a-2.mkv", "rtsp://u:p@cam.local:554/live/1", "/v/b/"]
    jobs = plan(items, tmp_path)
    assert [j.name for j in jobs] == ["a", "a-2", "a-2-2", "cam.local_live_1", "b"]
    assert all(j.out_dir == tmp_path / j.name for j in jobs)
    assert plan(["/v/a.mp4"], tmp_path)[0].out_dir == tmp_path  # one input: OUT as before
    assert plan(["/v/a.mp4"], tmp_path, separate=True)[0].out_dir == tmp_path / "a"
    shards = [plan(items, tmp_path, shard=Shard(i, 3)) for i in range(3)]
    names = sorted(j.name for s in shards for j in s)
    assert names == sorted(j.name for j in jobs)
    assert output_name("rtsp://x/") == "x"


def test_read_inputs_file(tmp_path: Path) -> None:
    lst = tmp_path / "list" / "videos.txt"
    lst.parent.mkdir()
    lst.write_text("# recordings\na.mp4\n\n/abs/b.mp4  # comment\nrtsp://cam/x#frag\n")
    assert read_inputs_file(lst) == [str(lst.parent / "a.mp4"), "/abs/b.mp4",
                                     "rtsp://cam/x#frag"]


def test_shards_split_a_list_of_videos(videos: list[Path], model_file: Path,
                                       tmp_path: Path) -> None:
    lst = tmp_path / "videos.txt"
    lst.write_text("".join(f"{v}\n" for v in videos))
    out = tmp_path / "out"
    for i in range(2):
        assert count("--inputs", str(lst), "--shard", f"{i}/2", "--model", str(model_file),
                     "--fps", "1", "--out", str(out)) == 0
    done = sorted(p.parent.name for p in out.glob("*/summary.json"))
    assert done == sorted(VIDEOS)  # each exactly once: one folder per input
    for name in VIDEOS:
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["input"].endswith(f"{name}.mp4") and summary["frames_processed"] >= 1
    owned = [set(Shard(i, 2).select(VIDEOS)) for i in range(2)]
    assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == set(VIDEOS)


def test_several_positional_inputs_and_one_bad(videos: list[Path], model_file: Path,
                                               tmp_path: Path, capsys) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 2000)
    out = tmp_path / "out"
    rc = count(str(videos[0]), str(bad), str(videos[1]), "--model", str(model_file),
               "--fps", "1", "--out", str(out))
    assert rc == 2
    assert (out / "north" / "summary.json").is_file() and (out / "south" / "summary.json").is_file()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "broken" in err[0]
    assert err[1] == "streamcount: error: 1 of 3 inputs failed: broken"


@pytest.mark.parametrize("argv, message", [
    (["--shard", "2/2"], "--shard: shard index must be 0..1 for 2 replica(s), got 2"),
    (["--shard", "x"], "--shard: expected INDEX/COUNT"),
    (["--inputs", "/nonexistent/list.txt"], "cannot read the inputs list"),
    ([], "no input: give INPUT or --inputs FILE"),
])
def test_bad_values_are_one_line_and_exit_2(argv: list[str], message: str, videos: list[Path],
                                            model_file: Path, tmp_path: Path, capsys) -> None:
    inputs = [str(videos[0])] if argv and argv[0] == "--shard" else []
    assert count(*inputs, *argv, "--model", str(model_file), "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamcount: error: ") and message in err and "\n" not in err
