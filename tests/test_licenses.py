"""Every package of the default install has a license compatible with Apache-2.0 (no GPL/AGPL)."""

from __future__ import annotations

import re
from importlib import metadata

from packaging.requirements import Requirement

# Copyleft licenses that would bind users of the default install. LGPL is fine (dynamic linking).
FORBIDDEN = re.compile(r"(?<!L)(?<!Lesser )\b(A?GPL|GNU (Affero )?General Public License)", re.I)


def _license_text(dist: metadata.Distribution) -> str:
    md = dist.metadata
    parts = [md.get("License-Expression") or "", (md.get("License") or "")[:300]]
    parts += [c for c in md.get_all("Classifier") or [] if c.startswith("License ::")]
    return " | ".join(p for p in parts if p)


def default_install_closure() -> dict[str, str]:
    """Name -> license text for labelloop's default dependencies, transitively, no extras."""
    seen: dict[str, str] = {}
    todo = [Requirement(r) for r in metadata.requires("labelloop") or []]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = req.name.lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # platform-specific dependency not installed here
        seen[name] = _license_text(dist)
        todo += [Requirement(r) for r in dist.requires or []]
    return seen


def test_closure_is_found() -> None:
    closure = default_install_closure()
    assert {"sqlalchemy", "numpy", "onnxruntime", "psycopg"} <= set(closure)


def test_no_gpl_or_agpl_in_default_install() -> None:
    offenders = {
        name: text for name, text in default_install_closure().items() if FORBIDDEN.search(text)
    }
    assert offenders == {}, f"copyleft licenses in the default install: {offenders}"


def test_the_check_itself_catches_gpl_and_spares_lgpl() -> None:
    assert FORBIDDEN.search("License :: OSI Approved :: GNU Affero General Public License v3")
    assert FORBIDDEN.search("GPL-3.0-or-later")
    assert not FORBIDDEN.search("LGPL-3.0-only")
    assert not FORBIDDEN.search(
        "License :: OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)"
    )
