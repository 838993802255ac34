"""The house rule, pinned: a package imports only itself and the packages listed before it.

An ast walk over every module in ``src/labelloop`` collects its imports of ``labelloop.*``:
top-level, function-local and under ``if TYPE_CHECKING:`` alike, ``from labelloop import x``,
relative imports and ``importlib.import_module("labelloop...")``. No dependency beyond pytest.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "labelloop"

# Lowest first. A package may import itself and the packages on the lines above its own; names
# on one line sit side by side and must not import each other.
LAYERS = [
    "edge",  # the on-device runtime: numpy, onnxruntime, tokenizers, sqlite3; no labelloop import
    "core",  # types, config, errors, probs, hashing
    "routing active quality learn monitor",  # the pure floors: arrays in, arrays out; import only core
    "store",  # tables, migrations, every SQL statement, the events outbox, ProjectContext
    "sources",  # readers, validation, ingest
    "embed",  # Embedder protocol, backends, the embedder factory
    "labelers",  # zeroshot, student, ensemble, the cascade, the factory, llm/
    "review",  # the review queue, gold answers
    "auth",  # users, tokens, sessions
    "annotate",  # stage drivers: suggest, route, feedback, checks
    "interop",  # Label Studio both ways, tables
    "mlops",  # the deployed model: datasets, preparation, selection, evaluation (issue 14)
    "registry",  # MLflow tracking and registry: versions, aliases, promotion, history
    "serve",  # the prediction app (A/B, shadow), batch prediction, the edge bundle's export
    "automate",  # monitoring checks, alerts and their delivery, policies and their runs
    "workers",  # the loop worker (outbox cursor, lease)
    "project",  # project.py, the notebook facade
    "api",  # thin: FastAPI app and pages
    "demo",  # the main job, its report, the bundled data (the CLI's `demo` command runs it)
    "cli",  # thin: Typer commands
    "labelloop",  # the package root, labelloop/__init__.py (re-exports Project)
]
RANK = {name: i for i, line in enumerate(LAYERS) for name in line.split()}
PURE_FLOORS = set(LAYERS[2].split())
# What the pure floors may import besides the standard library and labelloop.core
# (threadpoolctl comes with scikit-learn and caps its BLAS threads).
PURE_THIRD_PARTY = {"numpy", "scipy", "sklearn", "pandas", "threadpoolctl"}
REMOVED = ("labelloop.pipeline", "labelloop.export", "labelloop.datasets")
MAY_IMPORT_PROJECT = {"api", "cli", "demo", "labelloop"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_sources() -> dict[str, tuple[str, bool]]:
    """Module name -> (source, is a package), for every module under src/labelloop."""
    return {
        module_name(p): (p.read_text(encoding="utf-8"), p.name == "__init__.py")
        for p in sorted(PACKAGE.rglob("*.py"))
    }


def layer_of(module: str) -> str:
    """``labelloop.store.db`` -> ``store``; ``labelloop.project`` -> ``project``; root -> itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports_of(
    module: str, source: str, is_package: bool, known: set[str]
) -> list[tuple[int, str]]:
    """(line, imported module) for every import in ``source``, resolved to absolute names.

    ``from labelloop.store import queue`` resolves to ``labelloop.store.queue`` when that is a
    module, else to ``labelloop.store`` (the name is an attribute of the package).
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if sub in known else base))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def internal_imports(
    sources: dict[str, tuple[str, bool]],
) -> list[tuple[str, int, str]]:
    """(importer, line, imported) for every import of a labelloop module."""
    known = set(sources) | {module_name(p) for p in PACKAGE.rglob("*.py")}
    out = []
    for module, (source, is_package) in sorted(sources.items()):
        for line, target in imports_of(module, source, is_package, known):
            if target == "labelloop" or target.startswith("labelloop."):
                out.append((module, line, target))
    return out


def layer_violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """Every import that breaks LAYERS, as 'module -> imported (layer a may not import b)'."""
    problems = []
    for module, line, target in internal_imports(sources):
        a, b = layer_of(module), layer_of(target)
        if a == b:
            continue
        if a not in RANK or b not in RANK:
            unknown = a if a not in RANK else b
            problems.append(f"{module} -> {target} (line {line}: {unknown} is not in LAYERS)")
        elif RANK[b] >= RANK[a]:
            problems.append(
                f"{module} -> {target} (layer {a} may not import layer {b}; line {line})"
            )
    return problems


def test_every_import_follows_the_layers() -> None:
    problems = layer_violations(read_sources())
    assert not problems, (
        "imports that break the layer order in tests/test_layering.py (fix the code, or move "
        "the package in LAYERS if the order is what is wrong):\n  " + "\n  ".join(problems)
    )


def test_the_checker_can_fail() -> None:
    fake = {
        "labelloop.core.x": ("from labelloop.api import app\n", False),
        "labelloop.routing.y": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from labelloop.store.db import Database\n"
            "def f():\n"
            "    from labelloop.active import acquisition\n",
            False,
        ),
        "labelloop.store.z": ("from ..labelers import base\n", False),
        "labelloop.embed.w": (
            "from labelloop.store import reads\nfrom labelloop import core\n",
            False,
        ),
    }
    assert layer_violations(fake) == [
        "labelloop.core.x -> labelloop.api.app (layer core may not import layer api; line 1)",
        "labelloop.routing.y -> labelloop.store.db (layer routing may not import layer store; line 3)",
        "labelloop.routing.y -> labelloop.active.acquisition "
        "(layer routing may not import layer active; line 5)",
        "labelloop.store.z -> labelloop.labelers.base (layer store may not import layer labelers; line 1)",
    ]


def test_removed_packages_are_not_imported() -> None:
    stale = [
        f"{module} -> {target} (line {line})"
        for module, line, target in internal_imports(read_sources())
        if any(target == r or target.startswith(r + ".") for r in REMOVED)
    ]
    assert not stale, "imports of removed packages:\n  " + "\n  ".join(stale)


def test_only_api_cli_and_demo_import_project() -> None:
    importers = [
        f"{module} -> {target} (line {line})"
        for module, line, target in internal_imports(read_sources())
        if target == "labelloop.project"
        and layer_of(module) not in MAY_IMPORT_PROJECT | {"project"}
    ]
    assert not importers, "labelloop.project imported outside api, cli, demo:\n  " + "\n  ".join(
        importers
    )


def test_pure_floors_import_only_core_and_array_libraries() -> None:
    problems = []
    for module, (source, is_package) in read_sources().items():
        if layer_of(module) not in PURE_FLOORS:
            continue
        for line, target in imports_of(module, source, is_package, set()):
            top = target.split(".")[0]
            if top in sys.stdlib_module_names or top in PURE_THIRD_PARTY or top == "__future__":
                continue
            if top == "labelloop" and layer_of(target) in {"core", layer_of(module)}:
                continue
            problems.append(f"{module} -> {target} (line {line})")
    assert not problems, "the pure floors reach beyond core and arrays:\n  " + "\n  ".join(problems)
