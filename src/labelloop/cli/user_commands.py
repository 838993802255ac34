"""``labelloop user ...``: users of the review app and the API, their tokens and passwords.

Registered in ``cli/main.py`` with ``app.add_typer(user_app, name="user")``. Thin over the
``Project`` facade; the CLI acts with the store's own rights (like an admin).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from labelloop.cli.common import ProjectOpt, console, friendly_errors
from labelloop.cli.common import open_project as _open
from labelloop.core.errors import LabelloopError

user_app = typer.Typer(help="Users of the review app and the API.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="The user name.")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first stdin line.")
]


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise LabelloopError("the password is empty")
    return password


def _say(text: str) -> None:
    """Print a line holding user names and values as they are (no Rich markup or highlighting
    read into them, no cut at the terminal's width)."""
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def _when(dt: datetime | None) -> str:
    return f"{dt:%Y-%m-%d %H:%M} UTC" if dt is not None else "-"


@user_app.command("add")
@friendly_errors
def user_add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, _ . @ -).")],
    role: Annotated[str, typer.Option(help="admin, reviewer or viewer.")] = "reviewer",
    password_stdin: PasswordStdin = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="A machine account: API tokens only, no login.")
    ] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Create a user who can log in to the review app (asks for the password)."""
    password = None if no_password else _read_password(password_stdin)
    with _open(project) as p:
        user = p.create_user(name, role, password)
    console.print(f"Created user [bold]{user.username}[/] with role {user.role}", highlight=False)


@user_app.command("list")
@friendly_errors
def user_list(project: ProjectOpt = Path(".")) -> None:
    """Every user with their role, and whether they are deactivated."""
    with _open(project) as p:
        users = p.users()
    if not users:
        console.print("No users yet: labelloop user add NAME --role admin", highlight=False)
    for u in users:
        state = "" if u.active else "  (deactivated)"
        _say(f"{u.username}  {u.role}{state}")


@user_app.command("token")
@friendly_errors
def user_token(
    name: Annotated[str, typer.Argument(help="The user the token acts as.")],
    label: Annotated[str, typer.Option("--name", help="What the token is for.")] = "api",
    days: Annotated[
        int | None,
        typer.Option(min=1, max=3650, help="Days it works (default: auth.token_days, 90)."),
    ] = None,
    scope: Annotated[
        str,
        typer.Option(
            help="api: the annotation app and REST API; predict: only the prediction app."
        ),
    ] = "api",
    project: ProjectOpt = Path("."),
) -> None:
    """Print a new API token for NAME (shown once; send it as 'Authorization: Bearer ...').
    'labelloop user tokens NAME' shows when it expires."""
    with _open(project) as p:
        issued = p.create_token(name, label, days, scope)
    # Only the bare token, so scripts can capture it: TOKEN=$(labelloop user token bot)
    typer.echo(issued.token)


@user_app.command("tokens")
@friendly_errors
def user_tokens(name: NameArg, project: ProjectOpt = Path(".")) -> None:
    """NAME's API tokens: id, name, state, created, expires, last used (never the values)."""
    with _open(project) as p:
        tokens = p.tokens(name)
    if not tokens:
        _say(f"user {name!r} has no API tokens")
    for t in tokens:
        _say(
            f"{t.id}  {t.name}  {t.state}  created {_when(t.created_at)}  "
            f"expires {_when(t.expires_at)}  last used {_when(t.last_used_at)}",
        )


@user_app.command("revoke-tokens")
@friendly_errors
def user_revoke_tokens(
    name: NameArg,
    token_id: Annotated[
        int | None, typer.Option("--token-id", min=1, help="Only this token (see 'user tokens').")
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Revoke NAME's API tokens (all, or one with --token-id); they stop working at once."""
    with _open(project) as p:
        n = p.revoke_tokens(name, token_id)
    _say(f"Revoked {n} API token(s) of {name!r}")


@user_app.command("deactivate")
@friendly_errors
def user_deactivate(name: NameArg, project: ProjectOpt = Path(".")) -> None:
    """Stop NAME at once: tokens revoked, sessions ended, no login (not the last admin)."""
    with _open(project) as p:
        done = p.deactivate_user(name)
    _say(
        f"Deactivated {name!r}: {done.revoked_tokens} API token(s) revoked, "
        f"{done.ended_sessions} session(s) ended",
    )


@user_app.command("reactivate")
@friendly_errors
def user_reactivate(name: NameArg, project: ProjectOpt = Path(".")) -> None:
    """Let NAME log in again; their old tokens stay revoked (make new ones)."""
    with _open(project) as p:
        changed = p.reactivate_user(name)
    said = "Reactivated" if changed else "Already active:"
    _say(f"{said} {name!r}")


@user_app.command("passwd")
@friendly_errors
def user_passwd(
    name: NameArg, password_stdin: PasswordStdin = False, project: ProjectOpt = Path(".")
) -> None:
    """Set NAME's password (asks for it); their API tokens and sessions stop working."""
    password = _read_password(password_stdin)
    with _open(project) as p:
        done = p.set_password(name, password)
    _say(
        f"Password of {name!r} changed: {done.revoked_tokens} API token(s) revoked, "
        f"{done.ended_sessions} session(s) ended",
    )
