"""Limits and validation on every input of the REST API and the review app (issue 11, item 3):
numbers the store cannot hold, errors that repeat huge inputs, body and upload sizes, path
ingest, project names, NUL characters, login timing, forwarded headers and the undo race."""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from labelloop.api import create_app
from labelloop.auth import AuthError, authenticate, create_token, create_user
from labelloop.auth.passwords import DUMMY_HASH
from labelloop.auth.throttle import LoginThrottle
from labelloop.core.config import parse_project_config
from labelloop.core.errors import ConfigError, LabelError, quoted
from labelloop.project import Project
from labelloop.store.models import UserRow

PASSWORD = "correct horse"
TOO_BIG = 2**63


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def env(tmp_path: Path, storage_url: str):
    """A project on each store with six items (four queued), an admin and two reviewers."""
    name = f"spam-{uuid.uuid4().hex[:8]}"  # one PostgreSQL database serves every test
    p = Project.init(tmp_path / "proj", name=name, labels=["ham", "spam"], storage=storage_url)
    csv = tmp_path / "msgs.csv"
    pd.DataFrame({"text": [f"message number {i}" for i in range(6)]}).to_csv(csv, index=False)
    p.ingest(csv)
    ids = [int(i) for i in p.items()["id"]]
    p.enqueue(ids[:4], [0.9, 0.8, 0.7, 0.6])
    h, names = {}, {}
    suffix = uuid.uuid4().hex[:6]  # users live in the store, beside every test's project
    for name, role in (("boss", "admin"), ("ana", "reviewer"), ("ben", "reviewer")):
        names[name] = f"{name}-{suffix}"
        create_user(p.db, names[name], role, PASSWORD)
        h[name] = _bearer(create_token(p.db, names[name]))
    clients: list[TestClient] = []

    def client(**api: object) -> TestClient:
        """A client over an app built with these ``api`` settings (the defaults otherwise)."""
        for key, value in api.items():
            setattr(p.config.api, key, value)
        c = TestClient(create_app(p))
        clients.append(c)
        return c

    yield SimpleNamespace(
        p=p, ids=ids, h=h, names=names, client=client(), make_client=client, tmp=tmp_path
    )
    for c in clients:
        c.close()
    p.close()


def _detail(r) -> str:
    detail = r.json()["detail"]
    return detail if isinstance(detail, str) else json.dumps(detail)


# -- 1. integers bounded, floats finite --------------------------------------------------------


def test_ids_and_times_past_what_the_store_holds_are_422(env) -> None:
    c, h = env.client, env.h["ana"]
    for path in (f"/api/items/{TOO_BIG}/label", f"/api/items/{TOO_BIG}/skip"):
        r = c.post(path, json={"labels": ["ham"]}, headers=h)
        assert r.status_code == 422, r.text
        assert "less than or equal to 9223372036854775807" in _detail(r)
    assert c.get(f"/api/items/{TOO_BIG}/media", headers=h).status_code == 422
    assert c.post("/api/items/0/skip", headers=h).status_code == 422
    item = c.post("/api/queue/next", headers=h).json()["item"]
    url = f"/api/items/{item['id']}/label"
    for ms in (TOO_BIG, 2**31, -1):
        r = c.post(url, json={"labels": ["ham"], "time_spent_ms": ms}, headers=h)
        assert r.status_code == 422, (ms, r.text)
        assert "time_spent_ms" in _detail(r)
    # The largest value the store's column holds is fine, on both stores.
    r = c.post(url, json={"labels": ["ham"], "time_spent_ms": 2**31 - 1}, headers=h)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_priorities_are_422_and_items_stay_readable(env, bad: str) -> None:
    c, h = env.client, env.h["boss"]
    body = f'{{"item_ids": [{env.ids[4]}, {env.ids[5]}], "priorities": [1.0, {bad}]}}'
    r = c.post(
        "/api/queue/enqueue", content=body, headers={**h, "content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert "finite number" in _detail(r)
    json.loads(r.text)  # the error body itself is valid JSON (no bare NaN in it)
    assert c.get("/api/items", headers=h).status_code == 200


def test_enqueue_bounds_ids_reason_and_reviews(env) -> None:
    c, h = env.client, env.h["boss"]
    for body in (
        {"item_ids": [TOO_BIG]},
        {"item_ids": [env.ids[4]], "reason": "x" * 50},
        {"item_ids": [env.ids[4]], "reviews_needed": 10**9},
    ):
        r = c.post("/api/queue/enqueue", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
    r = c.post("/api/queue/enqueue", json={"item_ids": [env.ids[4]], "reason": "audit"}, headers=h)
    assert r.status_code == 200


# -- 2. errors quote an excerpt --------------------------------------------------------------


def test_an_unknown_huge_label_is_not_echoed_back(env) -> None:
    huge = "x" * 10_000_000
    with pytest.raises(LabelError) as err:
        env.p.check_labels([huge])
    assert len(str(err.value)) < 400 and "…" in str(err.value) and "10,000,000" in str(err.value)
    c = env.make_client(max_body_bytes=20_000_000)
    h = env.h["ana"]
    item = c.post("/api/queue/next", headers=h).json()["item"]
    r = c.post(f"/api/items/{item['id']}/label", json={"labels": [huge]}, headers=h)
    assert r.status_code == 422 and len(r.content) < 2000, len(r.content)
    # A label short enough for the schema but outside the taxonomy: the LabelError, cut short.
    r = c.post(f"/api/items/{item['id']}/label", json={"labels": ["y" * 900]}, headers=h)
    assert r.status_code == 422 and "not in the taxonomy" in r.json()["detail"]
    assert "…" in r.json()["detail"] and len(r.json()["detail"]) < 400


def test_validation_errors_quote_a_short_excerpt(env) -> None:
    c, h = env.client, env.h["boss"]
    r = c.post("/api/users", json={"username": "u" * 500_000, "role": "viewer"}, headers=h)
    assert r.status_code == 422 and len(r.content) < 2000, len(r.content)
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "username"] and error["input"].startswith("uuu")
    assert error["input"].endswith("(500,000 characters)")
    r = c.post("/api/queue/enqueue", json={"item_ids": "7" * 500_000}, headers=h)
    assert r.status_code == 422 and len(r.content) < 2000
    r = c.get("/api/items?state=" + "q" * 5000, headers=h)
    assert r.status_code == 422 and len(r.content) < 2000


# -- 3. body and upload sizes ----------------------------------------------------------------


def test_bodies_over_the_limit_are_413(env) -> None:
    c = env.make_client(max_body_bytes=2_000, max_upload_bytes=5_000)
    h = env.h["boss"]
    body = {"item_ids": [env.ids[4]] * 1000}
    r = c.post("/api/queue/enqueue", json=body, headers=h)
    assert r.status_code == 413 and "api.max_body_bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        data = json.dumps(body).encode()
        for i in range(0, len(data), 500):
            yield data[i : i + 500]

    r = c.post(
        "/api/queue/enqueue",
        content=chunks(),
        headers={**h, "content-type": "application/json"},
    )
    assert r.status_code == 413 and "api.max_body_bytes" in r.json()["detail"]
    r = c.post("/api/queue/enqueue", json={"item_ids": [env.ids[4]]}, headers=h)
    assert r.status_code == 200
    # An upload may be larger than a body, up to its own limit.
    small = b"text\n" + b"an uploaded message of some length\n" * 100  # ~3.5 kB
    r = c.post("/api/ingest", files={"file": ("ok.csv", io.BytesIO(small))}, headers=h)
    assert r.status_code == 200, r.text


def test_uploads_over_the_limit_leave_no_file(env) -> None:
    c = env.make_client(max_upload_bytes=5_000)
    h = env.h["boss"]
    uploads = env.p.folder / "uploads"
    big = b"text\n" + b"line of an upload that is too large\n" * 1000
    r = c.post("/api/ingest", files={"file": ("big.csv", io.BytesIO(big))}, headers=h)
    assert r.status_code == 413 and "api.max_upload_bytes" in r.json()["detail"]
    # Without a Content-Length the upload is cut off while it is read, and removed.
    boundary = "limitsboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"'
        f"\r\nContent-Type: text/csv\r\n\r\n".encode()
        + big
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = c.post(
        "/api/ingest",
        content=(body[i : i + 1000] for i in range(0, len(body), 1000)),
        headers={**h, "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413, r.text
    assert not uploads.exists() or not list(uploads.iterdir())
    # An upload that fails to ingest or import is removed as well.
    r = c.post("/api/ingest", files={"file": ("x.docx", io.BytesIO(b"a"))}, headers=h)
    assert r.status_code == 400
    r = c.post(
        "/api/import/label-studio",
        files={"file": ("tasks.json", io.BytesIO(b"{not json"))},
        headers=h,
    )
    assert r.status_code >= 400
    assert not uploads.exists() or not list(uploads.iterdir())


def test_size_settings_are_validated() -> None:
    base = {"name": "x", "labels": [{"name": "a"}, {"name": "b"}]}
    cfg = parse_project_config(base, "x.yaml")
    assert (cfg.api.max_body_bytes, cfg.api.max_upload_bytes) == (1_000_000, 100_000_000)
    assert cfg.api.trusted_proxies == [] and cfg.ingest.import_dirs == []
    with pytest.raises(ConfigError) as err:
        parse_project_config({**base, "api": {"max_body_bytes": 10}}, "x.yaml")
    assert err.value.key == "api.max_body_bytes"
    with pytest.raises(ConfigError) as err:
        parse_project_config({**base, "api": {"trusted_proxies": ["proxy.local"]}}, "x.yaml")
    assert err.value.key == "api.trusted_proxies" and "not an IP address" in err.value.problem


# -- 4. path ingest over HTTP ----------------------------------------------------------------


def test_path_ingest_is_off_by_default(env) -> None:
    outside = env.tmp / "outside.csv"
    outside.write_text("text\nsecret line\n")
    r = env.client.post("/api/ingest", data={"path": str(outside)}, headers=env.h["boss"])
    assert r.status_code == 403
    assert r.json()["detail"].startswith("path ingest over HTTP is off; set ingest.import_dirs")


def test_path_ingest_stays_inside_the_import_folders(env) -> None:
    incoming = env.tmp / "incoming"
    incoming.mkdir()
    (incoming / "batch.csv").write_text("text\nfrom the import folder\n")
    (incoming / "second.csv").write_text("text\nby its relative name\n")
    secret = env.tmp / "secret.csv"
    secret.write_text("text\nsecret line\n")
    os.symlink(secret, incoming / "link.csv")
    env.p.config.ingest.import_dirs = [str(incoming)]
    c, h = env.client, env.h["boss"]
    r = c.post("/api/ingest", data={"path": str(incoming / "batch.csv")}, headers=h)
    assert r.status_code == 200 and r.json()["items_added"] == 1, r.text
    r = c.post("/api/ingest", data={"path": "second.csv"}, headers=h)
    assert r.status_code == 200 and r.json()["items_added"] == 1, r.text
    refused = {}
    for given in (
        str(secret),  # absolute, outside
        "../secret.csv",  # a climb
        str(incoming / ".." / "secret.csv"),
        "link.csv",  # a symbolic link out
        "missing.csv",  # inside, does not exist
        str(env.tmp / "nowhere.csv"),  # outside, does not exist
        "bad\x00name.csv",
    ):
        r = c.post("/api/ingest", data={"path": given}, headers=h)
        refused[given] = (r.status_code, r.json()["detail"].replace(quoted(given), "PATH"))
    assert set(refused.values()) == {
        (404, "no file or folder PATH inside the import folders (ingest.import_dirs)")
    }, refused
    assert "secret line" not in set(env.p.items()["content"])
    # uploads keep working with import folders set or not
    r = c.post("/api/ingest", files={"file": ("u.csv", io.BytesIO(b"text\nupl\n"))}, headers=h)
    assert r.status_code == 200


# -- 5. project names ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../escape", "a/b", "a\\b", "x..y", "nul\x00", "tab\there"])
def test_project_names_that_could_leave_a_folder_are_refused(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_project_config({"name": name, "labels": [{"name": "a"}, {"name": "b"}]}, "p.yaml")
    assert err.value.key == "name" and "project name must not hold" in err.value.problem


def test_export_file_name_is_safe(tmp_path: Path) -> None:
    p = Project.init(
        tmp_path / "p",
        name="my project: v2 (€)",
        labels=["a", "b"],
        storage=f"sqlite:///{tmp_path / 's.db'}",
    )
    try:
        create_user(p.db, "boss", "admin", PASSWORD)
        h = _bearer(create_token(p.db, "boss"))
        with TestClient(create_app(p)) as c:
            r = c.get("/api/export?format=csv", headers=h)
        assert r.status_code == 200
        assert 'filename="my_project_v2-labels.csv"' in r.headers["content-disposition"]
    finally:
        p.close()


# -- 6. NUL characters -----------------------------------------------------------------------


def test_nul_characters_are_quarantined_and_the_chunk_kept(make_project, tmp_path: Path) -> None:
    p = make_project()
    csv = tmp_path / "nul.csv"
    csv.write_bytes(b"text,note\ngood one,x\nbad \x00 one,x\ngood two,x\n")
    r = p.ingest(csv)
    assert (r.rows_read, r.items_added, r.quarantined) == (2, 2, 1)
    assert r.quarantine_reasons == {"nul-character": 1}
    jsonl = tmp_path / "nul.jsonl"
    rows = [{"text": "j1"}, {"text": "j2", "note": "bad\x00"}, {"text": "j3", "m": {"k\x00": 1}}]
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    r = p.ingest(jsonl)
    assert (r.rows_read, r.items_added, r.quarantined) == (1, 1, 2)
    q = p.quarantine()
    assert len(q) == 3 and all(reason.startswith("nul-character: ") for reason in q["reason"])
    assert "field 'text'" in q["reason"][0] and "(line 3)" in q["reason"][0]
    assert sorted(p.items()["content"]) == ["good one", "good two", "j1"]


# -- 7. login timing -------------------------------------------------------------------------


def test_login_checks_a_hash_for_unknown_users_too(env, monkeypatch) -> None:
    import labelloop.auth.users as users

    checked: list[str | None] = []
    real = users.verify_password

    def spy(password: str, stored: str | None) -> bool:
        checked.append(stored)
        return real(password, stored)

    monkeypatch.setattr(users, "verify_password", spy)
    ana, ben, nopw = env.names["ana"], env.names["ben"], env.names["ana"] + "-nopw"
    create_user(env.p.db, nopw, "reviewer")
    with env.p.db.engine.begin() as conn:
        conn.execute(update(UserRow).where(UserRow.username == ben).values(active=False))
    for name in ("nobody-at-all", nopw, ben):  # unknown, no password, deactivated
        with pytest.raises(AuthError):
            authenticate(env.p.db, name, PASSWORD)
    assert checked == [DUMMY_HASH] * 3
    with pytest.raises(AuthError):
        authenticate(env.p.db, ana, "wrong")
    assert authenticate(env.p.db, ana, PASSWORD).username == ana
    assert len(checked) == 5 and checked[3] == checked[4] != DUMMY_HASH


# -- 8. forwarded headers ----------------------------------------------------------------------


def _attempt(client: TestClient, username: str, forwarded: str | None):
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    data = {"username": username, "password": "guess", "csrf_token": token}
    return client.post("/login", data=data, headers=headers, follow_redirects=False)


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [("testclient", []), ("10.0.0.1", []), ("10.0.0.1", ["10.0.0.2", "192.168.0.0/16"])],
)
def test_forwarded_for_from_an_untrusted_peer_does_not_dodge_the_lockout(
    env, peer: str, trusted: list[str]
) -> None:
    env.p.config.api.trusted_proxies = trusted
    client = TestClient(create_app(env.p, LoginThrottle(5)), client=(peer, 1234))
    codes = [_attempt(client, f"user{i}", f"203.0.113.{i}").status_code for i in range(6)]
    assert codes == [401] * 5 + [429]


def test_forwarded_for_from_a_trusted_proxy_names_the_client(env) -> None:
    env.p.config.api.trusted_proxies = ["10.0.0.0/8"]
    client = TestClient(create_app(env.p, LoginThrottle(5)), client=("10.0.0.1", 1234))
    # Different clients behind the proxy are counted apart ...
    codes = [_attempt(client, f"user{i}", f"203.0.113.{i}").status_code for i in range(6)]
    assert codes == [401] * 6
    # ... and a client cannot pick its address: the proxy appends the one it saw.
    codes = [
        _attempt(client, f"other{i}", f"198.51.100.{i}, 203.0.113.50, 10.0.0.7").status_code
        for i in range(6)
    ]
    assert codes == [401] * 5 + [429]


def test_serve_leaves_forwarded_headers_to_the_app(tmp_path: Path, monkeypatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from labelloop.cli.main import app as cli

    folder = tmp_path / "served"
    p = Project.init(folder, name="served", labels=["a", "b"])
    create_user(p.db, "root", "admin", PASSWORD)
    p.close()
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    r = CliRunner().invoke(cli, ["serve", "-p", str(folder), "--no-worker"])
    assert r.exit_code == 0, r.output
    assert seen["proxy_headers"] is False


# -- 9. the undo race ------------------------------------------------------------------------


def test_undo_refuses_an_item_another_reviewer_now_holds(env) -> None:
    c, a, b = env.client, env.h["ana"], env.h["ben"]
    first = c.post("/api/queue/next", headers=a).json()["item"]
    assert c.post(f"/api/items/{first['id']}/skip", headers=a).status_code == 200
    taken = c.post("/api/queue/next", headers=b).json()["item"]
    assert taken["id"] == first["id"]
    r = c.post("/api/undo", headers=a)
    assert r.status_code == 409, r.text
    assert "went to another reviewer" in r.json()["detail"]
    r = c.post(f"/api/items/{first['id']}/label", json={"labels": ["spam"]}, headers=a)
    assert r.status_code == 409  # the item stays with ben ...
    r = c.post(f"/api/items/{first['id']}/label", json={"labels": ["ham"]}, headers=b)
    assert r.status_code == 200 and r.json()["final"] == ["ham"]  # ... who answers it
    fl = env.p.final_labels()
    assert list(fl.loc[fl["item_id"] == first["id"], "labels"]) == [["ham"]]
    assert c.post("/api/queue/next", headers=a).json()["item"]["id"] != first["id"]


def test_undo_refuses_an_item_another_reviewer_answered_since(env) -> None:
    c, a, b = env.client, env.h["ana"], env.h["ben"]
    first = c.post("/api/queue/next", headers=a).json()["item"]
    c.post(f"/api/items/{first['id']}/skip", headers=a)
    assert c.post("/api/queue/next", headers=b).json()["item"]["id"] == first["id"]
    c.post(f"/api/items/{first['id']}/label", json={"labels": ["spam"]}, headers=b)
    assert c.post("/api/undo", headers=a).status_code == 409
    fl = env.p.final_labels()
    assert list(fl.loc[fl["item_id"] == first["id"], "source_name"]) == [env.names["ben"]]


def test_undo_is_allowed_while_the_item_has_room(env) -> None:
    """An item that needs two reviews: ben holding it leaves room for ana's undo."""
    c, a, b = env.client, env.h["ana"], env.h["ben"]
    env.p.enqueue([env.ids[4]], [5.0], reviews_needed=2)
    first = c.post("/api/queue/next", headers=a).json()["item"]
    assert first["id"] == env.ids[4]
    c.post(f"/api/items/{first['id']}/label", json={"labels": ["spam"]}, headers=a)
    assert c.post("/api/queue/next", headers=b).json()["item"]["id"] == env.ids[4]
    r = c.post("/api/undo", headers=a)
    assert r.status_code == 200 and r.json()["item"]["id"] == env.ids[4]
    for who, label in ((a, "spam"), (b, "spam")):
        r = c.post(f"/api/items/{env.ids[4]}/label", json={"labels": [label]}, headers=who)
        assert r.status_code == 200, r.text
    assert r.json() == {"item_id": env.ids[4], "final": ["spam"], "answers": 2}


# -- 8. storage URLs, image folders, SQL sources ----------------------------------------------


@pytest.mark.parametrize("url", ["mysql://root@localhost/test", "mongodb://x", "labelloop.db"])
def test_an_unsupported_storage_url_is_one_line_and_leaves_nothing(tmp_path: Path, url) -> None:
    folder = tmp_path / "proj"
    with pytest.raises(ConfigError) as err:
        Project.init(folder, name="p", labels=["a", "b"], storage=url)
    assert "\n" not in str(err.value) and "not supported" in str(err.value)
    assert not folder.exists()
    # ... so a retry with a good URL just works
    Project.init(folder, name="p", labels=["a", "b"], storage="sqlite:///s.db").close()


def test_an_unreachable_store_leaves_no_project_behind(tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        Project.init(folder, name="p", labels=["a"], storage="postgresql://nobody@127.0.0.1:1/none")
    assert not folder.exists()


def test_init_over_a_project_names_the_cli_flag_too(tmp_path: Path) -> None:
    Project.init(tmp_path / "p", name="p", labels=["a", "b"], storage="sqlite:///s.db").close()
    with pytest.raises(ConfigError, match="--force"):
        Project.init(tmp_path / "p", name="p", labels=["a", "b"], storage="sqlite:///s.db")


def test_the_cli_reports_an_unsupported_store_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from labelloop.cli.main import app

    folder = tmp_path / "proj"
    r = CliRunner().invoke(
        app, ["init", str(folder), "--labels", "a,b", "--storage", "mysql://root@localhost/x"]
    )
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "not supported" in r.output and not folder.exists()


def test_symbolic_links_out_of_an_image_folder_are_quarantined(
    make_project, tmp_path: Path
) -> None:
    from PIL import Image

    p = make_project(modality="image")
    folder, outside = tmp_path / "images", tmp_path / "secret"
    folder.mkdir()
    outside.mkdir()
    Image.new("RGB", (8, 8), "red").save(folder / "inside.png")
    Image.new("RGB", (8, 8), "blue").save(outside / "private.png")
    (folder / "leak.png").symlink_to(outside / "private.png")
    (folder / "alias.png").symlink_to(folder / "inside.png")  # stays inside: fine
    r = p.ingest(folder)
    assert r.quarantine_reasons == {"symbolic link leads outside the folder": 1}
    q = p.quarantine()
    assert list(q["raw"]) == ["leak.png"]
    assert r.items_added + r.duplicates == 2


def test_a_query_with_a_file_source_says_what_it_needs(make_project, tmp_path: Path) -> None:
    from labelloop.core.errors import IngestError

    p = make_project()
    with pytest.raises(IngestError, match="needs a database URL"):
        p.ingest_sql(str(tmp_path), "select 1")
