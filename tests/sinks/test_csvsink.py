"""counts.csv: header, one row per frame and region, whole frames flushed."""

from __future__ import annotations

import csv
from pathlib import Path

from streamcount.messages import RegionCounts
from streamcount.sinks.csvsink import CsvSink


def counts(index: int, values: dict[str, float], file: str | None = None) -> RegionCounts:
    return RegionCounts(camera="cam", index=index, pts_s=index / 25, wall_ts=0.0, counts=values,
                        file=file)


def test_rows_per_frame_and_region(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path / "counts.csv", ["door", "all"])
    sink.write(counts(0, {"door": 1.23456, "all": 10.0}))
    sink.write(counts(3, {"door": 0.0, "all": 7.5, "ignored": 99.0}))
    sink.close()
    text = (tmp_path / "counts.csv").read_text()
    assert text.splitlines() == [
        "frame,time_s,region,count",
        "0,0.000,door,1.235",
        "0,0.000,all,10.000",
        "3,0.120,door,0.000",
        "3,0.120,all,7.500",
    ]
    assert sink.rows == 4


def test_file_column_is_quoted_when_needed(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path / "c.csv", ["all"], with_file=True)
    sink.write(counts(0, {"all": 2.0}, file='a,b "c".jpg'))
    sink.write(counts(1, {"all": 3.0}, file="plain.png"))
    sink.close()
    with (tmp_path / "c.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["file"] for r in rows] == ['a,b "c".jpg', "plain.png"]
    assert list(rows[0]) == ["frame", "time_s", "region", "count", "file"]


def test_rows_are_visible_before_close(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    sink = CsvSink(path, ["all"], flush_s=0.0)
    assert path.read_text() == "frame,time_s,region,count\n"
    sink.write(counts(0, {"all": 1.0}))
    assert path.read_text().splitlines()[-1] == "0,0.000,all,1.000"
    sink.close()
    sink.close()  # idempotent


def test_method_column_follows_count(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path / "c.csv", ["all"], with_file=True, with_method=True)
    sink.write(RegionCounts(camera="cam", index=0, pts_s=0.0, wall_ts=0.0, counts={"all": 3.0},
                            file="a.png", method="detect"))
    sink.write(counts(1, {"all": 2.5}, file="b.png"))  # method not recorded: empty
    sink.close()
    assert (tmp_path / "c.csv").read_text().splitlines() == [
        "frame,time_s,region,count,method,file", "0,0.000,all,3.000,detect,a.png",
        "1,0.040,all,2.500,,b.png"]
