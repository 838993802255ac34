"""What every CLI module shares: the consoles, the project option, one-line errors."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from labelloop.core.errors import LabelloopError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

ProjectOpt = Annotated[
    Path, typer.Option("--project", "-p", help="Project folder (holds labelloop.yaml).")
]


def friendly_errors(fn: F) -> F:
    """Turn labelloop's own errors into one line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LabelloopError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def open_project(project: Path):  # noqa: ANN201 - a Project (imported lazily: fast --help)
    from labelloop.project import Project

    return Project.open(project)


@contextmanager
def progress_bar(
    description: str, enabled: bool = True
) -> Iterator[Callable[[int, int | None], None]]:
    """A ``progress(done, total)`` callback for a stage, drawn as a Rich bar on stderr."""
    from rich.progress import Progress

    with Progress(console=err_console, disable=not enabled, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update
