"""``yijing report`` in-process on a data folder written by the real stores."""

from __future__ import annotations

import argparse
import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from yijing import report_cli

from .realdata import write_data_dir

DAY = ["--from", "2026-03-02", "--to", "2026-03-02"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data_dir(tmp_path_factory.mktemp("server") / "data")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="yijing")
    report_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["report", *argv])


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*argv: str, err: io.StringIO | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), err if err is not None else io.StringIO()
    status = report_cli.run(parse(*argv), out, err)
    return status, out.getvalue(), err.getvalue()


def test_table(data: Path) -> None:
    status, out, err = run("--data", str(data), "--unit", "t1", *DAY)
    assert status == 0 and err == ""  # no progress bar when stderr is not a terminal
    lines = out.splitlines()
    assert lines[0] == "深圳市 › 福田区 › 福田派出所 › 一队 (t1)  2026-03-02 (Asia/Shanghai)"
    t1 = next(line for line in lines if line.startswith("t1 "))
    assert t1.split() == [
        "t1", "一队", "team", "2", "2", "2.0", "25.0%", "0.0%", "50.0%", "1/2", "50.0%", "1",
    ]  # fmt: skip
    v1 = next(line for line in lines if line.startswith("v1 "))
    # on-duty, then the share of it on a phone's word alone (none here), then usage.
    assert v1.split()[:8] == ["v1", "张三", "t1", "1", "1.0", "50.0%", "0.0%", "100.0%"]
    # Chinese names take two columns: the columns after them still line up.
    header = lines[2]
    assert report_cli._width(t1[: t1.index("team")]) == header.index("level")


def test_csv_to_a_file_with_bom_and_volunteer_rows(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "units.csv"
    status, stdout, _ = run("--data", str(data), "--unit", "futian", *DAY, "--format", "csv",
                            "--out", str(out))  # fmt: skip
    assert status == 0 and stdout == ""
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw and b"\r\r\n" not in raw
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [(r["row"], r["unit_id"], r["on_duty_rate"]) for r in rows] == [
        ("total", "futian", "0.2500"),
        ("child", "s1", "0.2500"),
    ]
    status, stdout, _ = run("--data", str(data), "--unit", "t1", *DAY, "--format", "csv",
                            "--rows", "volunteers")  # fmt: skip
    assert status == 0 and not stdout.startswith("\ufeff")  # no BOM on a terminal
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert [(r["name"], r["usage_rate"], r["late_s"]) for r in rows] == [
        ("张三", "1.0000", "0"),
        ("李四", "0.0000", "3600"),
    ]


def test_json_is_the_apis_shape(data: Path) -> None:
    status, out, _ = run("--data", str(data), "--unit", "futian", *DAY, "--format", "json",
                         "--volunteers", "all")  # fmt: skip
    assert status == 0
    doc = json.loads(out)
    assert "张三" in out  # not \\u escapes
    assert doc["unit"]["unit_id"] == "futian"
    assert [u["unit_id"] for u in doc["path"]] == ["sz"]
    assert doc["totals"]["spot_check_answer_rate"] == 0.5
    assert [v["volunteer_id"] for v in doc["volunteers"]] == ["v1", "v2"]
    assert doc["volunteers"][0]["shifts"] == ["A"]


@pytest.mark.parametrize("name", ["rates.svg", "rates.png"])
def test_chart_file(data: Path, tmp_path: Path, name: str) -> None:
    chart = tmp_path / name
    status, _, _ = run("--data", str(data), "--unit", "futian", *DAY, "--chart", str(chart),
                       "--lang", "en")  # fmt: skip
    assert status == 0
    if name.endswith(".svg"):
        ET.fromstring(chart.read_bytes())
        assert b"On-duty rate" in chart.read_bytes()
    else:
        assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_progress_bar_on_a_terminal_and_quiet(data: Path) -> None:
    tty = Tty()
    status, _, _ = run("--data", str(data), "--unit", "t1", *DAY, err=tty)
    assert status == 0
    assert "recomputing" in tty.getvalue() and "shift" in tty.getvalue()
    tty = Tty()
    run("--data", str(data), "--unit", "t1", *DAY, "--quiet", err=tty)
    assert tty.getvalue() == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--unit", "nowhere", *DAY], "yijing report: unit: no unit 'nowhere'"),
        (["--unit", "t1", "--from", "2026-03-09", "--to", "2026-03-02"], "yijing report: to: "),
        (["--unit", "t1", "--from", "March", "--to", "2026-03-02"], "yijing report: from: "),
        (["--unit", "t1", *DAY, "--tz", "Nowhere/City"], "yijing report: tz: "),
        (["--unit", "t1", *DAY, "--chart", "x.gif"], "yijing report: chart: x.gif must end"),
    ],
)
def test_clear_errors_exit_2(data: Path, argv: list[str], message: str) -> None:
    status, out, err = run("--data", str(data), *argv)
    assert status == 2 and out == ""
    assert err.startswith(message)


def test_a_folder_that_is_not_a_servers(tmp_path: Path) -> None:
    status, _, err = run("--data", str(tmp_path), "--unit", "t1", *DAY)
    assert status == 2
    assert err.startswith("yijing report: data: no yijing.db in")
    assert list(tmp_path.iterdir()) == []  # and nothing was created there


def test_without_spot_checks_the_rate_is_empty(data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    copy.mkdir()
    for name in ("yijing.db", "org.db"):
        (copy / name).write_bytes((data / name).read_bytes())
    status, out, _ = run("--data", str(copy), "--unit", "t1", *DAY, "--format", "json")
    assert status == 0
    totals = json.loads(out)["totals"]
    assert totals["spot_checks_sent"] == 0 and totals["spot_check_answer_rate"] is None
    assert not (copy / "spotchecks.db").exists()


def test_help_has_a_worked_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    out = capsys.readouterr().out
    assert "example:" in out and "yijing report --data ./var/server --unit futian-s1" in out
