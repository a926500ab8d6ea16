"""The simulator's page in headless Chromium: it loads cleanly, fetches nothing, its sliders
recompute the numbers and the charts, and its JavaScript model equals the Python one."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cachefleet.sim.model import simulate
from cachefleet.sim.params import KNOBS, Params, params_with
from cachefleet.sim.rings import ring_tables
from cachefleet.sim.scenarios.connections import connections

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Root in a container: no sandbox, and /tmp rather than a small /dev/shm; nothing that phones
# home, so the network log shows only what the page itself asks for.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1600",
)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim-page")
    result = subprocess.run(
        [sys.executable, "-m", "cachefleet", "sim", "--out", str(out), "--no-png"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return out / "index.html"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(
            "the browser test needs Debian's chromium and chromium-driver: "
            "`make test` installs them as root (apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="cachefleet-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def renders(driver: Any) -> int:
    return int(driver.execute_script("return document.body.dataset.renders || '0'"))


@pytest.fixture
def loaded(browser: Any, page: Path) -> Any:
    browser.get(page.as_uri())
    assert renders(browser) == 1, "the page did not compute its first result"
    browser.get_log("browser")  # start each test with an empty console
    return browser


def console_problems(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def path_of(driver: Any, chart: str, series: str) -> str:
    from selenium.webdriver.common.by import By

    selector = f'#chart-{chart} path[data-series="{series}"]'
    return str(driver.find_element(By.CSS_SELECTOR, selector).get_attribute("d"))


def page_params(driver: Any) -> Params:
    values = driver.execute_script("return Object.assign({}, window.cachefleetSim.params)")
    return Params(**values)


def test_the_page_loads_without_console_errors_and_fetches_nothing(
    browser: Any, page: Path
) -> None:
    import json

    browser.get_log("performance")
    browser.get(page.as_uri())
    assert renders(browser) == 1
    assert console_problems(browser) == []
    assert text(browser, "error") == ""  # the error banner stays hidden
    requested = [
        json.loads(entry["message"])["message"]["params"]["request"]["url"]
        for entry in browser.get_log("performance")
        if '"Network.requestWillBeSent"' in entry["message"]
    ]
    assert requested and all(url.startswith(("file://", "data:")) for url in requested)


def test_moving_a_slider_changes_the_numbers_and_the_chart(loaded: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    before_numbers = text(loaded, "out-connections-per_shard-0")
    before_curve = path_of(loaded, "connections", "client_side")
    assert before_numbers == "4,000"
    slider = loaded.find_element(By.ID, "knob-workers_per_pod")
    slider.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)  # 4 → 6 processes per pod
    assert renders(loaded) == 3
    assert text(loaded, "value-workers_per_pod") == "6"
    assert text(loaded, "out-connections-per_shard-0") == "6,000"
    assert path_of(loaded, "connections", "client_side") != before_curve
    # What the page shows is the Python model's figure for what the page now holds.
    expected = connections(page_params(loaded)).client_side_total
    assert text(loaded, "out-connections-total-0") == f"{expected:,.0f}"
    assert console_problems(loaded) == []


def test_a_capacity_slider_recomputes_with_the_ring_figures(loaded: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    assert text(loaded, "out-capacity-planned-0") == "20.0%"
    before = path_of(loaded, "capacity", "planned")
    loaded.find_element(By.ID, "knob-resize_to").send_keys(Keys.ARROW_RIGHT)  # 4 → 6 shards
    assert text(loaded, "out-capacity-planned-0") == "33.3%"  # a third must move
    assert text(loaded, "out-capacity-modulo-0") == "66.7%"
    assert path_of(loaded, "capacity", "planned") != before
    assert console_problems(loaded) == []


@pytest.mark.parametrize("knob", KNOBS, ids=lambda knob: knob.name)
def test_every_slider_reaches_both_ends_without_breaking_the_model(loaded: Any, knob) -> None:
    from selenium.webdriver.common.by import By

    slider = loaded.find_element(By.ID, f"knob-{knob.name}")
    for end in ("min", "max"):
        loaded.execute_script(
            "arguments[0].value = arguments[0][arguments[1]];"
            "arguments[0].dispatchEvent(new Event('input'));",
            slider,
            end,
        )
        value = page_params(loaded).as_dict()[knob.name]
        assert knob.minimum <= value <= knob.maximum
        assert not loaded.find_element(By.ID, "error").is_displayed()
    assert renders(loaded) == 3
    assert console_problems(loaded) == []


VARIANTS = [
    {},
    {"shards": "16", "outage_s": "200", "returns_with_data": "1", "pipeline": "16"},
    {"keys": "1e9", "zipf_s": "1.3", "key_ttl_s": "30", "resize_from": "8", "resize_to": "3"},
    {"app_pods": "20", "celebrity_rate": "400000", "step_seconds": "600", "grace_s": "0"},
    {"cutover_hit_ratio": "1", "request_rate": "20000000", "detection_s": "10", "shards": "2"},
]


def _close(python: Any, javascript: Any, where: str) -> None:
    if isinstance(python, dict):
        assert set(python) == set(javascript), where
        for key in python:
            _close(python[key], javascript[key], f"{where}.{key}")
    elif isinstance(python, list):
        assert len(python) == len(javascript), where
        for index, (a, b) in enumerate(zip(python, javascript, strict=True)):
            _close(a, b, f"{where}[{index}]")
    elif isinstance(python, bool) or python is None:
        assert python == javascript, where
    else:
        assert math.isclose(python, javascript, rel_tol=1e-9, abs_tol=1e-9), (
            f"{where}: Python {python!r}, JavaScript {javascript!r}"
        )


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: ",".join(o) or "defaults")
def test_the_page_computes_what_the_python_model_computes(
    loaded: Any, overrides: dict[str, str]
) -> None:
    params = params_with(overrides)
    rings = ring_tables([int(params.shards)], [int(params.resize_from), int(params.resize_to)])
    page_rings = loaded.execute_script("return window.cachefleetSim.data.rings")
    expected_rings = rings.to_json()
    for kind in ("failure", "resize"):
        for key, row in expected_rings[kind].items():
            _close(row, page_rings[kind][key], f"rings.{kind}.{key}")
    javascript = loaded.execute_script(
        "return CachefleetModel.simulate(arguments[0], window.cachefleetSim.data)",
        params.as_dict(),
    )
    _close(simulate(params, rings), javascript, "result")
