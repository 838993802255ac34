"""The review page in a real headless Chromium: log in, label three items by keyboard only.

Needs Debian's ``/usr/bin/chromium`` and the ``playwright`` Python package (never a
downloaded browser). Every wait is on a page condition, never on a clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import update

from labelloop.api import create_app
from labelloop.auth import create_user
from labelloop.core.types import Suggestion
from labelloop.project import Project
from labelloop.store.labels import add_suggestions
from labelloop.store.models import LeaseRow, utcnow
from labelloop.store.reviews import human_actions

pytestmark = pytest.mark.browser

from browser_support import CHROMIUM, CHROMIUM_ARGS, playwright_api, running  # noqa: E402


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Project, list[int]]]:
    p = Project.init(
        tmp_path / "proj",
        name="sms",
        labels=["ham", "spam"],
        storage=f"sqlite:///{tmp_path / 'store.db'}",
    )
    csv = tmp_path / "msgs.csv"
    texts = ["see you at 6", "WIN a FREE prize now!!!", "call me later", "txt STOP to end"]
    pd.DataFrame({"text": texts}).to_csv(csv, index=False)
    p.ingest(csv)
    ids = [int(i) for i in p.items()["id"]]
    p.enqueue(ids, [4.0, 3.0, 2.0, 1.0])
    with p.db.engine.begin() as conn:
        add_suggestions(
            conn,
            [
                Suggestion(ids[2], "h", "zeroshot", "minilm-1", {"ham": 0.9, "spam": 0.1}, 0.9),
                Suggestion(ids[2], "h", "llm", "smollm2", {"ham": 0.3, "spam": 0.7}, 0.7),
            ],
        )
    create_user(p.db, "rita", "reviewer", "s3cret-pass")
    yield p, ids
    p.close()


def fl_count(p: Project) -> int:
    return len(p.final_labels())


def test_review_three_items_by_keyboard(project) -> None:
    p, ids = project
    expect = playwright_api.expect
    with running(create_app(p)) as url, playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{url}/review")
            # Not logged in: the page sends us to the login form, which brings us back.
            expect(page.locator("input[name=username]")).to_be_visible()
            page.fill("input[name=username]", "rita")
            page.fill("input[name=password]", "s3cret-pass")
            page.keyboard.press("Enter")
            page.wait_for_url(f"{url}/review")

            item = page.locator("#item")
            done = page.locator("#done-count")
            # item 1: key 2 picks "spam"; item 2: key 1 picks "ham"; item 3: no key, so Enter
            # saves nothing, and Shift+A accepts the top machine suggestion ("ham", 90%).
            for n, (item_id, keys) in enumerate(
                [(ids[0], ["2"]), (ids[1], ["1"]), (ids[2], [])], start=1
            ):
                expect(item).to_have_attribute("data-item-id", str(item_id))
                for key in keys:
                    page.keyboard.press(key)
                if keys:
                    pressed = page.locator('#labels .label[aria-pressed="true"]')
                    expect(pressed).to_have_count(1)
                else:
                    expect(page.locator("#suggestions li")).to_have_count(2)
                    expect(page.locator("#suggestions .top-pick")).to_contain_text("ham")
                    page.keyboard.press("Enter")
                    expect(page.locator("#message.error")).to_contain_text("Nothing saved")
                    assert fl_count(p) == n - 1
                page.keyboard.press("Enter" if keys else "Shift+A")
                expect(done).to_have_text(str(n))
            expect(item).to_have_attribute("data-item-id", str(ids[3]))
            expect(page.locator("#message")).to_contain_text(f"Saved item {ids[2]}")
            assert fl_count(p) == 3

            # A lease that ran out: the page says so, leases the item anew, and the next
            # answer lands.
            with p.db.engine.begin() as conn:
                conn.execute(update(LeaseRow).values(expires_at=utcnow() - timedelta(seconds=1)))
            page.keyboard.press("2")
            page.keyboard.press("Enter")
            expect(page.locator("#message.error")).to_contain_text("expired")
            expect(page.locator("#review:not([aria-busy])")).to_have_count(1)
            expect(item).to_have_attribute("data-item-id", str(ids[3]))
            page.keyboard.press("2")
            page.keyboard.press("Enter")
            expect(done).to_have_text("4")
            expect(page.locator("#empty")).to_be_visible()

            # "?" opens the key help; it closes again with "?".
            page.keyboard.press("?")
            expect(page.locator("#help")).to_be_visible()
            page.keyboard.press("?")
            expect(page.locator("#help")).to_be_hidden()
        finally:
            browser.close()

    fl = p.final_labels().set_index("item_id")
    assert fl.loc[ids[0], "labels"] == ["spam"]
    assert fl.loc[ids[1], "labels"] == ["ham"]
    assert fl.loc[ids[2], "labels"] == ["ham"]
    assert fl.loc[ids[3], "labels"] == ["spam"]
    assert set(fl["source_name"]) == {"rita"} and len(fl) == 4
    spent = human_actions(p.db, p.id)["time_spent_ms"]
    assert spent.notna().all() and (spent >= 0).all()


def test_the_monitoring_page_draws_alerts_runs_and_charts(project) -> None:
    """/monitoring in the browser: reached from the nav, its charts are inline SVG (no script
    the CSP would block), open alerts and runs are listed, nothing logs an error."""
    from labelloop.automate import Automation

    p, ids = project
    # An alert rule the queue breaches (4 queued > 1) and one automation check.
    p.config.monitoring.alerts.append(
        type(p.config.monitoring)
        .model_fields["alerts"]
        .annotation.__args__[0](name="backlog", metric="queue_depth", above=1)
    )
    report = Automation(p.ctx).check()
    assert report.opened == ["backlog"]
    expect = playwright_api.expect
    with running(create_app(p)) as url, playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            failed: list[str] = []
            page.on(
                "response",
                lambda r: (
                    failed.append(r.url)
                    if r.status >= 400 and not r.url.endswith("/favicon.ico")
                    else None
                ),
            )
            page.goto(f"{url}/login")
            page.fill("input[name=username]", "rita")
            page.fill("input[name=password]", "s3cret-pass")
            page.keyboard.press("Enter")
            page.wait_for_url(f"{url}/**")
            page.click("nav >> text=Monitoring")
            page.wait_for_url(f"{url}/monitoring")
            expect(page.locator("#alerts")).to_contain_text("backlog")
            expect(page.locator("#metric-queue_depth svg.chart")).to_have_count(1)
            expect(page.locator("#quality")).to_contain_text("Audited precision")
            assert failed == []  # every resource the page asked for answered
            assert [e for e in errors if "favicon" not in e and "404" not in e] == []
        finally:
            browser.close()
