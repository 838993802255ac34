"""``labelloop serve`` and ``labelloop user add|token``.

Registered in ``cli/main.py`` with ``app.command()(serve)`` and
``app.add_typer(user_app, name="user")``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from labelloop.cli.common import ProjectOpt, console, friendly_errors
from labelloop.cli.common import open_project as _open
from labelloop.core.errors import LabelloopError

user_app = typer.Typer(help="Users of the review app and the API.", no_args_is_help=True)


@friendly_errors
def serve(
    project: ProjectOpt = Path("."),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="The app alone, without the loop worker.")
    ] = False,
) -> None:
    """Run the review web app, the REST API and the project's loop worker (new items are
    suggested and routed, people's labels retrain the models); Ctrl-C stops it."""
    import uvicorn

    from labelloop.api import create_app
    from labelloop.auth import list_users
    from labelloop.workers.process import start_worker_process, stop_worker_process

    p = _open(project)
    try:
        if not any(u.role == "admin" for u in list_users(p.db)):
            raise LabelloopError(
                "no admin user yet: create one first with "
                f"'labelloop user add NAME --role admin -p {project}'"
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


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise LabelloopError("the password is empty")
    return password


@user_app.command("add")
@friendly_errors
def user_add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, _ . @ -).")],
    role: Annotated[str, typer.Option(help="admin, reviewer or viewer.")] = "reviewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first stdin line.")
    ] = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="A machine account: API tokens only, no login.")
    ] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Create a user who can log in to the review app (asks for the password)."""
    from labelloop.auth import create_user

    password = None if no_password else _read_password(password_stdin)
    with _open(project) as p:
        user = create_user(p.db, name, role, password)
    console.print(f"Created user [bold]{user.username}[/] with role {user.role}", highlight=False)


@user_app.command("token")
@friendly_errors
def user_token(
    name: Annotated[str, typer.Argument(help="The user the token acts as.")],
    label: Annotated[str, typer.Option("--name", help="What the token is for.")] = "api",
    project: ProjectOpt = Path("."),
) -> None:
    """Print a new API token for NAME (shown once; send it as 'Authorization: Bearer ...')."""
    from labelloop.auth import create_token

    with _open(project) as p:
        token = create_token(p.db, name, label)
    # The bare token on stdout so scripts can capture it: TOKEN=$(labelloop user token bot)
    typer.echo(token)
