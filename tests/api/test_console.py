"""The console in a real browser: Debian's chromium, headless, driven by Playwright.

The stack is real: the private TimescaleDB and Mosquitto, an ingest worker with the alert
stage, the supervisor dispatching orders, and the API (with its live-stream bridge) on a
uvicorn server. A simulated lift traps passengers; the control room sees it arrive on
the board over the live stream and acknowledges it; every role logs in and lands on its
view; the inspectors' views and the owners' public page are opened. Screenshots go to
``test-artifacts/console/`` (kept by CI as artefacts, ignored by git).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import psycopg
import pytest
from playwright.sync_api import (
    Browser,
    FilePayload,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from alerts import store
from alerts.judge import Op
from alerts.notify import MqttSender, Notifier
from alerts.rules import Severity
from alerts.stage import AlertStage
from alerts.supervise import SupervisorService
from api.app import create_app
from api.auth import Role, create_user
from estate import registry
from estate.mqtt import service_publisher
from estate.services import PrivateMosquitto, load_secrets
from estate.settings import LOCAL_ZONE
from fund import cases as fund_cases
from ingest.worker import IngestConfig, Worker
from oversight import attachments, notices
from simulators import runner, scenarios
from tests.support.pipeline import Running, wait_for
from tests.support.stack import Stack, scratch_database
from tests.support.web import serving

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
DEMO = registry.read(registry.demo_path())

# role -> (user, binding, the heading of the page the role lands on, in Chinese)
LOGINS: dict[Role, tuple[str, dict[str, str], str]] = {
    Role.ADMIN: ("c-admin", {}, "告警看板"),
    Role.OPERATOR: ("c-duty", {"org_code": "PF-HX"}, "告警看板"),
    Role.MANAGER: ("c-manager", {"org_code": "PF-HX"}, "告警看板"),
    Role.MAINTENANCE: ("c-lifts", {"org_code": "EM-TS"}, "工单"),
    Role.FIRE_INSPECTOR: ("c-fire", {"area_code": "SFX"}, "消防监管"),
    Role.MARKET_INSPECTOR: ("c-market", {"area_code": "SFX"}, "电梯监管"),
    Role.HOUSING_AUTHORITY: ("c-housing", {}, "小区概况"),
    Role.STREET_OFFICE: ("c-street", {"area_code": "SFX-CG-CGJD"}, "告警看板"),
    Role.OWNER: ("c-owner", {"home": "HXY/B1/101"}, "我家的维修资金"),
    Role.OWNERS_COMMITTEE: ("c-committee", {"estate_code": "HXY"}, "维修资金案件"),
}
PASSWORD = "console-test-password"


@dataclass
class Site:
    base: str
    url: str  # the database
    stack: Stack


@pytest.fixture(scope="module")
def site(stack: Stack) -> Iterator[Site]:
    with scratch_database(stack, "console") as url:
        now = dt.datetime.now(dt.UTC)
        with psycopg.connect(url, autocommit=True) as conn:
            registry.load(conn, DEMO)
            for role, (name, binding, _) in LOGINS.items():
                create_user(conn, name, role, PASSWORD, **binding)
            notices.issue(
                conn, authority="fire", area_code="SFX", estate="HXY", recipient_org=None,
                problems=[
                    notices.ProblemIn(
                        problem="消火栓压力不足", basis="GB 25201", device="B1-HP",
                        deadline=(now + dt.timedelta(days=7)).date(),
                    )
                ],
                actor="user:c-fire", now=now,
            )  # fmt: skip
            fund_cases.open_accounts(conn, now)
        worker = Running(
            Worker(
                database_url=url,
                mqtt_url=stack.mqtt_url,
                config=IngestConfig(client_prefix="console", catch_all="estate/v1/HXY/#"),
                stage=AlertStage(),
            )
        )
        stop = threading.Event()
        with service_publisher(stack.mqtt_url, "console-supervise") as publish:
            sender = MqttSender(publish)
            service = SupervisorService(
                url, Notifier({"mqtt": sender, "stream": sender}), every_s=0.2
            )
            supervisor = threading.Thread(target=service.run, args=(stop,), daemon=True)
            supervisor.start()
            try:
                with serving(create_app(url, mqtt_url=stack.mqtt_url)) as base:
                    yield Site(base, url, stack)
            finally:
                stop.set()
                supervisor.join(30)
                worker.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, locale="zh-CN")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"the page raised: {errors}"


def log_in(page: Page, site: Site, role: Role) -> None:
    """Log in as a person would: this module logs in from one address more often than
    the API's per-source login limit allows, so a "try again in N s" is waited out."""
    name = LOGINS[role][0]
    for _ in range(4):
        page.goto(f"{site.base}/console/")
        page.fill("input[name=username]", name)
        page.fill("input[name=password]", PASSWORD)
        with page.expect_response("**/api/v1/auth/token") as answer:
            page.click("button[type=submit]")
        if answer.value.status != 429:
            break
        page.wait_for_timeout((int(answer.value.headers.get("retry-after", "1")) + 1) * 1000)
    expect(page.locator("#who")).to_contain_text(name)


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def simulate(stack: Stack, devices: list[str], scenario: str | None = None) -> None:
    """华祥苑's ``devices`` for a while (or ``scenario``), sent as the devices themselves.
    Simulated time ends now, so nothing is stamped in the future."""
    mosq = PrivateMosquitto(stack.settings, stack.services.runner)
    mosq.sync_devices((e.code, d.kind, d.code) for e, _, d in DEMO.devices())
    s = scenarios.load()[scenario] if scenario else None
    duration = s.duration_s if s else 180.0
    fleet = runner.build_fleet(DEMO, seed=3, estates=["HXY"], devices=devices)
    pub = runner.MqttPublisher(
        host="127.0.0.1", port=stack.device_port, mode="device",
        device_secret=load_secrets(stack.settings.var_dir)["device_secret"],
    )  # fmt: skip
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=duration)
    runner.run(fleet, pub, start=start, duration_s=duration, scenario=s)


def one(url: str, query: str, *args: Any) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, args).fetchone()
    return row[0] if row else None


def test_every_role_logs_in_and_lands_on_its_view(site: Site, page: Page) -> None:
    for role, (name, _, heading) in LOGINS.items():
        log_in(page, site, role)
        expect(page.locator("main h1")).to_contain_text(heading)
        # the role by its Chinese name, not its code
        expect(page.locator("#who")).to_have_text(re.compile(rf"^{re.escape(name)} · [^a-z_]+$"))
        shot(page, f"home-{role.value}")
        page.click("#logout")
        expect(page.locator("#login-form")).to_be_visible()
    # a wrong password is refused with the API's reason, and nobody is let in
    page.fill("input[name=username]", "c-duty")
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("登录失败")
    expect(page.locator("#nav a")).to_have_count(0)


def test_a_wall_screen_keeps_its_login_alive(site: Site, page: Page) -> None:
    """The console refreshes its login every 5 minutes: the token's expiry moves on."""
    page.clock.install()
    log_in(page, site, Role.OPERATOR)
    before = one(site.url, "SELECT max(expires_at) FROM user_tokens")
    with page.expect_response("**/api/v1/auth/refresh") as answer:
        page.clock.fast_forward("05:01")
    assert answer.value.status == 200
    assert one(site.url, "SELECT max(expires_at) FROM user_tokens") > before
    expect(page.locator("#who")).to_contain_text(LOGINS[Role.OPERATOR][0])


def test_a_trapped_passenger_appears_live_and_is_acknowledged(site: Site, page: Page) -> None:
    log_in(page, site, Role.OPERATOR)
    expect(page.locator("#no-alerts")).to_be_visible()
    expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))  # the stream is open
    shot(page, "board-quiet")

    simulate(site.stack, ["B1-L1", "B1-L2"], "trapped_with_event")
    # a trapped car is an incident of its own (life safety): its row, its order
    row = page.locator('tr[data-alert-type="elevator.trapped"]').first
    expect(row).to_be_visible(timeout=30_000)
    # it came over the live stream (the board's poll is every 15 s; this counts frames)
    assert page.evaluate("window.__liveEvents || 0") > 0
    expect(row).to_have_class(re.compile(r"\bcritical unacked\b"))  # blinks until acknowledged
    # named as people on duty name it: the estate and where the lift is; the codes small
    assert row.locator("td").nth(2).inner_text().startswith("华祥苑 · 1号梯")
    expect(row.locator("td").nth(2)).to_contain_text("B1 B1-L1")
    # the alert's rule named: two rules raise this type (the controller, the telemetry)
    expect(row.locator(".rule-title").first).to_have_text(re.compile("^困人（"))
    # the incident's work order on the board: its state, the company, the deadline
    order_cell = row.locator(".order-cell")
    expect(order_cell).to_contain_text("通顺电梯工程有限公司", timeout=20_000)
    expect(order_cell.locator("[data-due]")).to_have_text(re.compile(r"^剩余 |^超时 "))
    shot(page, "board-trapped")

    row.get_by_role("button", name="签收").click()  # a control room's word (not 确认)
    expect(row).not_to_have_class(re.compile(r"\bunacked\b"))
    expect(row).to_contain_text("已签收")
    alert_id = int(row.get_attribute("data-alert-id") or 0)
    assert one(site.url, "SELECT acknowledged_by FROM alerts WHERE id = %s", alert_id) == (
        "user:c-duty"
    )
    shot(page, "board-acknowledged")

    # the order the supervisor dispatched to the lift company, its deadline counting down
    wait_for(lambda: one(site.url, "SELECT count(*) FROM work_orders") == 1, 20, "the order")
    page.click('#nav a[data-nav="orders"]')
    order = page.locator("#order-table tbody tr").first
    expect(order).to_contain_text("通顺电梯工程有限公司")
    expect(order.locator("[data-due]")).to_have_text(re.compile(r"^剩余 \d+(天|小时|分|秒)"))
    before = order.locator("[data-due]").inner_text()
    page.wait_for_timeout(1500)
    assert order.locator("[data-due]").inner_text() != before  # it counts
    shot(page, "orders")

    # the incident: evidence, the chart drawn from the rollups, the order named
    page.goto(f"{site.base}/console/#/alert/{alert_id}")
    expect(page.locator("main h1")).to_contain_text("电梯困人")
    expect(page.locator("#evidence-chart")).to_have_attribute("data-level", "1m")
    expect(page.locator("main")).to_contain_text("通顺电梯工程有限公司")
    # the evidence as a table, not JSON; the changes in words, the engine named in Chinese
    expect(page.locator("#evidence")).to_be_visible()
    assert "{" not in page.locator("#evidence").inner_text()
    expect(page.locator("#changes")).to_contain_text("产生")
    expect(page.locator("#changes")).to_contain_text("系统判断")
    shot(page, "incident")

    # the inspectors: market supervision sees the trapped order under EM-TS
    page.click("#logout")
    log_in(page, site, Role.MARKET_INSPECTOR)
    company = page.locator('#company-table tr[data-company="EM-TS"]')
    expect(company.locator("td").nth(2)).to_have_text("1")  # one trapped-passenger order
    expect(page.locator("#trapped-table tbody tr")).to_have_count(1)
    shot(page, "market-supervision")
    page.click("#logout")
    log_in(page, site, Role.FIRE_INSPECTOR)
    expect(page.locator('[data-count="notices"]')).to_have_text("1")
    expect(page.locator("main")).to_contain_text("消火栓压力不足")
    shot(page, "fire-inspection")
    # the fire inspector does not see the lift's alert
    expect(page.locator('#nav a[data-nav="board"]')).to_be_visible()
    page.click('#nav a[data-nav="board"]')
    expect(page.locator("#no-alerts")).to_be_visible()


def test_the_board_shows_an_incident_as_one_row(site: Site, page: Page) -> None:
    """Two lifts of one building in trouble at once (an e-bike pushed in, a car running
    with its door open: not life safety, so one incident of the building): one row with
    both alerts inside; signing for it signs for both. Then the filters and the export."""
    with psycopg.connect(site.url, autocommit=True) as conn:
        lifts = {d.code: d for d in store.devices(conn) if d.estate == "HXY" and d.building == "B2"}
        ops = [
            Op("raise", (lifts[code].id, alert), alert, Severity.MAJOR, time.time(), {}, rule=rule)
            for code, alert, rule in [
                ("B2-L1", "elevator.ebike", "elevator.ebike"),
                ("B2-L2", "elevator.door_open_running", "elevator.door_open_running"),
            ]
        ]
        store.apply(conn, ops, {d.id: d for d in lifts.values()})
    both = "FROM alerts WHERE device_code IN ('B2-L1', 'B2-L2') AND state = 'open'"
    assert one(site.url, f"SELECT count(DISTINCT incident_id) {both}") == 1
    incident = one(site.url, f"SELECT min(incident_id) {both}")
    log_in(page, site, Role.OPERATOR)
    row = page.locator(f'tr[data-incident="{incident}"]')
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-alerts", "2")
    expect(row.locator(".incident-alerts li")).to_have_count(2)
    expect(row).to_contain_text("电动车入梯")
    expect(row).to_contain_text("开门走梯")
    shot(page, "board-incident")
    row.get_by_role("button", name="签收").click()
    expect(row).not_to_have_class(re.compile(r"\bunacked\b"))
    assert one(site.url, f"SELECT array_agg(DISTINCT acknowledged_by) {both}") == ["user:c-duty"]

    # filters: by text (the estate's name) and by severity; the rows on screen as CSV
    page.fill("#board-filter input[name=text]", "华祥苑")
    expect(row).to_have_count(1)
    page.fill("#board-filter input[name=text]", "没有这个地方")
    expect(page.locator("#no-alerts")).to_be_visible()
    page.fill("#board-filter input[name=text]", "")
    page.select_option("#board-filter select[name=severity]", "info")
    expect(row).to_have_count(0)
    page.select_option("#board-filter select[name=severity]", "major")
    expect(row).to_have_count(1)
    with page.expect_download() as got:
        page.click("#export-board")
    assert got.value.suggested_filename.endswith(".csv")
    text = got.value.path().read_text(encoding="utf-8-sig")
    exported = list(csv.reader(io.StringIO(text)))
    assert exported[0][:3] == ["级别", "类型", "规则"]
    mine = [r for r in exported[1:] if r[5].split()[-1] in ("B2-L1", "B2-L2")]
    assert sorted(r[1] for r in mine) == ["开门走梯", "电动车入梯"], exported
    assert all(r[3] == "华祥苑" for r in mine)
    # the history: cleared alerts, from the server
    page.select_option("#board-filter select[name=severity]", "")
    page.select_option("#board-filter select[name=state]", "cleared")
    expect(row).to_have_count(0)


def test_a_device_page_shows_live_values_and_history(site: Site, page: Page) -> None:
    log_in(page, site, Role.OPERATOR)
    page.goto(f"{site.base}/console/#/estates")
    page.click('[data-estate="HXY"]')
    expect(page.locator("main h1")).to_contain_text("华祥苑")
    # the estate's devices by type and building name, not kind/subtype codes
    lift = page.locator("#device-table tr", has=page.locator('a[href="#/device/HXY/B2-L1"]'))
    expect(lift).to_contain_text("乘客电梯")
    expect(lift).to_contain_text("2号楼")
    # the schematic: building 2's block holds the lift, coloured by its state
    expect(page.locator('#schematic [data-building="B2"] [data-device="B2-L1"]')).to_be_visible()
    expect(page.locator('#schematic [data-building=""]')).to_have_count(1)  # shared, once
    # the device list searched on the server, and every match exported (names and words)
    page.locator("#device-filter input[name=q]").fill("B2-L1")
    expect(page.locator("#device-table tbody tr")).to_have_count(1)
    with page.expect_download() as got:
        page.click("#export-devices")
    exported = list(csv.reader(io.StringIO(got.value.path().read_text(encoding="utf-8-sig"))))
    assert exported[0][:4] == ["设备", "位置", "类别", "楼栋"], exported[0]
    assert len(exported) == 2, exported
    assert exported[1][0] == "B2-L1", exported
    assert exported[1][2:4] == ["乘客电梯", "2号楼"], exported
    # filters by kind on the server: the estate's fire points, no lift among them
    page.locator("#device-filter input[name=q]").fill("")
    page.select_option("#device-filter select[name=kind]", "fire")
    expect(page.locator('#device-table tr[data-device="B2-L1"]')).to_have_count(0)
    expect(page.locator("#device-table tbody tr").first).to_contain_text("消防")
    simulate(site.stack, ["B2-L1"])
    wait_for(
        lambda: one(site.url, "SELECT count(*) FROM telemetry_1m m JOIN devices d ON"
                    " d.id = m.device_id WHERE d.code = 'B2-L1'") > 0, 60, "the first rollups",
    )  # fmt: skip
    page.goto(f"{site.base}/console/#/device/HXY/B2-L1")
    expect(page.locator('[data-metric="floor"]')).to_be_visible()
    # named by estate, building and place, its type and company in words, codes small
    expect(page.locator("main h1")).to_contain_text("华祥苑 · 2号楼 · 1号梯")
    expect(page.locator("main h1")).to_contain_text("乘客电梯")
    expect(page.locator("main h1 .code")).to_have_text("HXY B2-L1")
    expect(page.locator("main p").first).to_contain_text("通顺电梯工程有限公司")
    # names and units from the contract, yes/no for booleans, not wire names
    expect(page.locator('[data-metric="load_pct"] .muted')).to_have_text("载重 (%)")
    expect(page.locator('[data-metric="in_door_zone"] .stat')).to_have_text(re.compile("^[是否]$"))
    # a number that stands for a state, in words (运行模式 0 is 正常)
    expect(page.locator('[data-metric="mode"] .stat')).to_have_text(
        re.compile("^(正常|检修|消防|停止服务)$")
    )
    expect(page.locator('[data-metric="direction"] .stat')).to_have_text(
        re.compile("^(下行|停止|上行)$")
    )
    expect(page.locator("#chart-form select[name=metric] option[value=floor]")).to_have_text(
        "所在楼层 (floor)"
    )
    chart = page.locator("#device-chart")  # drawn by ECharts from the rollups
    expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"), timeout=10_000)
    expect(chart.locator("canvas").first).to_be_visible()
    shot(page, "device")
    # another estate's device is not the operator's: 404 from the API, said on the page
    page.goto(f"{site.base}/console/#/device/JXY/B1-L1")
    expect(page.locator("main .error")).to_contain_text("未找到或无权查看")


def test_silences_are_added_and_ended_from_the_console(site: Site, page: Page) -> None:
    log_in(page, site, Role.MANAGER)
    page.click('#nav a[data-nav="silences"]')
    page.select_option('#silence-form select[name="estate_code"]', "HXY")
    page.fill('#silence-form input[name="device_code"]', "B2-L1")
    page.fill('#silence-form input[name="reason"]', "年检 annual inspection")
    page.click('#silence-form button[type="submit"]')
    row = page.locator("tr[data-silence-id]").first
    expect(row).to_contain_text("年检")
    shot(page, "silences")
    sid = int(row.get_attribute("data-silence-id") or 0)
    assert one(site.url, "SELECT author FROM silences WHERE id = %s", sid) == "user:c-manager"
    row.get_by_role("button").click()
    expect(page.locator(f'tr[data-silence-id="{sid}"]')).to_have_count(0)


def test_english_on_a_phone_and_the_public_disclosure(site: Site, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        page.goto(f"{site.base}/console/#/public/HXY")  # no login
        expect(page.locator("#fund-report")).to_be_visible()
        # the noticeboard: who keeps the lifts and how to reach them, the 96333 codes
        expect(page.locator("#companies")).to_contain_text("通顺电梯工程有限公司")
        expect(page.locator("#lifts")).to_contain_text("31001")
        expect(page.locator("#lift-spending")).to_contain_text("本年度电梯维保费用")
        expect(page.locator("main h1")).to_contain_text("维修资金公示")
        page.click("#lang")
        expect(page.locator("main h1")).to_contain_text("Fund disclosure")
        shot(page, "public-phone-en")
        log_in(page, site, Role.OPERATOR)
        expect(page.locator("main h1")).to_contain_text("Alert board")
        shot(page, "board-phone-en")
        page.goto(f"{site.base}/console/#/public/NOPE")
        expect(page.locator("main .error")).to_contain_text("Not found")
    finally:
        context.close()


def test_the_pages_carry_a_policy_and_the_api_docs_need_no_cdn(
    site: Site, browser: Browser
) -> None:
    for path in ("/console/", "/docs", "/api/v1/public/estates/HXY/disclosure"):
        with urllib.request.urlopen(f"{site.base}{path}", timeout=10) as r:  # noqa: S310
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Referrer-Policy"] == "no-referrer"
            body = r.read().decode()
        if path == "/docs":
            assert "http" not in body  # every asset from this installation
    context = browser.new_context()
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)
    try:
        page.goto(f"{site.base}/docs")
        expect(page.locator(".opblock-tag").first).to_be_visible(timeout=20_000)
        shot(page, "api-docs")
    finally:
        context.close()
    assert blocked == []


def test_an_inspector_issues_a_notice_and_the_firm_rectifies_it(site: Site, page: Page) -> None:
    """整改通知书 in the browser: the fire inspector issues two problems, each with its
    measures, responsible person and deadline; the property firm's control room signs for
    it and reports one rectified; the inspector accepts it (动态销号)."""
    deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).date().isoformat()
    log_in(page, site, Role.FIRE_INSPECTOR)
    page.click("#nav a[data-nav=notices]")
    expect(page.locator("main h1")).to_contain_text("整改通知书")
    form = page.locator("#notice-form")
    form.locator("select[name=estate]").select_option("HXY")
    form.locator("input[name=basis]").fill("GB 25201")
    for i, (problem, measures, person) in enumerate(
        [
            ("地下室防火门常开", "更换闭门器", "王建国"),
            ("消防控制室单人值班", "落实双人值班", "李秀英"),
        ]
    ):
        if i:
            page.click("#add-problem")
        fs = form.locator("fieldset.problem").nth(i)
        fs.locator("input[name=problem]").fill(problem)
        fs.locator("input[name=measures]").fill(measures)
        fs.locator("input[name=responsible_person]").fill(person)
        fs.locator("input[name=deadline]").fill(deadline)
    form.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"#/notice/\d+$"))
    url = page.url
    expect(page.locator("#problem-table tbody tr")).to_have_count(2)
    expect(page.locator("#problem-table")).to_contain_text("王建国")
    shot(page, "notice-issued")
    page.click("#logout")

    log_in(page, site, Role.OPERATOR)
    page.goto(url)
    page.click("#ack")
    expect(page.locator("#signed")).not_to_have_text("—")
    page.click("#problem-table button[data-step=rectify][data-seq='1']")
    # what was done, asked in the row (no browser prompt)
    page.fill("#problem-table form.step-note input[name=note]", "闭门器已更换")
    page.click("#problem-table form.step-note button[type=submit]")
    expect(page.locator("#problem-table tr[data-seq='1']")).to_have_attribute(
        "data-state", "rectified"
    )
    page.click("#logout")

    log_in(page, site, Role.FIRE_INSPECTOR)
    page.goto(url)
    page.click("#problem-table button[data-step=close][data-seq='1']")
    expect(page.locator("#problem-table tr[data-seq='1']")).to_have_attribute(
        "data-state", "closed"
    )
    expect(page.locator("#problem-table tr[data-seq='2']")).to_have_attribute(
        "data-state", "issued"
    )
    shot(page, "notice-one-closed")


def test_a_technician_records_a_visit_on_a_phone(site: Site, browser: Browser) -> None:
    """维保记录 from a phone: the lift's checklist, one item a fault with its findings and a
    photo; the visit is listed and the next maintenance falls due 15 days on."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        log_in(page, site, Role.MAINTENANCE)
        page.goto(f"{site.base}/console/#/device/HXY/B3-L2")
        form = page.locator("#visit-form")
        expect(form).to_be_visible()
        expect(form.locator(".checklist select")).to_have_count(31)
        form.locator("select[name=item-A23]").select_option("fault")
        form.locator("textarea[name=findings]").fill("平层误差 12 mm，已报修")
        photo: FilePayload = {
            "name": "轿厢.png",
            "mimeType": "image/png",
            "buffer": b"\x89PNG\r\n\x1a\n" + bytes(64),
        }
        form.locator("input[name=photo]").set_input_files(files=[photo])
        shot(page, "phone-maintenance-form")
        form.locator("button[type=submit]").click()
        expect(page.locator("#visit-table tbody tr")).to_have_count(1)
        expect(page.locator("#visit-table")).to_contain_text("有故障")
        today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()
        expect(page.locator("#maintenance-due")).to_have_text(
            (today + dt.timedelta(days=15)).isoformat()
        )
        shot(page, "phone-maintenance-recorded")
    finally:
        context.close()
    assert not errors, errors
    photos = one(
        site.url, "SELECT count(*) FROM attachments WHERE subject LIKE %s", "maintenance:%"
    )
    assert photos == 1
    assert one(site.url, "SELECT items->>'A23' FROM maintenance_records") == "fault"


def test_an_inspector_exports_the_problem_ledger(site: Site, page: Page) -> None:
    """问题台账: the fire inspector's ledger in the browser, exported as an Excel workbook in
    Chinese."""
    log_in(page, site, Role.FIRE_INSPECTOR)
    page.click("#nav a[data-nav=ledger]")
    expect(page.locator("main h1")).to_contain_text("问题台账")
    expect(page.locator("#ledger-table")).to_contain_text("消火栓压力不足")
    shot(page, "ledger")
    with page.expect_download() as got:
        page.click("#export-xlsx")
    assert got.value.suggested_filename.endswith(".xlsx")
    wb = openpyxl.load_workbook(io.BytesIO(got.value.path().read_bytes()))
    assert wb.sheetnames == ["问题台账", "每日状态", "各小区统计"]
    rows = list(wb["问题台账"].iter_rows(values_only=True))
    assert rows[0][:3] == ("来源", "编号", "主管部门")
    assert any("消火栓压力不足" in str(r[8]) for r in rows[1:])


def test_an_owner_sees_their_homes_fund(site: Site, page: Page) -> None:
    """分户账 in the browser: the owner's login names the home; a deposit into building 1's
    account shows as the home's share by floor area, summing with every other home's to
    the deposit."""
    with psycopg.connect(site.url, autocommit=True) as conn:
        account = fund_cases.account_of(conn, "HXY", "B1")
        fund_cases.deposit(conn, account, 10_000_000, kind="deposit", key="console-owner",
                           actor="t", now=dt.datetime.now(dt.UTC))  # fmt: skip
        homes = fund_cases.homes(conn, account)
        (mine,) = [h for h in homes if h.unit == "101"]
        assert sum(h.balance_fen for h in homes) == one(
            site.url, "SELECT balance_fen FROM fund_accounts WHERE id = %s", account
        )
    log_in(page, site, Role.OWNER)
    expect(page.locator("main h1")).to_contain_text("HXY B1-101")
    balance = page.locator(f"[data-balance='{account}']")
    expect(balance).to_contain_text(f"{mine.balance_fen / 100:,.2f}")
    expect(page.locator("main")).to_contain_text("缴存")
    # this year's report of the home: it closes at the home's balance
    year = page.locator(f"[data-year='{account}'] tbody tr")
    expect(year).to_contain_text(str(dt.datetime.now(LOCAL_ZONE).year))
    expect(year.locator("td").last).to_have_text(f"{mine.balance_fen / 100:,.2f}")
    shot(page, "owner-home")


def test_the_owners_committee_applies_for_the_fund_and_accepts(site: Site, page: Page) -> None:
    """业委会 in the browser: a roof leak the property firm repaired first (先修后报) and
    applied for; the committee applies for the fund and, once it is reported repaired,
    accepts it, each with one click where it sees the case."""
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(site.url, autocommit=True) as conn:
        case = fund_cases.open_manual(
            conn, item="roof_leak", estate="HXY", building="B2", repair_first=True,
            description="屋面渗漏，先行抢修", actor="user:c-duty", now=now,
        )  # fmt: skip
        for n in (1, 2):
            attachments.store(conn, subject=f"fund_case:{case}", part="evidence",
                              filename=f"{n}.png", data=b"\x89PNG\r\n\x1a\n" + bytes([n] * 40),
                              uploaded_by="user:c-duty", now=now)  # fmt: skip
        fund_cases.repaired(conn, case, note="防水层修补", actor="user:c-duty", now=now)
        fund_cases.estimate(conn, case, 30_000, actor="user:c-duty", now=now,
                            party="operator:PF-HX")  # fmt: skip
    log_in(page, site, Role.OWNERS_COMMITTEE)
    row = page.locator(f"#fund-cases tr[data-case='{case}']")
    expect(row).to_contain_text("先修后报")
    expect(row).to_contain_text("屋面渗漏")
    # the API's refusal reaches the person in Chinese, its English detail as the tooltip:
    # here another committee member approved it meanwhile (the page is stale)
    with psycopg.connect(site.url, autocommit=True) as conn:
        co = fund_cases.committee("HXY")
        fund_cases.approve(conn, case, by=co, actor="user:other", now=now, party=co)
    row.locator("button[data-step=approve]").click()
    expect(page.locator("#toast")).to_have_text("当前状态下不能执行此操作")
    assert "not possible now" in (page.locator("#toast").get_attribute("title") or "")
    page.click('#nav a[data-nav="fundcases"]')
    expect(row).to_contain_text("已修复待验收")  # repaired first: approval moved it on
    expect(row).to_contain_text("业主委员会")
    row.locator("button[data-step=accept]").click()
    expect(row).to_contain_text("已验收")
    assert one(site.url, "SELECT accepted_by FROM fund_cases WHERE id = %s", case) == (
        "owners_committee:HXY"
    )
    shot(page, "committee-cases")


def accepted_wall_leak(
    conn: psycopg.Connection[Any], building: str, estimate_fen: int, key: str, now: dt.datetime
) -> int:
    """A wall leak in ``building`` of 华祥苑 taken to completion acceptance (its account
    topped up first, two photos as evidence); the case's id."""
    account = fund_cases.account_of(conn, "HXY", building)
    fund_cases.deposit(conn, account, 5_000_000, kind="deposit", key=key, actor="t", now=now)
    case = fund_cases.open_manual(
        conn, item="wall_leak", estate="HXY", building=building,
        description=f"外墙渗水（{building}）", actor="user:c-duty", now=now,
    )  # fmt: skip
    for n in (1, 2):
        attachments.store(conn, subject=f"fund_case:{case}", part="evidence",
                          filename=f"{n}.png", data=b"\x89PNG\r\n\x1a\n" + bytes([n] * 50),
                          uploaded_by="user:c-duty", now=now)  # fmt: skip
    fund_cases.estimate(conn, case, estimate_fen, actor="op", now=now, party="operator:PF-HX")
    co = fund_cases.committee("HXY")
    fund_cases.approve(conn, case, by=co, actor="co", now=now, party=co)
    fund_cases.repaired(conn, case, note="外墙防水修补", actor="op", now=now)
    fund_cases.accept(conn, case, party=co, note="ok", actor="co", now=now)
    return case


def test_an_owner_finds_their_homes_share_on_the_public_page(site: Site, page: Page) -> None:
    """The public disclosure, as an owner with no login reads it: the estate's name, the
    repair in Chinese with the work and the contractor, "查我家" by building and unit giving
    the home's share, the yearly report by year, no operational status pill."""
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(site.url, autocommit=True) as conn:
        case = accepted_wall_leak(conn, "B1", 88_000, "public-owner", now)
        fund_cases.settle(conn, case, cost_fen=86_543, invoice_ref="INV-W1", key="public-w1",
                          actor="ha", now=now, contractor="安居防水工程公司")  # fmt: skip
        share = one(
            site.url,
            "SELECT s.share_fen FROM fund_shares s JOIN units u ON u.id = s.unit_id"
            " JOIN buildings b ON b.id = u.building_id WHERE s.case_id = %s AND b.code = 'B1'"
            " AND u.code = '101'",
            case,
        )
    page.goto(f"{site.base}/console/#/public/HXY")  # no login
    expect(page.locator("main h1")).to_contain_text("华祥苑")
    card = page.locator(f"[data-case='{case}']")
    expect(card).to_contain_text("外墙渗漏")
    expect(card).to_contain_text("安居防水工程公司")
    expect(card).to_contain_text("外墙防水修补")
    expect(card).to_contain_text("业主委员会")
    expect(page.locator("#live")).to_be_hidden()
    page.select_option("#find-home select[name=building]", "B1")
    page.fill("#find-home input[name=unit]", "101")
    page.click("#find-home button")
    expect(card.locator(".my-share")).to_contain_text(f"您家分摊 B1/101: ¥{share / 100:,.2f}")
    year = str(dt.datetime.now(LOCAL_ZONE).year)
    expect(page.locator("#report-year")).to_have_value(year)
    expect(page.locator("#fund-report")).to_contain_text("华祥苑")
    shot(page, "public-find-home")


def test_a_smoke_alarm_incident_has_no_empty_curve(site: Site, page: Page) -> None:
    """An event-only device (a smoke detector) has no readings to chart: the incident page
    says so instead of drawing an empty pressure curve, and shows the evidence in words."""
    log_in(page, site, Role.OPERATOR)
    simulate(site.stack, ["B3-SD1", "B3-SD2", "FP", "PUMP1"], "smoke_false_alarm")
    wait_for(
        lambda: one(site.url, "SELECT count(*) FROM alerts WHERE alert_type = 'fire.alarm'"
                    " AND device_code = 'B3-SD1'") == 1, 30, "the smoke alarm",
    )  # fmt: skip
    alert_id = one(site.url, "SELECT id FROM alerts WHERE device_code = 'B3-SD1'")
    page.goto(f"{site.base}/console/#/alert/{alert_id}")
    expect(page.locator("main h1")).to_contain_text("火警")
    expect(page.locator("#no-curve")).to_contain_text("此设备只上报事件")
    expect(page.locator("#evidence-chart")).to_have_count(0)
    expect(page.locator("#evidence")).to_be_visible()
    expect(page.locator("#changes")).to_contain_text("产生")
    shot(page, "incident-smoke")
    # the control room decides it where it reads it: a false alarm, with its cause
    page.click("#incident-actions [data-action=false-alarm]")
    page.select_option("#incident-actions select[name=cause]", "cooking")
    page.click("#incident-actions form button[type=submit]")
    expect(page.locator("#incident-actions")).to_have_count(0)  # decided: nothing left to do
    assert (
        one(
            site.url,
            "SELECT confirmation || '/' || false_alarm_cause FROM alerts WHERE id = %s",
            alert_id,
        )
        == "false_alarm/cooking"
    )


def test_the_housing_authority_pays_a_case_from_the_console(site: Site, page: Page) -> None:
    """A fund case from the list to settlement in the browser: the housing authority opens
    an accepted case, sees its facts and timeline, pays it (cost, invoice, contractor);
    the ledger has the payment once and the case is disclosed."""
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(site.url, autocommit=True) as conn:
        case = accepted_wall_leak(conn, "B3", 120_000, "console-pay", now)
    log_in(page, site, Role.HOUSING_AUTHORITY)
    page.click('#nav a[data-nav="fundcases"]')
    page.click(f"#fund-cases tr[data-case='{case}'] a[href='#/fundcase/{case}']")
    expect(page.locator("main h1")).to_contain_text("已验收")
    expect(page.locator("#case-facts")).to_contain_text("¥1,200.00")
    expect(page.locator("#case-events")).to_contain_text("已批准")
    page.click("#case-actions button[data-step=settle]")
    form = page.locator("#case-actions form[data-step=settle]")
    form.locator("input[name=amount]").fill("1180.5")
    form.locator("input[name=invoice_ref]").fill("INV-C3")
    form.locator("input[name=contractor]").fill("安居防水工程公司")
    form.locator("button[type=submit]").click()
    expect(page.locator("main h1")).to_contain_text("已拨付公示中")
    expect(page.locator("#case-facts")).to_contain_text("¥1,180.50")
    assert one(site.url, "SELECT cost_fen FROM fund_cases WHERE id = %s", case) == 118_050
    assert one(
        site.url, "SELECT count(*) FROM fund_journal WHERE id = (SELECT journal_id FROM"
        " fund_cases WHERE id = %s)", case,
    ) == 1  # fmt: skip
    shot(page, "fund-case-settled")
    # the account's journal shows the payment with the balance after it, and the whole
    # journal exports as one CSV
    account = one(site.url, "SELECT account_id FROM fund_cases WHERE id = %s", case)
    balance = one(site.url, "SELECT balance_fen FROM fund_accounts WHERE id = %s", account)
    page.click('#nav a[data-nav="fundaccounts"]')
    page.click(f"#fund-accounts tr[data-account='{account}'] a")
    paid = page.locator("#journal tbody tr").first
    expect(paid).to_contain_text("维修支出")
    expect(paid).to_contain_text("−1,180.50")
    expect(paid).to_contain_text("施工单位")
    with page.expect_download() as got:
        page.click("#export-journal")
    rows = list(csv.reader(io.StringIO(got.value.path().read_text(encoding="utf-8-sig"))))
    assert rows[0][:5] == ["凭证号", "时间", "类别", "金额（元）", "余额"], rows[0]
    entries = one(site.url, "SELECT count(*) FROM fund_legs WHERE account = 'fund:' || %s", account)
    assert len(rows) == 1 + entries, rows
    assert rows[1][2:5] == ["维修支出", "−1,180.50", f"{balance / 100:,.2f}"], rows[1]
    assert len(rows[1][9]) == 64  # the chain hash, for `estate fund verify`
    shot(page, "fund-journal")


_COUNT_TONES = """
window.__tones = 0;
window.AudioContext = class {
  constructor() { this.currentTime = 0; this.destination = {}; }
  resume() { return Promise.resolve(); }
  createGain() { return { gain: {}, connect() {} }; }
  createOscillator() {
    return { frequency: {}, connect() {}, start() { window.__tones += 1; }, stop() {} };
  }
};
"""


def test_only_the_roles_that_sign_for_alerts_hear_them(site: Site, browser: Browser) -> None:
    """A critical alert nobody has signed for (an overspeeding lift) rings on the control
    room's board; a street office sees the same row in silence (it cannot sign for it, so
    it could never stop it)."""
    simulate(site.stack, ["B2-L1"], "overspeed")
    wait_for(
        lambda: one(site.url, "SELECT count(*) FROM alerts WHERE device_code = 'B2-L1'"
                    " AND alert_type = 'elevator.overspeed' AND severity = 'critical'"
                    " AND acknowledged_at IS NULL") > 0,
        30, "an unsigned critical alert",
    )  # fmt: skip
    heard = {}
    for role in (Role.STREET_OFFICE, Role.OPERATOR):
        context = browser.new_context(viewport={"width": 1600, "height": 1000}, locale="zh-CN")
        context.add_init_script(_COUNT_TONES)
        page = context.new_page()
        log_in(page, site, role)
        row = page.locator('tr[data-alert-type="elevator.overspeed"].critical.unacked').first
        expect(row).to_be_visible(timeout=20_000)
        page.wait_for_timeout(6_000)  # the board rings every 2.5 s while one is unsigned
        heard[role] = page.evaluate("window.__tones")
        if role is Role.STREET_OFFICE:
            expect(page.locator("#sound")).to_be_hidden()
            expect(row.get_by_role("button", name="签收")).to_have_count(0)
        context.close()
    assert heard[Role.STREET_OFFICE] == 0
    assert heard[Role.OPERATOR] >= 2  # two tones a ring


AXE = Path(__file__).resolve().parents[2] / "api/web/node_modules/axe-core/axe.min.js"
# the views of a control room, an inspector and an owner, by the hash that opens them
AXE_VIEWS: dict[Role | None, list[str]] = {
    None: ["#/login", "#/public/HXY"],
    Role.OPERATOR: ["#/board", "#/orders", "#/estates", "#/estate/HXY", "#/device/HXY/B2-L1",
                    "#/silences", "#/fire", "#/notices", "#/devicelist", "#/drainage"],
    Role.MARKET_INSPECTOR: ["#/elevators", "#/ledger"],
    Role.OWNERS_COMMITTEE: ["#/fundcases", "#/fundaccounts"],
}  # fmt: skip


def _serious(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations of the page as rendered."""
    page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        """() => axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] })
          .then(r => r.violations.filter(v => ["serious", "critical"].includes(v.impact))
            .map(v => ({ id: v.id, impact: v.impact, help: v.help,
                         nodes: v.nodes.slice(0, 3).map(n => n.target.join(" ")) })))"""
    )
    return found


# what may stand in Latin letters on a Chinese page: codes (HXY, B2-L1, EM-TS, INV-C3),
# units, the language switch, the test's logins, standards and invoice numbers
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_./-]*$|^c-[a-z]+$|^\d")
_UNITS = {"MPa", "mA", "m/s", "mg/L", "NTU", "m", "kW", "Hz", "mm", "h", "d", "kg", "L", "floor",
          "English", "CSV", "Excel", "m³/h", "l/min", "lpm", "°C"}  # fmt: skip


def _english(page: Page) -> set[str]:
    """Words in Latin letters in the header and the view that are not codes or units."""
    text = page.locator("header").inner_text() + " " + page.locator("main").inner_text()
    tokens = re.split(r"[\s,;:()（）·|/=<>\[\]「」：，、]+", text)
    return {w for w in tokens if re.search(r"[a-z]{2,}", w) and not _CODE.match(w)
            and w not in _UNITS}  # fmt: skip


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_every_view_passes_an_accessibility_check(site: Site, browser: Browser, size: str) -> None:
    """axe-core (from npm) on the views of each kind of user, on a desk and on a phone: no
    serious or critical violation (contrast, names of controls, language, structure). The
    page's policy is bypassed only to inject axe itself."""
    assert AXE.is_file(), "axe-core is missing: run make setup (scripts/setup-web.sh)"
    viewport: ViewportSize = {"width": 1600, "height": 1000}
    if size == "phone":
        viewport = {"width": 390, "height": 844}
    found: dict[str, list[dict[str, Any]]] = {}
    for role, views in AXE_VIEWS.items():
        context = browser.new_context(viewport=viewport, locale="zh-CN", bypass_csp=True)
        page = context.new_page()
        if role is not None:
            log_in(page, site, role)
        for view in views:
            page.goto(f"{site.base}/console/{view}")
            expect(page.locator("main h1").first).to_be_visible()
            expect(page.locator("main")).not_to_contain_text("加载中")
            page.wait_for_timeout(300)  # the charts' first frame
            where = f"{role.value if role else 'public'} {view}"
            name = re.sub(r"[^a-z0-9]+", "-", f"{size} {where}".lower()).strip("-")
            shot(page, f"view-{name}")  # every view, on a desk and on a phone
            if bad := _serious(page):
                found[where] = bad
            if size == "desktop" and (words := _english(page)):
                found[where + " (English in Chinese mode)"] = [{"words": sorted(words)}]
        context.close()
    assert not found, json.dumps(found, ensure_ascii=False, indent=1)
