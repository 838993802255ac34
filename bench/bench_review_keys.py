"""Keystrokes per item on the review page at 77 labels (banking77), old page against new.

    .venv/bin/python bench/bench_review_keys.py

Counted from an item being shown to its answer being saved, Enter included, for every one of
the 77 labels once.

- old (computed from the old page's layout): labels 1-9 had keys (digit + Enter: 2); any
  other label was reached with Tab from the top of the page, past the 5 controls of the
  header (brand, Review, Dashboard, API, Log out) and the labels before it, then Space to
  select it and Enter to save (Enter on the focused button saved the machine's suggestion
  instead, the bug of issue 11). The issue measured a mean of 49 by hand.
- new (measured in headless Chromium): the label's code typed (any letter opens the filter;
  the page shows each code beside its label), then Enter; each answer is checked in the store.
- new, typing the name (computed with the page's own ranking): the shortest start of the
  label's name, words separated by spaces, that puts it first in the filter, then Enter; what
  someone who ignores the codes types.

Needs Debian's /usr/bin/chromium and the playwright package (as the browser tests).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

OLD_HEADER_CONTROLS = 5
OLD_DIGIT_KEYS = 9


def old_keystrokes(n_labels: int) -> list[int]:
    """Keystrokes per label on the old page (see the module's doc)."""
    out = []
    for i in range(n_labels):
        if i < OLD_DIGIT_KEYS:
            out.append(2)  # digit, Enter
        else:
            out.append(OLD_HEADER_CONTROLS + i + 1 + 2)  # Tabs to it, Space, Enter
    return out


def summary(name: str, counts: list[int]) -> str:
    xs = np.asarray(counts)
    return (
        f"{name:28s} median {np.median(xs):5.1f}  p90 {np.percentile(xs, 90):5.1f}  "
        f"mean {xs.mean():5.1f}  max {xs.max():3d}  (n={len(xs)})"
    )


def measure_new() -> tuple[list[int], list[int]]:
    """Keystrokes per label on the new page, pressed in the browser; and by typing names."""
    from browser_support import chromium, log_in, playwright_api, running
    from review_support import PASSWORD, banking77_labels, banking77_project

    from labelloop.api import create_app

    names = banking77_labels()
    work = Path(tempfile.mkdtemp(prefix="labelloop-keys-bench-"))
    p, _ = banking77_project(work / "p", f"sqlite:///{work / 's.db'}", n_items=len(names) + 1)
    by_code, by_name = [], []
    expected = {}
    with running(create_app(p)) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        log_in(page, url, "rita", PASSWORD, "/review")
        expect = playwright_api.expect
        expect(page.locator("#item")).not_to_have_attribute("data-item-id", "")
        for name in names:
            typed = name.replace("_", " ").lower()
            shortest = next(
                k
                for k in range(1, len(typed) + 1)
                if page.evaluate("q => window.labelloopReview.rank(q)[0]", typed[:k]) == name
            )
            by_name.append(shortest + 1)
            item_id = page.locator("#item").get_attribute("data-item-id")
            code = page.locator(f'#labels .label[data-label="{name}"] kbd.code').inner_text()
            presses = 0
            for ch in code:
                page.keyboard.press(ch)
                presses += 1
            page.keyboard.press("Enter")
            presses += 1
            expect(page.locator("#message")).to_have_text(f"Saved item {item_id}: {name}")
            expected[int(item_id)] = name
            by_code.append(presses)
    fl = p.final_labels()
    saved = {int(i): list(v) for i, v in zip(fl["item_id"], fl["labels"], strict=True)}
    assert all(saved[i] == [n] for i, n in expected.items()), "a label was saved wrongly"
    p.close()
    return by_code, by_name


def main() -> None:
    old = old_keystrokes(77)
    by_code, by_name = measure_new()
    print("keystrokes per item, 77 labels (banking77), item shown -> answer saved, Enter included")
    print(summary("old: 1-9 keys, then Tab", old))
    print(summary("new: code + Enter (browser)", by_code))
    print(summary("new: typing the name", by_name))
    print(f"new max <= 4: {max(by_code) <= 4}; median <= 3: {statistics.median(by_code) <= 3}")


if __name__ == "__main__":
    main()
