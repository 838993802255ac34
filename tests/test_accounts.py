"""Accounts that can be stopped: tokens that expire and can be revoked, users who can be
deactivated, password changes, and a first run that says how to make the first admin.

Over the REST API (TestClient) and the CLI (CliRunner), on SQLite and PostgreSQL. Expiry is
tested by moving ``expires_at`` into the past in the store, never by waiting.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert, select, text, update
from typer.testing import CliRunner

from labelloop.api import create_app
from labelloop.auth import (
    AuthError,
    InactiveUser,
    LastAdmin,
    check_token,
    create_token,
    create_user,
    deactivate_user,
)
from labelloop.core.config import parse_project_config
from labelloop.core.errors import ConfigError
from labelloop.project import Project
from labelloop.store.db import Database, _alembic_config
from labelloop.store.models import ApiTokenRow, UserRow, WebSessionRow, utcnow

PASSWORD = "correct horse"
NEW_PASSWORD = "battery staple"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _login_attempt(client: TestClient, username: str, password: str):
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )


def _login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the form; the session's CSRF token."""
    r = _login_attempt(client, username, password)
    assert r.status_code == 303, r.text
    page = client.get("/dashboard")
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text).group(1)


@pytest.fixture
def new_project(make_project):
    """``make_project``, and the users gone afterwards: users belong to the store, not to a
    project, and the PostgreSQL store is shared by this session's tests."""
    made: list[Project] = []

    def _make(**fields) -> Project:
        made.append(make_project(**fields))
        return made[-1]

    yield _make
    for p in made[:1]:
        db = Database(p.db.url, migrate=False)
        try:
            with db.engine.begin() as conn:
                conn.execute(delete(UserRow))
        finally:
            db.dispose()


@pytest.fixture
def acct(new_project):
    p = new_project()
    tokens = {}
    for name, role in (("boss", "admin"), ("rita", "reviewer"), ("vic", "viewer")):
        create_user(p.db, name, role, PASSWORD)
        tokens[name] = create_token(p.db, name)
    app = create_app(p)
    clients: list[TestClient] = []

    def client() -> TestClient:
        """A fresh client (its own cookie jar) over the same app."""
        c = TestClient(app)
        clients.append(c)
        return c

    yield SimpleNamespace(p=p, tokens=tokens, client=client(), new_client=client)
    for c in clients:
        c.close()


def _admin(acct) -> dict[str, str]:
    return _bearer(acct.tokens["boss"])


def _status_with(client: TestClient, headers: dict[str, str] | None = None) -> int:
    return client.get("/api/status", headers=headers or {}).status_code


def _expire(p: Project, token_id: int | None = None) -> None:
    """Move token expiry an hour into the past (one token, or all)."""
    stmt = update(ApiTokenRow).values(expires_at=utcnow() - timedelta(hours=1))
    if token_id is not None:
        stmt = stmt.where(ApiTokenRow.id == token_id)
    with p.db.engine.begin() as conn:
        conn.execute(stmt)


# -- doors -----------------------------------------------------------------------------------

NEW_ENDPOINTS = [
    ("get", "/api/users/rita/tokens"),
    ("delete", "/api/users/rita/tokens"),
    ("delete", "/api/users/rita/tokens/1"),
    ("post", "/api/users/rita/deactivate"),
    ("post", "/api/users/rita/reactivate"),
    ("post", "/api/users/rita/password"),
    ("post", "/api/me/password"),
]


@pytest.mark.parametrize(("method", "path"), NEW_ENDPOINTS)
def test_account_endpoints_need_authentication(acct, method: str, path: str) -> None:
    r = getattr(acct.client, method)(path)
    assert r.status_code == 401 and "log in" in r.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/users/vic/deactivate"),
        ("post", "/api/users/vic/reactivate"),
        ("post", "/api/users/vic/password"),
        ("get", "/api/users/vic/tokens"),
        ("delete", "/api/users/vic/tokens"),
    ],
)
def test_a_reviewer_may_not_manage_someone_else(acct, method: str, path: str) -> None:
    kwargs = {"json": {"password": "x"}} if path.endswith("password") else {}
    r = getattr(acct.client, method)(path, headers=_bearer(acct.tokens["rita"]), **kwargs)
    assert r.status_code == 403 and "admin" in r.json()["detail"]


# -- expiry ----------------------------------------------------------------------------------


def test_an_expired_token_is_refused_with_a_clear_message(acct) -> None:
    h = _bearer(acct.tokens["rita"])
    assert _status_with(acct.client, h) == 200
    _expire(acct.p)
    r = acct.client.get("/api/status", headers=h)
    assert r.status_code == 401
    assert "expired on" in r.json()["detail"] and "ask an admin" in r.json()["detail"]
    (listed,) = acct.p.tokens("rita")
    assert listed.state == "expired"


def test_token_lifetime_comes_from_config_or_the_request(new_project) -> None:
    p = new_project(auth={"token_days": 7})
    create_user(p.db, "boss", "admin", PASSWORD)
    issued = p.create_token("boss", "ci")
    assert timedelta(days=6, hours=23) < issued.expires_at - utcnow() <= timedelta(days=7)
    with TestClient(create_app(p)) as client:
        h = _bearer(issued.token)
        r = client.post("/api/users/boss/tokens", json={"name": "bot", "days": 2}, headers=h)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["name"] == "bot" and body["token"].startswith("llt_")
        assert "2" in body["expires_at"][:4]  # a date, serialized
        (_, bot) = p.tokens("boss")
        assert bot.id == body["id"]
        assert timedelta(days=1, hours=23) < bot.expires_at - utcnow() <= timedelta(days=2)
        default = client.post("/api/users/boss/tokens", headers=h).json()
        (*_, made) = p.tokens("boss")
        assert made.id == default["id"] and made.expires_at - utcnow() > timedelta(days=6)
        for days in (0, 3651):
            r = client.post("/api/users/boss/tokens", json={"days": days}, headers=h)
            assert r.status_code == 422


def test_token_and_session_lifetimes_are_validated_in_the_config() -> None:
    base = {"name": "x", "labels": [{"name": "a"}, {"name": "b"}]}
    assert parse_project_config(base, "p.yaml").auth.token_days == 90
    for bad in ({"token_days": 0}, {"session_hours": 0}, {"token_days": "soon"}):
        with pytest.raises(ConfigError, match=r"p\.yaml: auth\."):
            parse_project_config({**base, "auth": bad}, "p.yaml")


def test_an_expired_session_is_refused(acct) -> None:
    c = acct.new_client()
    _login(c, "rita")
    assert _status_with(c) == 200
    with acct.p.db.engine.begin() as conn:
        conn.execute(update(WebSessionRow).values(expires_at=utcnow() - timedelta(minutes=1)))
    r = c.get("/api/status")
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_session_cookie_lasts_auth_session_hours(new_project) -> None:
    p = new_project(auth={"session_hours": 2})
    create_user(p.db, "rita", "reviewer", PASSWORD)
    with TestClient(create_app(p)) as client:
        r = _login_attempt(client, "rita", PASSWORD)
    assert r.status_code == 303
    assert "Max-Age=7200" in r.headers["set-cookie"]
    with p.db.engine.connect() as conn:
        (ends,) = conn.execute(select(WebSessionRow.expires_at)).scalars().all()
    left = (ends if ends.tzinfo else ends.replace(tzinfo=utcnow().tzinfo)) - utcnow()
    assert timedelta(hours=1, minutes=59) < left <= timedelta(hours=2)


# -- revocation ------------------------------------------------------------------------------


def test_tokens_are_listed_without_secrets_and_stored_hashed(acct) -> None:
    second = create_token(acct.p.db, "rita", "laptop")
    r = acct.client.get("/api/users/rita/tokens", headers=_admin(acct))
    assert r.status_code == 200
    listed = r.json()
    assert [t["name"] for t in listed] == ["api", "laptop"]
    assert {t["state"] for t in listed} == {"live"}
    assert set(listed[0]) == {"id", "name", "created_at", "expires_at", "last_used_at", "state"}
    for plain in (acct.tokens["rita"], second):
        assert plain not in r.text
    with acct.p.db.engine.connect() as conn:
        stored = conn.execute(select(ApiTokenRow.token_hash)).scalars().all()
    assert acct.tokens["rita"] not in stored and all(len(h) == 64 for h in stored)
    # the admin's own call stamped its token's last use; rita's tokens were not used yet
    assert acct.p.tokens("boss")[0].last_used_at is not None
    assert acct.p.tokens("rita")[1].last_used_at is None


def test_revoke_one_token_then_all(acct) -> None:
    other = create_token(acct.p.db, "rita", "laptop")
    first_id, other_id = (t.id for t in acct.p.tokens("rita"))
    r = acct.client.delete(f"/api/users/rita/tokens/{other_id}", headers=_admin(acct))
    assert r.status_code == 200 and r.json() == {"username": "rita", "revoked": 1}
    r = acct.client.get("/api/status", headers=_bearer(other))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert _status_with(acct.client, _bearer(acct.tokens["rita"])) == 200
    # a token of someone else, or none at all: 404, and nothing changes
    boss_id = acct.p.tokens("boss")[0].id
    r = acct.client.delete(f"/api/users/rita/tokens/{boss_id}", headers=_admin(acct))
    assert r.status_code == 404 and "no token" in r.json()["detail"]
    assert acct.client.delete("/api/users/ghost/tokens", headers=_admin(acct)).status_code == 404
    assert _status_with(acct.client, _admin(acct)) == 200
    r = acct.client.delete("/api/users/rita/tokens", headers=_admin(acct))
    assert r.json() == {"username": "rita", "revoked": 1}  # the one still live
    assert _status_with(acct.client, _bearer(acct.tokens["rita"])) == 401
    assert [t.state for t in acct.p.tokens("rita")] == ["revoked", "revoked"]
    assert first_id != other_id


def test_a_user_may_revoke_their_own_tokens(acct) -> None:
    spare = create_token(acct.p.db, "vic", "spare")
    h = _bearer(acct.tokens["vic"])
    listed = acct.client.get("/api/users/vic/tokens", headers=h).json()
    spare_id = next(t["id"] for t in listed if t["name"] == "spare")
    assert acct.client.delete(f"/api/users/vic/tokens/{spare_id}", headers=h).status_code == 200
    assert _status_with(acct.client, _bearer(spare)) == 401
    assert acct.client.delete("/api/users/vic/tokens", headers=h).json()["revoked"] == 1
    assert _status_with(acct.client, h) == 401  # the token that asked is gone too


# -- deactivation ----------------------------------------------------------------------------


def test_deactivation_stops_an_existing_token_and_session_at_once(acct) -> None:
    browser = acct.new_client()
    _login(browser, "rita")
    rita = _bearer(acct.tokens["rita"])
    assert _status_with(browser) == 200 and _status_with(acct.client, rita) == 200
    r = acct.client.post("/api/users/rita/deactivate", headers=_admin(acct))
    assert r.status_code == 200, r.text
    assert r.json()["revoked_tokens"] == 1 and r.json()["ended_sessions"] == 1
    assert _status_with(acct.client, rita) == 401
    assert _status_with(browser) == 401
    users = {u["username"]: u for u in acct.client.get("/api/users", headers=_admin(acct)).json()}
    assert users["rita"]["active"] is False and users["vic"]["active"] is True


def test_a_deactivated_users_token_stops_even_if_not_revoked(acct) -> None:
    """The store refuses tokens of an inactive user by itself, not only through revocation."""
    with acct.p.db.engine.begin() as conn:
        conn.execute(update(UserRow).where(UserRow.username == "rita").values(active=False))
    r = acct.client.get("/api/status", headers=_bearer(acct.tokens["rita"]))
    assert r.status_code == 401 and "deactivated" in r.json()["detail"]


def test_a_deactivated_user_cannot_log_in_and_is_told_the_same_as_a_wrong_password(
    acct, monkeypatch
) -> None:
    import labelloop.auth.users as users

    checked: list[str | None] = []
    real = users.verify_password

    def spy(password: str, stored: str | None) -> bool:
        checked.append(stored)
        return real(password, stored)

    monkeypatch.setattr(users, "verify_password", spy)
    deactivate_user(acct.p.db, "rita")
    wrong = _login_attempt(acct.new_client(), "vic", "not it")
    inactive = _login_attempt(acct.new_client(), "rita", PASSWORD)
    assert wrong.status_code == inactive.status_code == 401
    said = [re.search(r'role="alert">([^<]+)<', r.text).group(1) for r in (wrong, inactive)]
    assert said[0] == said[1] == "Wrong user name or password."
    assert len(checked) == 2  # one scrypt check each: the same work, the same time


def test_an_inactive_user_cannot_get_a_token(acct) -> None:
    deactivate_user(acct.p.db, "rita")
    with pytest.raises(InactiveUser, match="deactivated"):
        create_token(acct.p.db, "rita")
    r = acct.client.post("/api/users/rita/tokens", headers=_admin(acct))
    assert r.status_code == 409 and "reactivate" in r.json()["detail"]
    assert acct.client.post("/api/users/ghost/tokens", headers=_admin(acct)).status_code == 404
    assert [t.state for t in acct.p.tokens("rita")] == ["revoked"]


def test_reactivation_lets_them_in_again_with_new_tokens_only(acct) -> None:
    acct.client.post("/api/users/rita/deactivate", headers=_admin(acct))
    r = acct.client.post("/api/users/rita/reactivate", headers=_admin(acct))
    assert r.status_code == 200 and r.json()["active"] is True
    assert _status_with(acct.client, _bearer(acct.tokens["rita"])) == 401  # old: still revoked
    _login(acct.new_client(), "rita")
    fresh = acct.client.post("/api/users/rita/tokens", headers=_admin(acct)).json()["token"]
    assert _status_with(acct.client, _bearer(fresh)) == 200
    assert acct.client.post("/api/users/ghost/reactivate", headers=_admin(acct)).status_code == 404


def test_the_last_active_admin_cannot_be_deactivated(acct) -> None:
    r = acct.client.post("/api/users/boss/deactivate", headers=_admin(acct))
    assert r.status_code == 409 and "last active admin" in r.json()["detail"]
    assert _status_with(acct.client, _admin(acct)) == 200  # nothing changed
    create_user(acct.p.db, "ada", "admin", PASSWORD)
    assert acct.client.post("/api/users/boss/deactivate", headers=_admin(acct)).status_code == 200
    with pytest.raises(LastAdmin):
        deactivate_user(acct.p.db, "ada")
    assert [u.active for u in acct.p.users() if u.username == "ada"] == [True]


# -- passwords -------------------------------------------------------------------------------


def test_changing_ones_own_password_needs_the_current_one(acct) -> None:
    h = _bearer(acct.tokens["rita"])
    body = {"current_password": "not it", "new_password": NEW_PASSWORD}
    r = acct.client.post("/api/me/password", json=body, headers=h)
    assert r.status_code == 403 and "current password is wrong" in r.json()["detail"]
    body["current_password"] = PASSWORD
    r = acct.client.post("/api/me/password", json=body, headers=h)
    assert r.status_code == 200, r.text
    assert _login_attempt(acct.new_client(), "rita", PASSWORD).status_code == 401
    _login(acct.new_client(), "rita", NEW_PASSWORD)


def test_a_password_change_ends_the_users_other_sessions_and_tokens(acct) -> None:
    other_browser, this_browser = acct.new_client(), acct.new_client()
    _login(other_browser, "rita")
    csrf = _login(this_browser, "rita")
    laptop = create_token(acct.p.db, "rita", "laptop")
    r = this_browser.post(
        "/api/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["revoked_tokens"] == 2 and out["ended_sessions"] == 1
    assert "2 other API token(s) revoked" in out["message"]
    assert _status_with(this_browser) == 200  # the session that asked goes on
    assert _status_with(other_browser) == 401
    for token in (laptop, acct.tokens["rita"]):
        assert _status_with(acct.client, _bearer(token)) == 401


def test_a_change_through_a_token_keeps_that_token(acct) -> None:
    laptop = create_token(acct.p.db, "vic", "laptop")
    h = _bearer(acct.tokens["vic"])
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert acct.client.post("/api/me/password", json=body, headers=h).json()["revoked_tokens"] == 1
    assert _status_with(acct.client, h) == 200 and _status_with(acct.client, _bearer(laptop)) == 401


def test_wrong_current_passwords_are_throttled(acct) -> None:
    h = _bearer(acct.tokens["vic"])
    body = {"current_password": "guess", "new_password": NEW_PASSWORD}
    codes = [
        acct.client.post("/api/me/password", json=body, headers=h).status_code for _ in range(6)
    ]
    assert codes == [403] * 5 + [429]
    body["current_password"] = PASSWORD  # even the right one waits now
    assert acct.client.post("/api/me/password", json=body, headers=h).status_code == 429


def test_an_admin_resets_a_password_and_the_users_credentials_stop(acct) -> None:
    browser = acct.new_client()
    _login(browser, "rita")
    r = acct.client.post(
        "/api/users/rita/password", json={"password": NEW_PASSWORD}, headers=_admin(acct)
    )
    assert r.status_code == 200, r.text
    assert r.json()["revoked_tokens"] == 1 and r.json()["ended_sessions"] == 1
    assert _status_with(browser) == 401
    assert _status_with(acct.client, _bearer(acct.tokens["rita"])) == 401
    assert _status_with(acct.client, _admin(acct)) == 200  # the admin's own token goes on
    _login(acct.new_client(), "rita", NEW_PASSWORD)
    for body, code in (({"password": ""}, 422), ({"password": "x" * 1025}, 422)):
        r = acct.client.post("/api/users/rita/password", json=body, headers=_admin(acct))
        assert r.status_code == code
    r = acct.client.post("/api/users/ghost/password", json={"password": "x"}, headers=_admin(acct))
    assert r.status_code == 404 and "ghost" in r.json()["detail"]


def test_an_admin_resetting_their_own_password_keeps_the_token_they_use(acct) -> None:
    r = acct.client.post(
        "/api/users/boss/password", json={"password": NEW_PASSWORD}, headers=_admin(acct)
    )
    assert r.status_code == 200 and r.json()["revoked_tokens"] == 0
    assert _status_with(acct.client, _admin(acct)) == 200


def test_user_names_outside_the_allowed_characters_are_refused_early(acct) -> None:
    with pytest.raises(AuthError, match="may hold only"):
        create_user(acct.p.db, "eve\n", "admin", PASSWORD)
    for path in ("/api/users/a%00b/tokens", "/api/users/a%20b/tokens"):
        r = acct.client.get(path, headers=_admin(acct))
        assert r.status_code == 422
    r = _login_attempt(acct.new_client(), "boss\x00", PASSWORD)  # no 500 on PostgreSQL
    assert r.status_code == 401


def test_check_token_says_why(acct) -> None:
    with pytest.raises(AuthError, match="unknown API token"):
        check_token(acct.p.db, "llt_nope")
    user, token_id = check_token(acct.p.db, acct.tokens["vic"])
    assert user.username == "vic" and token_id == acct.p.tokens("vic")[0].id


# -- the first run ---------------------------------------------------------------------------


def test_the_login_page_says_how_to_make_the_first_admin(new_project) -> None:
    p = new_project()
    with TestClient(create_app(p)) as client:
        page = client.get("/login").text
        assert "labelloop user add admin --role admin -p" in page
        create_user(p.db, "boss", "admin", PASSWORD)
        assert "labelloop user add admin" not in client.get("/login").text


# -- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def cli():
    from labelloop.cli.main import app

    return app


def test_serve_on_a_project_without_an_admin_prints_the_command(cli, tmp_path: Path) -> None:
    folder = tmp_path / "my project"
    Project.init(folder, name="first", labels=["a", "b"], storage="sqlite:///store.db").close()
    r = CliRunner().invoke(cli, ["serve", "-p", str(folder)])
    assert r.exit_code == 1
    assert f"labelloop user add admin --role admin -p '{folder}'" in r.output


def test_cli_tokens_revocation_deactivation_and_passwords(cli, new_project) -> None:
    p = new_project()
    create_user(p.db, "boss", "admin", PASSWORD)
    create_user(p.db, "rita", "reviewer", PASSWORD)
    folder = str(p.folder)
    p.close()
    run = CliRunner()

    def ok(*args: str, stdin: str | None = None) -> str:
        r = run.invoke(cli, [*args, "-p", folder], input=stdin)
        assert r.exit_code == 0, r.output
        return r.output

    def fails(*args: str) -> str:
        r = run.invoke(cli, [*args, "-p", folder])
        assert r.exit_code == 1, r.output
        return r.output

    first = ok("user", "token", "rita", "--days", "3").strip()
    second = ok("user", "token", "rita", "--name", "laptop").strip()
    assert first.startswith("llt_") and second.startswith("llt_")
    lines = ok("user", "tokens", "rita").splitlines()
    assert len(lines) == 2 and all(" live " in line for line in lines)
    assert first not in "".join(lines)
    laptop_id = next(line.split()[0] for line in lines if " laptop " in line)
    assert "Revoked 1" in ok("user", "revoke-tokens", "rita", "--token-id", laptop_id)
    assert "has no token" in fails("user", "revoke-tokens", "rita", "--token-id", "999")
    assert "Revoked 1" in ok("user", "revoke-tokens", "rita")  # the other one
    assert "last active admin" in fails("user", "deactivate", "boss")
    assert "Deactivated 'rita'" in ok("user", "deactivate", "rita")
    assert "deactivated" in ok("user", "list")
    assert "reactivate" in fails("user", "token", "rita")
    assert "Reactivated 'rita'" in ok("user", "reactivate", "rita")
    fresh = ok("user", "token", "rita").strip()
    out = ok("user", "passwd", "rita", "--password-stdin", stdin=f"{NEW_PASSWORD}\n")
    assert "1 API token(s) revoked" in out
    assert (
        "the password is empty"
        in run.invoke(
            cli, ["user", "passwd", "rita", "--password-stdin", "-p", folder], input="\n"
        ).output
    )
    assert "no user 'ghost'" in fails("user", "deactivate", "ghost")

    with Project.open(folder) as p:
        with TestClient(create_app(p)) as client:
            assert _status_with(client, _bearer(fresh)) == 401  # revoked by passwd
            _login(client, "rita", NEW_PASSWORD)
        days_left = p.tokens("rita")[0].expires_at - utcnow()
    assert timedelta(days=2, hours=23) < days_left <= timedelta(days=3)


# -- the migration ---------------------------------------------------------------------------


def test_tokens_made_before_expiry_existed_get_an_end_on_upgrade(storage_url: str) -> None:
    from alembic import command

    db = Database(storage_url)
    try:
        cfg = _alembic_config()
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0004")
            conn.execute(
                insert(UserRow).values(
                    username="old-timer", role="admin", active=True, created_at=utcnow()
                )
            )
            conn.execute(
                text(
                    "INSERT INTO api_tokens (user_id, name, token_hash, created_at, revoked) "
                    "SELECT id, 'old', :h, :now, false FROM users WHERE username = 'old-timer'"
                ),
                {"h": "0" * 64, "now": utcnow()},
            )
        db.dispose()
        db = Database(storage_url)  # migrates to the head on open
        with db.engine.connect() as conn:
            (ends,) = conn.execute(select(ApiTokenRow.expires_at)).scalars().all()
        ends = ends if ends.tzinfo else ends.replace(tzinfo=utcnow().tzinfo)
        assert timedelta(days=89) < ends - utcnow() <= timedelta(days=90)
    finally:
        with db.engine.begin() as conn:
            conn.execute(delete(UserRow))
        db.dispose()
