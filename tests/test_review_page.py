"""The review page at 77 labels (banking77), in a real headless Chromium.

Keystrokes are counted from an item being shown to its answer being saved, Enter included,
using the page's own scheme (a label's code typed into the filter, then Enter). Every wait is
on a page condition, never on a clock.
"""

from __future__ import annotations

import statistics
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import update

from labelloop.api import create_app
from labelloop.auth import create_user
from labelloop.core.types import Suggestion
from labelloop.project import Project
from labelloop.store.labels import add_suggestions
from labelloop.store.models import ItemRow

pytestmark = pytest.mark.browser

from browser_support import chromium, log_in, playwright_api, running  # noqa: E402
from review_support import PASSWORD, banking77_labels, banking77_project  # noqa: E402

expect = playwright_api.expect


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[tuple[Project, list[int]]]:
    p, ids = banking77_project(tmp_path / "proj", f"sqlite:///{tmp_path / 'store.db'}")
    yield p, ids
    p.close()


@pytest.fixture
def browser() -> Iterator:
    with chromium() as b:
        yield b


def open_review(browser, url: str, width: int = 1280, height: int = 900):  # noqa: ANN001, ANN201
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    log_in(page, url, "rita", PASSWORD, "/review")
    expect(page.locator("#item")).not_to_have_attribute("data-item-id", "")
    return page


def shown_item(page) -> str:  # noqa: ANN001
    return page.locator("#item").get_attribute("data-item-id")


def finals(p: Project) -> dict[int, list[str]]:
    fl = p.final_labels()
    return {int(i): list(v) for i, v in zip(fl["item_id"], fl["labels"], strict=True)}


def test_every_label_in_at_most_four_keystrokes(bank, browser) -> None:
    p, ids = bank
    names = banking77_labels()
    with running(create_app(p)) as url:
        page = open_review(browser, url)
        codes = page.evaluate("window.labelloopReview.codes()")
        assert sorted(codes) == sorted(names)
        keystrokes: dict[str, int] = {}
        expected: dict[int, str] = {}
        for name in names:
            item_id = shown_item(page)
            expected[int(item_id)] = name
            # Type the code the page shows beside the label, then Enter: one key each.
            shown_code = page.locator(f'#labels .label[data-label="{name}"] kbd.code').inner_text()
            assert shown_code == codes[name]
            for ch in shown_code:
                page.keyboard.press(ch)
            page.keyboard.press("Enter")
            keystrokes[name] = len(shown_code) + 1
            expect(page.locator("#message")).to_have_text(f"Saved item {item_id}: {name}")
        assert page.errors == []
    saved = finals(p)
    assert {i: saved[i] for i in expected} == {i: [n] for i, n in expected.items()}
    counts = list(keystrokes.values())
    assert max(counts) <= 4 and statistics.median(counts) <= 3, keystrokes


def test_filter_by_words_and_description_is_short(bank, browser) -> None:
    p, _ = bank
    with running(create_app(p)) as url:
        page = open_review(browser, url)
        page.keyboard.type("refund")  # any letter starts the filter
        expect(page.locator("#filter")).to_be_focused()
        visible = page.locator("#labels .label:visible")
        assert 1 <= visible.count() <= 5
        names = [visible.nth(k).get_attribute("data-label") for k in range(visible.count())]
        assert {"request_refund", "Refund_not_showing_up"} <= set(names)
        # Words of a description find its label; its description shows beside the item.
        page.keyboard.press("Escape")
        page.keyboard.type("close their account")
        expect(page.locator("#labels .label.highlight")).to_have_attribute(
            "data-label", "terminate_account"
        )
        expect(page.locator("#guide")).to_contain_text("close their account for good")
        # Arrows move the highlight; Enter saves the highlighted label, not the suggestion.
        page.keyboard.press("Escape")
        page.keyboard.type("card pay")
        first = page.locator("#labels .label.highlight").get_attribute("data-label")
        page.keyboard.press("ArrowDown")
        second = page.locator("#labels .label.highlight").get_attribute("data-label")
        assert second != first
        item_id = shown_item(page)
        page.keyboard.press("Enter")
        expect(page.locator("#message")).to_have_text(f"Saved item {item_id}: {second}")
    assert finals(p)[int(item_id)] == [second]


def test_enter_saves_only_what_is_selected(bank, browser) -> None:
    p, ids = bank
    with running(create_app(p)) as url:
        page = open_review(browser, url)
        first = shown_item(page)
        # Nothing selected: Enter saves nothing and says so.
        page.keyboard.press("Enter")
        expect(page.locator("#message.error")).to_contain_text("Nothing saved")
        assert shown_item(page) == first and finals(p) == {}
        # Enter on a focused label button saves THAT label (not the machine's suggestion).
        button = page.locator('#labels .label[data-label="visa_or_mastercard"]')
        button.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#message")).to_have_text(f"Saved item {first}: visa_or_mastercard")
        assert finals(p)[int(first)] == ["visa_or_mastercard"]
        # Digit 2 selects candidate 2 (visibly); Enter saves it.
        second = shown_item(page)
        candidate = page.locator("#candidates .candidate").nth(1)
        label = candidate.get_attribute("data-label")
        page.keyboard.press("2")
        expect(candidate).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#selected")).to_have_text(label)
        page.keyboard.press("Enter")
        expect(page.locator("#message")).to_have_text(f"Saved item {second}: {label}")
        # Shift+A accepts the top candidate explicitly.
        third = shown_item(page)
        top = page.locator("#candidates .candidate").first.get_attribute("data-label")
        page.keyboard.press("Shift+A")
        expect(page.locator("#message")).to_have_text(f"Saved item {third}: {top}")
        assert page.errors == []
    assert finals(p)[int(second)] == [label] and finals(p)[int(third)] == [top]


def test_item_stays_in_view_and_nothing_overflows(bank, browser, tmp_path: Path) -> None:
    p, _ = bank
    with running(create_app(p)) as url:
        for width in (1280, 1920):
            page = open_review(browser, url, width=width)
            text = page.locator("#item-content")
            # Pick the last label of the list, by mouse and by keyboard (ArrowUp wraps to it).
            last = page.locator("#labels .label").last
            last.click()
            expect(last).to_have_attribute("aria-pressed", "true")
            assert_in_viewport(page, text)
            page.keyboard.press("ArrowUp")
            expect(page.locator("#labels .label.highlight")).to_have_attribute(
                "data-label", banking77_labels()[-1]
            )
            assert_in_viewport(page, text)
            assert_in_viewport(page, page.locator("#candidates"))
            page.keyboard.press("Escape")
            page.screenshot(path=str(tmp_path / f"review-{width}.png"), full_page=True)
            overflowing = page.evaluate(OVERFLOW_JS)
            assert overflowing == [], (width, overflowing)
            page.close()


def assert_in_viewport(page, locator) -> None:  # noqa: ANN001
    box = locator.bounding_box()
    view = page.viewport_size
    assert box is not None
    assert box["y"] >= 0 and box["y"] + min(box["height"], 40) <= view["height"], box
    assert box["x"] >= 0 and box["x"] + box["width"] <= view["width"], box


# Elements of the review whose content is wider than their box, or that stick out of their card.
OVERFLOW_JS = """() => {
  const bad = [];
  const cards = [...document.querySelectorAll('#review .card')];
  for (const el of [...cards, document.getElementById('labels'),
                    ...document.querySelectorAll('#labels .label, #candidates .candidate')]) {
    if (el.scrollWidth > el.clientWidth + 1) bad.push(`${el.id || el.className}: scrollWidth ${el.scrollWidth} > ${el.clientWidth}`);
  }
  for (const card of cards) {
    const c = card.getBoundingClientRect();
    for (const el of card.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || el.closest('[hidden]')) continue;
      if (r.left < c.left - 1 || r.right > c.right + 1) bad.push(`${el.tagName}.${el.className} sticks out`);
    }
  }
  if (document.documentElement.scrollWidth > document.documentElement.clientWidth) bad.push('page scrolls sideways');
  return bad;
}"""


def test_progress_survives_reload_and_labelers_are_readable(bank, browser) -> None:
    p, ids = bank
    with running(create_app(p)) as url:
        page = open_review(browser, url)
        who = page.locator("#suggestions").inner_text()
        assert "student model" in who and "zero-shot (embeddings)" in who
        assert "LLM SmolLM2-135M-Instruct" in who and "ensemble" in who
        assert "pool.v0" not in page.locator("#review").inner_text()
        expect(page.locator("#left-count")).to_have_text(str(len(ids)))
        for _ in range(2):
            item_id = shown_item(page)
            page.keyboard.press("1")
            page.keyboard.press("Enter")
            expect(page.locator("#message")).to_contain_text(f"Saved item {item_id}")
        expect(page.locator("#done-count")).to_have_text("2")
        page.reload()
        expect(page.locator("#done-count")).to_have_text("2")
        expect(page.locator("#left-count")).to_have_text(str(len(ids) - 2))
        expect(page.locator("#team-done")).to_have_text("2")
        expect(page.locator("#rate")).not_to_have_text("–")
        # Undo takes one back, and the numbers follow.
        page.keyboard.press("Shift+U")
        expect(page.locator("#message")).to_contain_text("Undid your last answer")
        expect(page.locator("#done-count")).to_have_text("1")
        # The help lists every key.
        page.keyboard.press("?")
        help_text = page.locator("#help").inner_text()
        for key in ("Enter", "Esc", "Shift", "↑", "1", "?"):
            assert key in help_text
        for word in ("filter", "candidate", "skip", "undo", "zoom"):
            assert word in help_text.lower()
        page.keyboard.press("?")
        expect(page.locator("#help")).to_be_hidden()
        assert page.errors == []


def _png(width: int, height: int) -> bytes:
    """A plain grey PNG, written by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def multi(tmp_path: Path) -> Iterator[tuple[Project, list[int]]]:
    names = [
        f"topic_{w}" for w in "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    ]
    p = Project.init(
        tmp_path / "multi",
        name="topics",
        labels=names,
        task="multi_label",
        storage=f"sqlite:///{tmp_path / 'multi.db'}",
    )
    csv = tmp_path / "texts.csv"
    pd.DataFrame({"text": ["a picture of two things", "another one"]}).to_csv(csv, index=False)
    p.ingest(csv)
    ids = sorted(int(i) for i in p.items()["id"])
    p.enqueue(ids, [2.0, 1.0])
    image = tmp_path / "wide.png"
    image.write_bytes(_png(2400, 60))
    with p.db.engine.begin() as conn:
        conn.execute(update(ItemRow).where(ItemRow.id == ids[0]).values(media_path=str(image)))
        probs = {n: 0.05 for n in names} | {"topic_beta": 0.8, "topic_eta": 0.7}
        add_suggestions(conn, [Suggestion(ids[0], "h", "ensemble", "pool.v1", probs, 0.7)])
    create_user(p.db, "rita", "reviewer", PASSWORD)
    yield p, ids
    p.close()


def test_multi_label_by_keyboard_and_image_zoom(multi, browser) -> None:
    p, ids = multi
    with running(create_app(p)) as url:
        page = open_review(browser, url)
        assert shown_item(page) == str(ids[0])
        # The image is shown fitted; Shift+Z (or a click) shows it at full size, and back.
        img = page.locator("#item-media")
        expect(img).to_be_visible()
        fitted = img.bounding_box()["width"]
        page.keyboard.press("Shift+Z")
        expect(page.locator("#zoom.zoomed")).to_have_count(1)
        assert img.bounding_box()["width"] == 2400 > fitted
        page.locator("#zoom").click()
        expect(page.locator("#zoom.zoomed")).to_have_count(0)
        # The machine's set comes pre-selected; Esc clears it, to build a set from scratch.
        expect(page.locator("#selected")).to_have_text("topic_beta, topic_eta")
        page.keyboard.press("Escape")
        expect(page.locator("#selected")).to_have_text("nothing")
        # Toggle three labels: by code in the filter (Enter toggles), by candidate digit
        # (2: topic_eta), and one toggled on and off again; Enter on an empty filter saves.
        codes = page.evaluate("window.labelloopReview.codes()")
        for ch in codes["topic_kappa"]:
            page.keyboard.press(ch)
        page.keyboard.press("Enter")
        expect(page.locator("#filter")).to_have_value("")
        page.keyboard.press("Escape")
        page.keyboard.press("2")
        page.keyboard.press("1")
        page.keyboard.press("1")
        expect(page.locator("#selected")).to_have_text("topic_kappa, topic_eta")
        page.keyboard.press("Enter")
        expect(page.locator("#message")).to_have_text(
            f"Saved item {ids[0]}: topic_kappa, topic_eta"
        )
        assert page.errors == []
    assert sorted(finals(p)[ids[0]]) == ["topic_eta", "topic_kappa"]


def test_multi_label_whole_machine_set_by_enter_and_none_by_zero(multi, browser) -> None:
    p, ids = multi
    with running(create_app(p)) as url:
        page = open_review(browser, url)
        assert shown_item(page) == str(ids[0])
        # The machine's whole set, each label with its own probability, pre-selected.
        machine = page.locator("#machine-set")
        expect(machine).to_be_visible()
        beta = machine.locator('.set-label[data-label="topic_beta"]')
        eta = machine.locator('.set-label[data-label="topic_eta"]')
        expect(beta).to_have_text("topic_beta 80%")
        expect(eta).to_have_text("topic_eta 70%")
        expect(machine.locator(".set-label")).to_have_count(2)
        expect(page.locator("#selected")).to_have_text("topic_beta, topic_eta")
        for name in ("topic_beta", "topic_eta"):
            candidate = page.locator(f'#candidates .candidate[data-label="{name}"]')
            expect(candidate).to_have_attribute("aria-pressed", "true")
        # What each labeler said: its whole set, not one label beside the set's confidence.
        expect(page.locator("#suggestions")).to_contain_text("topic_beta 80%, topic_eta 70%")
        # One key accepts the whole shown set, in the order shown.
        page.keyboard.press("Enter")
        expect(page.locator("#message")).to_have_text(f"Saved item {ids[0]}: topic_beta, topic_eta")
        # The next item has no suggestion: nothing pre-selected, and Enter saves nothing...
        expect(page.locator("#item")).to_have_attribute("data-item-id", str(ids[1]))
        expect(page.locator("#machine-set")).to_be_hidden()
        page.keyboard.press("Enter")
        expect(page.locator("#message.error")).to_contain_text("0 for none of these")
        # ...while 0 (the visible "None of these" control) saves the empty set.
        expect(page.locator("#none")).to_be_visible()
        page.keyboard.press("0")
        expect(page.locator("#message")).to_have_text(f"Saved item {ids[1]}: none of these")
        expect(page.locator("#empty")).to_be_visible()
        # It round-trips through the API: the final labels say [] for that item.
        served = page.request.get(f"{url}/api/labels").json()
        assert {r["item_id"]: r["labels"] for r in served} == {
            ids[0]: ["topic_beta", "topic_eta"],
            ids[1]: [],
        }
        assert page.errors == []
    assert finals(p) == {ids[0]: ["topic_beta", "topic_eta"], ids[1]: []}
