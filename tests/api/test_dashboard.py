"""The usage dashboard (/dashboard) in headless Chromium against `meterhouse serve`.

A person's path through the page: open it, enter a key, pick a customer, meters, a range in
some timezone and a window, read the cards, charts and table. Every number the page shows is
compared with the API's own answer to the same question (asked here over HTTP), the charts are
checked on their screenshots (each meter's bars are drawn in its colour), and the screenshots
are kept in MH_SCREENSHOT_DIR when it is set.

Needs Debian's `chromium` and `chromium-driver` (README, "Tests"); without them the tests are
skipped with that advice, unless MH_REQUIRE_CHROMIUM=1 (CI), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.api.data import ACME_KEY, T0, T1, acme, iso
from tests.api.server import running_server
from tests.support.png import colour_counts, hex_colour

pytestmark = pytest.mark.slow

INSTALL_HINT = ("headless Chromium is needed for the dashboard tests: "
                "apt-get install -y chromium chromium-driver "
                "(MH_REQUIRE_CHROMIUM=1 makes its absence a failure)")
WAIT_SECONDS = 30


def _require(condition: bool, why: str) -> None:
    if condition:
        return
    message = f"{why}; {INSTALL_HINT}"
    if os.environ.get("MH_REQUIRE_CHROMIUM") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    chromium = (os.environ.get("MH_CHROMIUM") or shutil.which("chromium")
                or shutil.which("chromium-browser"))
    driver_path = os.environ.get("MH_CHROMEDRIVER") or shutil.which("chromedriver")
    _require(bool(chromium), "chromium was not found")
    _require(bool(driver_path), "chromedriver was not found")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _require(False, "selenium is not installed (make venv installs requirements.lock)")
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1600", "--force-device-scale-factor=1",
                     "--lang=en-US"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def server(duckdb_warehouse):
    with running_server(["--warehouse", duckdb_warehouse.duckdb_path]) as http:
        yield http


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("MH_SCREENSHOT_DIR")
    path = Path(folder) if folder else tmp_path_factory.mktemp("dashboard-shots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class Dashboard:
    """The page, driven the way a person would use it."""

    def __init__(self, driver, base_url: str):
        self.driver = driver
        self.base_url = base_url

    def by_id(self, element_id: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.ID, element_id)

    def css(self, selector: str, root=None):
        from selenium.webdriver.common.by import By

        return (root or self.driver).find_elements(By.CSS_SELECTOR, selector)

    def open(self, query: str = "") -> None:
        self.driver.get(f"{self.base_url}/dashboard{query}")
        self.wait_for_state("idle", "connected", "ready", "error")

    def wait_for_state(self, *states: str) -> str:
        from selenium.webdriver.support.ui import WebDriverWait

        def current(driver):
            state = driver.execute_script("return document.body.dataset.state || ''")
            return state if state in states else False

        return WebDriverWait(self.driver, WAIT_SECONDS).until(current)

    def set_value(self, element_id: str, value: str) -> None:
        """Type into a text field (datetime fields get their value set, as a picker would)."""
        field = self.by_id(element_id)
        if field.get_attribute("type") == "datetime-local":
            self.driver.execute_script("arguments[0].value = arguments[1]", field, value)
        else:
            field.clear()
            field.send_keys(value)

    def connect(self, key: str) -> str:
        self.set_value("api-key", key)
        self.by_id("connect").click()
        return self.wait_for_state("connected", "error")

    def meter_choices(self) -> list[str]:
        return [box.get_attribute("value") for box in self.css("#meters input[type=checkbox]")]

    def query(self, customer: str, meters: list[str], start: str, end: str, window: str,
              timezone: str) -> str:
        from selenium.webdriver.support.ui import Select

        self.set_value("customer", customer)
        for box in self.css("#meters input[type=checkbox]"):
            if box.is_selected() != (box.get_attribute("value") in meters):
                box.click()
        self.set_value("start", start)
        self.set_value("end", end)
        Select(self.by_id("window")).select_by_value(window)
        self.set_value("timezone", timezone)
        self.driver.execute_script("document.body.dataset.state = 'submitted'")
        self.by_id("run").click()
        return self.wait_for_state("ready", "error")

    def table(self) -> list[dict[str, str]]:
        """The table as shown: one dict per row, cell texts as the browser renders them."""
        return self.driver.execute_script("""
            return [...document.querySelectorAll('#usage-table tbody tr')].map(row => ({
              meter: row.dataset.meter, timestamp: row.dataset.timestamp,
              shown_time: row.cells[0].innerText, usage: row.cells[2].innerText,
              events: row.cells[3].innerText, cost: row.cells[4].innerText}));""")

    def screenshot(self, path: Path) -> None:
        self.driver.save_screenshot(str(path))


def number(shown: str) -> Decimal | None:
    """A number as the page shows it ('1,234.5', '0 USD', '—') -> Decimal (None for '—')."""
    text = shown.strip().split(" ")[0].replace(",", "")
    return None if text == "—" else Decimal(text)


def api_answers(http, customer: str, meters: list[str], start: datetime, end: datetime,
                window: str) -> dict[str, dict]:
    """What the API says for the dashboard's question: per meter its usage item and costs."""
    types = {m["id"]: m["aggregation"]["type"]
             for m in http.get("/v1/meters?limit=1000", headers=acme()).json()["items"]}
    body = {"external_customer_id": customer, "start_time": iso(start), "end_time": iso(end)}
    if window:
        body["window_size"] = window
    answers: dict[str, dict] = {}
    for meter in meters:
        response = http.post("/v1/meter-usage/analytics", headers=acme(), json={
            **body, "meter_ids": [meter], "aggregation_type": types[meter]})
        assert response.status_code == 200, response.text
        answers[meter] = {"usage": response.json()["items"][0], "point_costs": defaultdict(Decimal),
                          "total_cost": Decimal(0)}
    events = http.post("/v1/events/analytics", headers=acme(), json=body)
    assert events.status_code == 200, events.text
    for item in events.json()["items"]:
        if item["meter_id"] in answers:
            answer = answers[item["meter_id"]]
            answer["total_cost"] += Decimal(item["total_cost"])
            for point in item["points"]:
                answer["point_costs"][point["timestamp"]] += Decimal(point["cost"])
    return answers


def check_numbers_match(page: Dashboard, answers: dict[str, dict], zone: str) -> int:
    """Cards and table show exactly the API's numbers; returns the number of points checked."""
    rows = page.table()
    checked = 0
    for meter, answer in answers.items():
        usage = answer["usage"]
        card = page.css(f'#summary .card[data-meter="{meter}"]')
        assert len(card) == 1 and card[0].is_displayed(), meter
        assert number(page.css(".total-usage", card[0])[0].text) == Decimal(usage["total_value"])
        assert int(page.css(".event-count", card[0])[0].text) == usage["event_count"]
        assert number(page.css(".total-cost", card[0])[0].text) == answer["total_cost"]

        mine = [r for r in rows if r["meter"] == meter]
        total = [r for r in mine if r["timestamp"] == ""]
        assert len(total) == 1
        assert number(total[0]["usage"]) == Decimal(usage["total_value"])
        assert int(total[0]["events"]) == usage["event_count"]
        assert number(total[0]["cost"]) == answer["total_cost"]

        points = {p["timestamp"]: p for p in usage["points"]}
        stamps = set(points) | set(answer["point_costs"])
        shown = {r["timestamp"]: r for r in mine if r["timestamp"]}
        assert set(shown) == stamps, meter
        for stamp, row in shown.items():
            at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(ZoneInfo(zone))
            assert row["shown_time"] == at.strftime("%Y-%m-%d %H:%M"), (meter, stamp)
            point = points.get(stamp)
            assert number(row["usage"]) == (Decimal(point["value"]) if point else None)
            assert (row["events"] == str(point["event_count"])) if point else row["events"] == "—"
            assert number(row["cost"]) == answer["point_costs"].get(stamp, Decimal(0))
            checked += 1
    return checked


def check_charts_drawn(page: Dashboard, answers: dict[str, dict], shots: Path, name: str) -> None:
    """Each meter's chart is visible, has one bar per point, and its bars show in its colour."""
    for meter, answer in answers.items():
        chart = page.css(f'#usage-charts .usage-chart[data-meter="{meter}"]')
        assert len(chart) == 1 and chart[0].is_displayed(), meter
        bars = page.css("svg rect", chart[0])
        assert len(bars) == len(answer["usage"]["points"]), meter
        colour = page.driver.execute_script(
            "return getComputedStyle(arguments[0]).getPropertyValue('--swatch')",
            page.css(f'#summary .card[data-meter="{meter}"]')[0])
        png = chart[0].screenshot_as_png
        (shots / f"{name}-{meter}.png").write_bytes(png)
        if any(Decimal(p["value"]) != 0 for p in answer["usage"]["points"]):
            assert colour_counts(png)[hex_colour(colour)] > 20, (meter, colour)


def test_dashboard_shows_exactly_what_the_api_answers(browser, server, shots):
    page = Dashboard(browser, str(server.base_url).rstrip("/"))
    page.open()
    assert page.by_id("api-key").is_displayed()
    assert not page.by_id("query-form").is_displayed()
    assert browser.title.startswith("Meterhouse")

    assert page.connect(ACME_KEY) == "connected"
    assert page.by_id("query-form").is_displayed()
    listed = [m["id"] for m in server.get("/v1/meters?limit=1000", headers=acme()).json()["items"]]
    assert page.meter_choices() == listed
    # the key lives in this tab only
    assert browser.execute_script("return sessionStorage.getItem('meterhouse.apiKey')") == ACME_KEY
    assert browser.execute_script("return localStorage.length") == 0

    # The range typed in New York time (it crosses the spring-forward night): the page must send
    # [T0, T1) in UTC, so its numbers equal the API's for exactly that range.
    zone = "America/New_York"
    local = ZoneInfo(zone)
    start, end = T0.astimezone(local), T1.astimezone(local)
    assert page.query("cust_1", listed, start.strftime("%Y-%m-%dT%H:%M"),
                      end.strftime("%Y-%m-%dT%H:%M"), "HOUR", zone) == "ready"
    page.screenshot(shots / "hourly-new-york.png")
    for section in ("summary", "usage-charts", "cost-chart", "usage-table"):
        assert page.by_id(section).is_displayed(), section
    assert not page.by_id("error").is_displayed()
    answers = api_answers(server, "cust_1", listed, T0, T1, "HOUR")
    assert check_numbers_match(page, answers, zone) > 300
    check_charts_drawn(page, answers, shots, "hourly")

    # Another customer, two meters, daily windows, Berlin time: the page shows the new answer
    # only (nothing left over from the previous one).
    zone = "Europe/Berlin"
    local = ZoneInfo(zone)
    meters = ["mtr_tokens", "mtr_storage"]
    start, end = T0.astimezone(local), T1.astimezone(local)
    assert page.query("cust_2", meters, start.strftime("%Y-%m-%dT%H:%M"),
                      end.strftime("%Y-%m-%dT%H:%M"), "DAY", zone) == "ready"
    page.screenshot(shots / "daily-berlin.png")
    assert sorted(c.get_attribute("data-meter") for c in page.css("#summary .card")) == sorted(
        meters)
    answers = api_answers(server, "cust_2", meters, T0, T1, "DAY")
    assert check_numbers_match(page, answers, zone) >= 5
    check_charts_drawn(page, answers, shots, "daily")

    # No window: totals only, and the charts say why they are empty.
    assert page.query("cust_1", ["mtr_calls"], "2024-03-08T00:00", "2024-03-13T00:00", "",
                      "UTC") == "ready"
    answers = api_answers(server, "cust_1", ["mtr_calls"], T0, T1, "")
    assert check_numbers_match(page, answers, "UTC") == 0
    assert len(page.table()) == 1
    assert "window size" in page.css("#usage-charts .empty")[0].text


def test_dashboard_explains_errors_and_forgets_the_key(browser, server, shots):
    page = Dashboard(browser, str(server.base_url).rstrip("/"))
    page.open()
    page.by_id("forget").click()

    assert page.connect("not-a-key") == "error"
    error = page.by_id("error")
    assert error.is_displayed() and "API key" in error.text
    assert not page.by_id("query-form").is_displayed()
    page.screenshot(shots / "bad-key.png")

    assert page.connect(ACME_KEY) == "connected"
    assert page.query("cust_nobody", ["mtr_calls"], "2024-03-08T00:00", "2024-03-13T00:00",
                      "DAY", "UTC") == "error"
    assert "cust_nobody" in page.by_id("error").text
    assert not page.by_id("results").is_displayed()

    assert page.query("cust_1", ["mtr_calls"], "2024-03-08T00:00", "2024-03-13T00:00", "DAY",
                      "Mars/Olympus") == "error"
    assert "Unknown timezone" in page.by_id("error").text

    # A reload in the same tab reconnects with the kept key and, with a customer in the
    # address, shows its usage straight away; "Forget" removes the key.
    page.open("?customer=cust_1&meters=mtr_calls&start=2024-03-08T00:00&end=2024-03-13T00:00"
              "&window=DAY&timezone=UTC")
    page.wait_for_state("ready")
    answers = api_answers(server, "cust_1", ["mtr_calls"], T0, T1, "DAY")
    assert check_numbers_match(page, answers, "UTC") >= 5
    page.by_id("forget").click()
    assert browser.execute_script("return sessionStorage.getItem('meterhouse.apiKey')") is None
    assert not page.by_id("results").is_displayed()
    assert page.by_id("api-key").get_attribute("value") == ""
