import json
import subprocess
import sys

import pytest
from cachefleet.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cachefleet", *args], capture_output=True, text=True, timeout=60
    )


def test_plan_json_has_the_documented_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ring", "plan", "--shards", "4", "--to", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for field in [
        "strategy",
        "moved_fraction",
        "ideal_moved_fraction",
        "modulo_moved_fraction",
        "spread_before",
        "spread_after",
        "shards",
    ]:
        assert field in report
    assert report["strategy"] == "planned"
    assert report["moved_fraction"] == pytest.approx(0.2, abs=1e-6)
    assert report["modulo_moved_fraction"] == pytest.approx(0.8)
    assert [s["name"] for s in report["shards"]] == [f"shard-{i}" for i in range(5)]
    assert {"name", "weight", "share_before", "share_after"} <= set(report["shards"][0])


def test_plan_table_names_the_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ring", "plan", "--shards", "10", "--to", "9", "--strategy", "classic"]) == 0
    out = capsys.readouterr().out
    assert "10 → 9 shards, classic ring" in out
    assert "keys that move" in out and "modulo hashing" in out


def test_remove_and_weight(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "ring",
        "plan",
        "--shards",
        "4",
        "--remove",
        "shard-1",
        "--weight",
        "shard-0=2",
        "--json",
    ]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    after = {s["name"]: s["share_after"] for s in report["shards"]}
    assert after["shard-1"] == 0
    assert after["shard-0"] == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shards", "4", "--remove", "shard-7"], "no shard named 'shard-7'"),
        (["--shards", "4", "--weight", "shard-0=0"], "above zero"),
        (["--shards", "4", "--weight", "shard-0=nan"], "finite"),
        (["--shards", "4", "--weight", "shard-9=2"], "no shard named 'shard-9'"),
        (["--shards", "4", "--weight", "shard-0"], "NAME=WEIGHT"),
        (["--shards", "0"], "at least 1"),
        (["--shards", "4", "--to", "0"], "at least one"),
        (["--shards", "4", "--tokens", "1000000"], "tokens per unit of weight"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args: list[str], message: str) -> None:
    result = run_cli("ring", "plan", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""
