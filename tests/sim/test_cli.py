import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cachefleet.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cachefleet", "sim", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sim")
    result = run_cli("--out", str(out), "--set", "shards=16", "--json")
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


def test_it_writes_the_page_and_a_png_per_chart(written: tuple[Path, dict]) -> None:
    out, _ = written
    names = sorted(path.name for path in out.iterdir())
    assert names == sorted(
        ["index.html"]
        + [f"sim-{n}.png" for n in ("connections", "hop", "failure", "celebrity", "capacity")]
    )
    for png in out.glob("*.png"):
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 20_000  # a chart, not an empty canvas


def test_the_page_needs_no_network(written: tuple[Path, dict]) -> None:
    page = (written[0] / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"""<(script|link|img|iframe)[^>]*\s(src|href)=""", page, re.I)
    assert not re.search(r"""url\(|@import|fetch\(|XMLHttpRequest""", page)
    # The only URL is SVG's namespace name, which is an identifier, never fetched.
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}


def test_json_output_is_the_numbers_for_the_inputs_given(written: tuple[Path, dict]) -> None:
    numbers = written[1]
    assert set(numbers) == {"connections", "latency", "failure", "celebrity", "capacity"}
    assert numbers["connections"]["client_side_per_shard"] == 4000  # 1000 pods × 4 processes
    assert numbers["failure"]["strategies"]["modulo"]["moved_share"] == pytest.approx(15 / 16)
    assert "database_rate" not in numbers["capacity"]["strategies"]["warmup"]  # curves left out


def test_the_summary_names_each_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", "--out", str(tmp_path), "--no-png", "--set", "outage_s=30"]) == 0
    out = capsys.readouterr().out
    for words in (
        "connections per cache node",
        "extra hop",
        "node failure",
        "celebrity key",
        "a per-sidecar threshold of at most 90.8/s would protect it",
        "with cachefleet's Python client",
        "capacity change",
        f"wrote {tmp_path / 'index.html'}",
    ):
        assert words in out
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "shards"], "--set 'shards': expected NAME=VALUE"),
        (["--set", "outage=5"], "unknown parameter 'outage'"),
        (["--set", "shards=7"], "shards=7: choose one of"),
        (["--set", "request_rate=0"], "request_rate=0: must be between"),
    ],
)
def test_bad_input_is_one_line_and_status_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("--out", str(tmp_path / "out"), *args)
    assert result.returncode == 2
    assert result.stderr.startswith("cachefleet sim: error: ")
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()  # nothing written


def test_an_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli("--out", str(blocker / "sub"), "--no-png")
    assert result.returncode == 2
    assert f"cannot write to {blocker / 'sub'}" in result.stderr


def test_list_shows_every_input(capsys: pytest.CaptureFixture[str]) -> None:
    from cachefleet.sim.params import KNOBS

    assert main(["sim", "--list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == [knob.name for knob in KNOBS]


def test_without_matplotlib_it_says_how_to_get_the_pngs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as in the sidecar image
    assert main(["sim", "--out", str(tmp_path), "--set", "shards=4"]) == 2
    error = capsys.readouterr().err
    assert "PNG charts need matplotlib: pip install 'cachefleet[sim]' (or pass --no-png)" in error
    assert not list(tmp_path.iterdir())  # not half the outputs
    assert main(["sim", "--out", str(tmp_path), "--no-png", "--set", "shards=4"]) == 0
