"""``labelloop serve``. Registered in ``cli/main.py`` with ``app.command()(serve)``.

The ``user`` commands live in ``cli/user_commands.py``; ``user_app`` is imported here too, for
code that took both from this module.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from labelloop.cli.common import ProjectOpt, console, friendly_errors
from labelloop.cli.common import open_project as _open
from labelloop.cli.user_commands import user_app
from labelloop.core.errors import LabelloopError

__all__ = ["first_admin_command", "serve", "user_app"]


def first_admin_command(project: Path) -> str:
    """The command that creates the first admin of the project in ``project`` (it asks for
    the password)."""
    return f"labelloop user add admin --role admin -p {shlex.quote(str(project))}"


@friendly_errors
def serve(
    project: ProjectOpt = Path("."),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="The app alone, without the loop worker.")
    ] = False,
    log_json: Annotated[
        bool, typer.Option(help="Log JSON lines to stderr (one per request, with its id).")
    ] = False,
) -> None:
    """Run the review web app, the REST API and the project's loop worker (new items are
    suggested and routed, people's labels retrain the models); Ctrl-C stops it."""
    import uvicorn

    from labelloop.api import create_app
    from labelloop.auth import has_active_admin
    from labelloop.workers.process import start_worker_process, stop_worker_process

    if log_json:
        from labelloop.workers.metrics import configure_json_logging

        configure_json_logging()
    p = _open(project)
    try:
        if not has_active_admin(p.db):
            raise LabelloopError(
                "no active admin user yet; create one (it asks for the password), then serve "
                f"again:\n\n    {first_admin_command(project)}\n\n"
                "(any name will do: labelloop user add NAME --role admin)"
            )
        shown = f"[{host}]" if ":" in host else host
        console.print(
            f"labelloop: project [bold]{p.config.name}[/] at http://{shown}:{port}/ "
            f"(API docs at /docs)",
            highlight=False,
        )
        worker = None
        if not no_worker:
            worker = start_worker_process(project)
        try:
            # proxy_headers off: uvicorn would believe X-Forwarded-For from 127.0.0.1 by
            # default; the app honours it only from the project's api.trusted_proxies.
            uvicorn.run(create_app(p), host=host, port=port, log_level="info", proxy_headers=False)
        finally:
            if worker is not None:
                stop_worker_process(worker)
    finally:
        p.close()
