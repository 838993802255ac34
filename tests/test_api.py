"""The REST API and the pages over a SQLite project: every endpoint, and who may not call it."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from labelloop.api import create_app
from labelloop.auth import create_token, create_user
from labelloop.core.types import Suggestion
from labelloop.project import Project
from labelloop.store.labels import add_suggestions
from labelloop.store.models import ApiTokenRow, LeaseRow, utcnow

PASSWORD = "correct horse"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the form; return the session's CSRF token (from the page's meta tag)."""
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    page = client.get("/dashboard")
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text).group(1)


@pytest.fixture
def env(tmp_path: Path):
    p = Project.init(
        tmp_path / "proj",
        name="spam",
        labels=["ham", "spam"],
        storage=f"sqlite:///{tmp_path / 'store.db'}",
    )
    csv = tmp_path / "msgs.csv"
    pd.DataFrame({"text": [f"message number {i}" for i in range(6)]}).to_csv(csv, index=False)
    p.ingest(csv)
    ids = [int(i) for i in p.items()["id"]]
    p.enqueue(ids[:4], [0.9, 0.8, 0.7, 0.6])
    with p.db.engine.begin() as conn:
        add_suggestions(
            conn,
            [
                Suggestion(ids[0], "h0", "zeroshot", "minilm-1", {"ham": 0.2, "spam": 0.8}, 0.8),
                Suggestion(ids[0], "h0", "llm", "smollm2-q8", {"ham": 0.6, "spam": 0.4}, 0.6),
            ],
        )
    tokens = {}
    for name, role in (("boss", "admin"), ("rita", "reviewer"), ("vic", "viewer")):
        create_user(p.db, name, role, PASSWORD)
        tokens[role] = create_token(p.db, name)
    client = TestClient(create_app(p))
    yield SimpleNamespace(p=p, ids=ids, tokens=tokens, client=client, tmp=tmp_path)
    client.close()
    p.close()


def _headers(env, role: str) -> dict[str, str]:
    return _bearer(env.tokens[role])


# -- open and closed doors -------------------------------------------------------------------


def test_health_needs_no_login_and_the_api_document_needs_one(env) -> None:
    assert env.client.get("/health").json() == {"status": "ok"}
    assert env.client.get("/openapi.json").status_code == 401
    assert env.client.get("/docs", headers={"accept": "application/json"}).status_code == 401
    docs = env.client.get("/docs", headers=_headers(env, "viewer"))
    assert docs.status_code == 200 and "/api/queue/next" in docs.text
    paths = env.client.get("/openapi.json", headers=_headers(env, "viewer")).json()["paths"]
    for path in ("/api/status", "/api/queue/next", "/api/items/{item_id}/label", "/api/export"):
        assert path in paths
    assert "/login" not in paths  # pages are not part of the API document
    label = paths["/api/items/{item_id}/label"]["post"]
    assert "SubmitOut" in json.dumps(label["responses"]["200"])


PROTECTED = [
    ("get", "/api/status"),
    ("get", "/api/dashboard"),
    ("get", "/api/items"),
    ("get", "/api/quarantine"),
    ("get", "/api/labels"),
    ("get", "/api/suggestions"),
    ("post", "/api/queue/next"),
    ("post", "/api/items/1/label"),
    ("post", "/api/items/1/skip"),
    ("post", "/api/undo"),
    ("get", "/api/items/1/media"),
    ("post", "/api/queue/enqueue"),
    ("post", "/api/ingest"),
    ("get", "/api/users"),
    ("post", "/api/users"),
    ("post", "/api/users/rita/tokens"),
    ("get", "/api/export"),
    ("post", "/api/import/label-studio"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_endpoint_needs_authentication(env, method: str, path: str) -> None:
    r = getattr(env.client, method)(path)
    assert r.status_code == 401
    assert "detail" in r.json()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/queue/enqueue", {"item_ids": [1]}),
        ("post", "/api/users", {"username": "x", "role": "viewer"}),
        ("get", "/api/users", None),
        ("post", "/api/users/rita/tokens", None),
        ("get", "/api/export?format=csv", None),
    ],
)
def test_reviewer_may_not_call_admin_endpoints(env, method: str, path: str, body) -> None:
    kwargs = {"json": body} if body is not None else {}
    r = getattr(env.client, method)(path, headers=_headers(env, "reviewer"), **kwargs)
    assert r.status_code == 403
    assert "needs 'admin'" in r.json()["detail"]


def test_reviewer_may_not_ingest(env) -> None:
    r = env.client.post(
        "/api/ingest", data={"path": "../msgs.csv"}, headers=_headers(env, "reviewer")
    )
    assert r.status_code == 403


def test_viewer_reads_status_but_may_not_review(env) -> None:
    h = _headers(env, "viewer")
    status = env.client.get("/api/status", headers=h).json()
    assert status["items"] == 6 and status["states"]["queued"] == 4
    assert env.client.get("/api/dashboard", headers=h).status_code == 200
    assert env.client.post("/api/queue/next", headers=h).status_code == 403
    r = env.client.post(f"/api/items/{env.ids[0]}/label", json={"labels": ["spam"]}, headers=h)
    assert r.status_code == 403
    assert env.client.get("/api/items", headers=h).status_code == 403


def test_unknown_revoked_and_malformed_tokens_are_refused(env) -> None:
    assert env.client.get("/api/status", headers=_bearer("llt_nope")).status_code == 401
    with env.p.db.engine.begin() as conn:
        conn.execute(update(ApiTokenRow).values(revoked=True))
    r = env.client.get("/api/status", headers=_headers(env, "admin"))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    r = env.client.get("/api/status", headers={"Authorization": "Basic Ym9zczp4"})
    assert r.status_code == 401


# -- reviewing -------------------------------------------------------------------------------


def test_next_label_and_final_labels(env) -> None:
    h = _headers(env, "reviewer")
    item = env.client.post("/api/queue/next", headers=h).json()["item"]
    assert item["id"] == env.ids[0]
    assert {s["labeler"] for s in item["suggestions"]} == {"zeroshot", "llm"}
    assert item["media_url"] is None and item["lease_expires_at"]
    r = env.client.post(
        f"/api/items/{item['id']}/label",
        json={"labels": ["spam"], "time_spent_ms": 1500},
        headers=h,
    )
    assert r.json() == {"item_id": item["id"], "final": ["spam"], "answers": 1}
    labels = env.client.get("/api/labels", headers=h).json()
    assert [(x["item_id"], x["labels"], x["source_name"]) for x in labels] == [
        (item["id"], ["spam"], "rita")
    ]
    labeled = env.client.get("/api/items?state=labeled", headers=h).json()
    assert [x["id"] for x in labeled] == [item["id"]]
    assert env.client.get("/api/items?limit=2", headers=h).json()[1]["id"] == env.ids[1]
    assert env.client.get("/api/items?state=bogus", headers=h).status_code == 422


def test_stale_lease_is_a_conflict(env) -> None:
    h = _headers(env, "reviewer")
    item = env.client.post("/api/queue/next", headers=h).json()["item"]
    with env.p.db.engine.begin() as conn:
        conn.execute(update(LeaseRow).values(expires_at=utcnow() - timedelta(seconds=1)))
    r = env.client.post(f"/api/items/{item['id']}/label", json={"labels": ["ham"]}, headers=h)
    assert r.status_code == 409 and "expired" in r.json()["detail"]
    # An item never leased to this reviewer is a conflict too; an unknown one is not found.
    r = env.client.post(f"/api/items/{env.ids[3]}/label", json={"labels": ["ham"]}, headers=h)
    assert r.status_code == 409
    r = env.client.post("/api/items/999999/label", json={"labels": ["ham"]}, headers=h)
    assert r.status_code == 404


def test_labels_outside_the_taxonomy_are_refused(env) -> None:
    h = _headers(env, "reviewer")
    item = env.client.post("/api/queue/next", headers=h).json()["item"]
    url = f"/api/items/{item['id']}/label"
    r = env.client.post(url, json={"labels": ["eggs"]}, headers=h)
    assert r.status_code == 422 and "not in the taxonomy" in r.json()["detail"]
    r = env.client.post(url, json={"labels": ["ham", "spam"]}, headers=h)
    assert r.status_code == 422 and "single-label" in r.json()["detail"]
    assert env.client.post(url, json={"labels": []}, headers=h).status_code == 422
    assert env.p.final_labels().empty


def test_skip_and_undo(env) -> None:
    h = _headers(env, "reviewer")
    first = env.client.post("/api/queue/next", headers=h).json()["item"]
    r = env.client.post(f"/api/items/{first['id']}/skip", headers=h)
    assert r.json() == {"item_id": first["id"], "skipped": True}
    second = env.client.post("/api/queue/next", headers=h).json()["item"]
    assert second["id"] == env.ids[1]
    env.client.post(f"/api/items/{second['id']}/label", json={"labels": ["ham"]}, headers=h)
    back = env.client.post("/api/undo", headers=h).json()["item"]
    assert back["id"] == second["id"]
    assert env.p.final_labels().empty
    # The undone item is leased to the reviewer again and can be answered anew.
    r = env.client.post(f"/api/items/{back['id']}/label", json={"labels": ["spam"]}, headers=h)
    assert r.status_code == 200


def test_empty_queue_and_nothing_to_undo(env) -> None:
    h = _headers(env, "reviewer")
    assert env.client.post("/api/undo", headers=h).json()["item"] is None
    for _ in range(4):
        item = env.client.post("/api/queue/next", headers=h).json()["item"]
        env.client.post(f"/api/items/{item['id']}/label", json={"labels": ["ham"]}, headers=h)
    assert env.client.post("/api/queue/next", headers=h).json()["item"] is None


# -- browser sessions ------------------------------------------------------------------------


def test_session_post_needs_the_csrf_token(env) -> None:
    csrf = _login(env.client, "rita")
    cookie = env.client.cookies.get("labelloop_session")
    assert cookie
    assert env.client.get("/api/status").status_code == 200  # reads need no token
    assert env.client.post("/api/queue/next").status_code == 403
    r = env.client.post("/api/queue/next", headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    r = env.client.post("/api/queue/next", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["item"]["id"] == env.ids[0]


def test_session_cookie_flags(env) -> None:
    page = env.client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = env.client.post(
        "/login",
        data={"username": "rita", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/review"
    set_cookie = [v for v in r.headers.get_list("set-cookie") if "labelloop_session=" in v][0]
    assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie


def test_wrong_password_and_forged_login_form(env) -> None:
    page = env.client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = env.client.post(
        "/login", data={"username": "rita", "password": "wrong", "csrf_token": token}
    )
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    assert "labelloop_session" not in env.client.cookies
    token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)  # a fresh form
    r = env.client.post("/login", data={"username": "nobody", "password": "x", "csrf_token": token})
    assert r.status_code == 401
    fresh = TestClient(env.client.app)  # no login-form cookie: a cross-site POST
    r = fresh.post("/login", data={"username": "rita", "password": PASSWORD, "csrf_token": "x"})
    assert r.status_code == 403 and "labelloop_session" not in fresh.cookies


def test_repeated_wrong_passwords_lock_the_name_out_for_a_while(env) -> None:
    from labelloop.auth.throttle import LoginThrottle

    now = [0.0]
    client = TestClient(create_app(env.p, LoginThrottle(3, window_s=600, clock=lambda: now[0])))

    def attempt(username: str, password: str):
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        data = {"username": username, "password": password, "csrf_token": token}
        return client.post("/login", data=data, follow_redirects=False)

    assert [attempt("rita", "guess").status_code for _ in range(3)] == [401, 401, 401]
    r = attempt("Rita", PASSWORD)  # the right password no longer helps, whatever the case
    assert r.status_code == 429 and "Too many failed logins" in r.text
    assert r.headers["Retry-After"] == "600"
    now[0] = 599.0
    assert attempt("rita", PASSWORD).status_code == 429
    now[0] = 600.0
    assert attempt("rita", PASSWORD).status_code == 303


def test_login_throttle_counts_per_name_and_per_address() -> None:
    from labelloop.auth.throttle import LoginThrottle

    now = [0.0]
    throttle = LoginThrottle(2, window_s=100, clock=lambda: now[0])
    throttle.failed("user:a", "ip:1")
    now[0] = 50.0
    throttle.failed("user:b", "ip:1")
    assert throttle.retry_after("user:c", "ip:1") == 50  # the address tried two names
    assert throttle.retry_after("user:a", "ip:2") == 0
    throttle.succeeded("user:a")
    now[0] = 100.0
    assert throttle.retry_after("user:c", "ip:1") == 0  # the first failure aged out
    with pytest.raises(ValueError):
        LoginThrottle(0)


def test_logout_ends_the_session(env) -> None:
    csrf = _login(env.client, "rita")
    assert env.client.post("/logout", data={"csrf_token": "bad"}).status_code == 403
    r = env.client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert env.client.get("/api/status").status_code == 401


def test_login_redirect_stays_on_this_site(env) -> None:
    page = env.client.get("/login?next=//evil.example/x")
    assert 'name="next" value="/"' in page.text


# -- pages -------------------------------------------------------------------------------------


def test_pages_redirect_to_login_and_forbid_by_role(env) -> None:
    r = env.client.get("/review", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/review"
    _login(env.client, "vic")
    r = env.client.get("/review", headers={"Accept": "text/html"})
    assert r.status_code == 403 and "needs &#39;reviewer&#39;" in r.text
    page = env.client.get("/dashboard")
    assert page.status_code == 200
    assert page.text.count("not measured yet") == 2
    assert "Content-Security-Policy" in page.headers


def test_review_page_lists_labels_with_keys(env) -> None:
    _login(env.client, "rita")
    page = env.client.get("/review").text
    assert "<kbd>1</kbd>" in page and 'data-label="ham"' in page and 'data-label="spam"' in page
    assert "/static/review.js" in page
    assert env.client.get("/static/review.js").status_code == 200


def test_dashboard_numbers(env) -> None:
    h = _headers(env, "reviewer")
    for ms in (1000, 3000):
        item = env.client.post("/api/queue/next", headers=h).json()["item"]
        env.client.post(
            f"/api/items/{item['id']}/label",
            json={"labels": ["spam"], "time_spent_ms": ms},
            headers=h,
        )
    d = env.client.get("/api/dashboard", headers=_headers(env, "viewer")).json()
    assert d["states"]["labeled"] == 2 and d["label_counts"] == {"spam": 2}
    assert d["decided_by"] == {"human": 2} and d["human_share"] == 1.0
    assert d["reviewers"] == [{"annotator": "rita", "labels": 2, "median_seconds": 2.0}]
    assert d["reviewer_agreement"]["measured"] is False
    assert d["audited_precision"]["measured"] is False


def test_dashboard_measures_agreement_when_two_people_answer(env) -> None:
    env.p.enqueue(env.ids[4:6], reviews_needed=2)
    for name in ("ana", "ben"):
        create_user(env.p.db, name, "reviewer", PASSWORD)
    h = {name: _bearer(create_token(env.p.db, name)) for name in ("ana", "ben")}
    env.p.enqueue(env.ids[:4], [-1.0] * 4)  # the two overlap items first
    answers = {"ana": ["spam", "ham"], "ben": ["spam", "spam"]}
    for name, labels in answers.items():
        for label in labels:
            item = env.client.post("/api/queue/next", headers=h[name]).json()["item"]
            assert item["id"] in env.ids[4:6]
            env.client.post(
                f"/api/items/{item['id']}/label", json={"labels": [label]}, headers=h[name]
            )
    agreement = env.client.get("/api/dashboard", headers=h["ana"]).json()["reviewer_agreement"]
    assert agreement["measured"] is True and "2 items" in agreement["measured_on"]
    assert -1.0 <= agreement["value"] < 1.0  # one disagreement: below perfect


# -- administration --------------------------------------------------------------------------


def test_admin_ingests_a_server_path_and_an_upload(env) -> None:
    h = _headers(env, "admin")
    path = env.tmp / "more.csv"
    pd.DataFrame({"text": ["fresh one", "fresh two", ""]}).to_csv(path, index=False)
    env.p.config.ingest.import_dirs = [str(env.tmp)]  # path ingest over HTTP is off by default
    r = env.client.post("/api/ingest", data={"path": str(path)}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["items_added"] == 2 and r.json()["quarantined"] == 1
    quarantine = env.client.get("/api/quarantine", headers=h).json()
    assert len(quarantine) == 1 and quarantine[0]["position"] == 3
    upload = io.BytesIO(b"text\nuploaded message\n")
    r = env.client.post("/api/ingest", files={"file": ("up load.csv", upload)}, headers=h)
    assert r.status_code == 200 and r.json()["items_added"] == 1
    [saved] = (env.p.folder / "uploads").glob("*-up_load.csv")
    # the same name with other rows is another file; the same file again adds nothing
    other = io.BytesIO(b"text\nanother message\nuploaded message\n")
    r = env.client.post("/api/ingest", files={"file": ("up load.csv", other)}, headers=h)
    assert r.json()["items_added"] == 1 and r.json()["duplicates"] == 1
    assert saved.exists() and len(list((env.p.folder / "uploads").glob("*-up_load.csv"))) == 2
    again = io.BytesIO(b"text\nanother message\nuploaded message\n")
    r = env.client.post("/api/ingest", files={"file": ("up load.csv", again)}, headers=h)
    assert r.json()["items_added"] == 0 and r.json()["already_ingested"] == 2
    r = env.client.post("/api/ingest", data={"path": "nope.csv"}, headers=h)
    assert r.status_code == 404
    assert env.client.post("/api/ingest", headers=h).status_code == 422
    r = env.client.post("/api/ingest", files={"file": ("x.docx", io.BytesIO(b"a"))}, headers=h)
    assert r.status_code == 400 and "unknown file type" in r.json()["detail"]
    assert not list((env.p.folder / "uploads").glob("*x.docx*"))  # a rejected upload is removed


def test_admin_enqueues(env) -> None:
    h = _headers(env, "admin")
    r = env.client.post(
        "/api/queue/enqueue", json={"item_ids": env.ids[4:], "priorities": [5.0, 4.0]}, headers=h
    )
    assert r.json() == {"enqueued": 2}
    item = env.client.post("/api/queue/next", headers=h).json()["item"]
    assert item["id"] == env.ids[4]
    r = env.client.post(
        "/api/queue/enqueue", json={"item_ids": [1, 2], "priorities": [1.0]}, headers=h
    )
    assert r.status_code == 422


def test_admin_manages_users_and_tokens(env) -> None:
    h = _headers(env, "admin")
    r = env.client.post(
        "/api/users", json={"username": "newbie", "role": "reviewer", "password": "pw"}, headers=h
    )
    assert r.status_code == 201 and r.json()["role"] == "reviewer"
    r = env.client.post("/api/users", json={"username": "newbie", "role": "viewer"}, headers=h)
    assert r.status_code == 409
    r = env.client.post("/api/users", json={"username": "x", "role": "king"}, headers=h)
    assert r.status_code == 422 and "unknown role" in r.json()["detail"]
    names = [u["username"] for u in env.client.get("/api/users", headers=h).json()]
    assert names == ["boss", "rita", "vic", "newbie"]
    token = env.client.post("/api/users/newbie/tokens", headers=h).json()["token"]
    assert env.client.post("/api/queue/next", headers=_bearer(token)).status_code == 200
    assert env.client.post("/api/users/ghost/tokens", headers=h).status_code == 404


def _label_two(env) -> None:
    h = _headers(env, "reviewer")
    for label in ("spam", "ham"):
        item = env.client.post("/api/queue/next", headers=h).json()["item"]
        env.client.post(f"/api/items/{item['id']}/label", json={"labels": [label]}, headers=h)


def test_admin_exports_every_format(env) -> None:
    _label_two(env)
    h = _headers(env, "admin")
    r = env.client.get("/api/export?format=csv", headers=h)
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    df = pd.read_csv(io.StringIO(r.text))
    assert list(df["labels"]) == ["spam", "ham"]
    r = env.client.get("/api/export?format=jsonl", headers=h)
    assert [json.loads(line)["labels"] for line in r.text.splitlines()] == [["spam"], ["ham"]]
    r = env.client.get("/api/export?format=parquet", headers=h)
    assert pq.read_table(io.BytesIO(r.content)).num_rows == 2
    r = env.client.get("/api/export?format=label-studio", headers=h)
    tasks = r.json()
    assert len(tasks) == 6 and sum(bool(t.get("annotations")) for t in tasks) == 2
    assert env.client.get("/api/export?format=xls", headers=h).status_code == 422


def test_admin_imports_label_studio(env) -> None:
    tasks = [
        {
            "data": {"text": "imported message"},
            "annotations": [
                {
                    "result": [
                        {
                            "from_name": "label",
                            "to_name": "text",
                            "type": "choices",
                            "value": {"choices": ["spam"]},
                        }
                    ],
                    "completed_by": 1,
                }
            ],
        }
    ]
    r = env.client.post(
        "/api/import/label-studio",
        files={"file": ("tasks.json", io.BytesIO(json.dumps(tasks).encode()))},
        headers=_headers(env, "admin"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["tasks"] == 1 and r.json()["annotations"] == 1, r.json()
    fl = env.p.final_labels()
    assert list(fl.loc[fl["content"] == "imported message", "labels"]) == [["spam"]]


def test_admin_imports_label_studio_with_its_labeling_config(env) -> None:
    """Label Studio's own names (control ``topic``, data key ``sms``) read from the uploaded
    labeling config; a config that is not UTF-8 is refused with the reason."""
    config = (
        '<View><Text name="message" value="$sms"/>'
        '<Choices name="topic" toName="message" choice="single">'
        '<Choice value="ham"/><Choice value="spam"/></Choices></View>'
    )
    tasks = [
        {
            "id": 7,
            "data": {"sms": "a message named by Label Studio"},
            "annotations": [
                {
                    "result": [
                        {
                            "from_name": "topic",
                            "to_name": "message",
                            "type": "choices",
                            "value": {"choices": ["ham"]},
                        }
                    ],
                    "completed_by": 1,
                }
            ],
        }
    ]
    files = {
        "file": ("tasks.json", io.BytesIO(json.dumps(tasks).encode())),
        "label_config": ("config.xml", io.BytesIO(config.encode())),
    }
    r = env.client.post("/api/import/label-studio", files=files, headers=_headers(env, "admin"))
    assert r.status_code == 200, r.text
    assert r.json()["annotations"] == 1, r.json()
    fl = env.p.final_labels()
    assert list(fl.loc[fl["content"] == "a message named by Label Studio", "labels"]) == [["ham"]]
    bad = {
        "file": ("tasks.json", io.BytesIO(json.dumps(tasks).encode())),
        "label_config": ("config.xml", io.BytesIO(b"\xff\xfe<View/>")),
    }
    r = env.client.post("/api/import/label-studio", files=bad, headers=_headers(env, "admin"))
    assert r.status_code == 422 and "UTF-8" in r.text


# -- images ----------------------------------------------------------------------------------


def test_media_of_a_leased_image_only(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, color in enumerate(("red", "blue")):
        Image.new("RGB", (8, 8), color).save(folder / f"{i}.png")
    p = Project.init(
        tmp_path / "img",
        name="img",
        labels=["red", "blue"],
        modality="image",
        storage=f"sqlite:///{tmp_path / 'img.db'}",
    )
    try:
        p.ingest(folder)
        ids = [int(i) for i in p.items()["id"]]
        p.enqueue(ids, [1.0, 0.0])
        create_user(p.db, "rita", "reviewer", PASSWORD)
        h = _bearer(create_token(p.db, "rita"))
        client = TestClient(create_app(p))
        assert client.get(f"/api/items/{ids[0]}/media", headers=h).status_code == 404
        item = client.post("/api/queue/next", headers=h).json()["item"]
        assert item["media_url"] == f"/api/items/{ids[0]}/media"
        r = client.get(item["media_url"], headers=h)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content == (folder / "0.png").read_bytes()
        assert client.get(f"/api/items/{ids[1]}/media", headers=h).status_code == 404
    finally:
        p.close()


# -- the CLI commands ----------------------------------------------------------------------------


@pytest.fixture
def cli():
    import typer

    from labelloop.cli.server_commands import serve, user_app

    app = typer.Typer()
    app.command()(serve)
    app.add_typer(user_app, name="user")
    return app


def test_suggestions_with_provenance_over_http_and_the_cli(env, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from labelloop.cli.main import app as cli

    h = _headers(env, "reviewer")
    rows = env.client.get("/api/suggestions", headers=h).json()
    assert [(r["labeler"], r["label"], r["item_id"]) for r in rows] == [
        ("zeroshot", "spam", env.ids[0]),
        ("llm", "ham", env.ids[0]),
    ]
    assert rows[0]["probs"] == {"ham": 0.2, "spam": 0.8} and rows[0]["status"] == "ok"
    only = env.client.get("/api/suggestions?labeler=llm&limit=5", headers=h).json()
    assert [r["labeler"] for r in only] == ["llm"]
    assert env.client.get("/api/suggestions", headers=_headers(env, "viewer")).status_code == 403
    env.p.close()  # the CLI opens the project itself
    run = CliRunner()
    r = run.invoke(cli, ["suggestions", "-p", str(env.p.folder), "--labeler", "zeroshot"])
    assert r.exit_code == 0, r.output
    assert "zeroshot" in r.output and "spam" in r.output and "llm" not in r.output
    out = tmp_path / "suggestions.jsonl"
    r = run.invoke(cli, ["suggestions", "-p", str(env.p.folder), "--out", str(out)])
    assert r.exit_code == 0 and "2 suggestions written" in r.output
    assert [json.loads(line)["labeler"] for line in out.read_text().splitlines()] == [
        "zeroshot",
        "llm",
    ]
    r = run.invoke(cli, ["suggestions", "-p", str(env.p.folder), "--out", str(tmp_path / "x.xls")])
    assert r.exit_code == 1 and "use a .csv" in r.output


def test_cli_user_add_token_and_serve(cli, tmp_path: Path, monkeypatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    folder = tmp_path / "cliproj"
    Project.init(folder, name="cli", labels=["a", "b"]).close()
    run = CliRunner()
    r = run.invoke(cli, ["serve", "-p", str(folder)])
    assert r.exit_code == 1 and "labelloop user add NAME --role admin" in r.output
    r = run.invoke(
        cli,
        ["user", "add", "root", "--role", "admin", "--password-stdin", "-p", str(folder)],
        input="pw-from-stdin\n",
    )
    assert r.exit_code == 0, r.output
    r = run.invoke(
        cli, ["user", "add", "root", "--role", "admin", "--no-password", "-p", str(folder)]
    )
    assert r.exit_code == 1 and "already exists" in r.output
    r = run.invoke(cli, ["user", "add", "x", "--role", "king", "--no-password", "-p", str(folder)])
    assert r.exit_code == 1 and "unknown role" in r.output
    r = run.invoke(cli, ["user", "token", "root", "-p", str(folder)])
    assert r.exit_code == 0
    token = r.output.strip()
    assert token.startswith("llt_")
    assert run.invoke(cli, ["user", "token", "ghost", "-p", str(folder)]).exit_code == 1

    served = {}

    def fake_run(app, host, port, **_):  # noqa: ANN001
        served["status"] = TestClient(app).get("/api/status", headers=_bearer(token)).json()
        served["csrf"] = _login(TestClient(app), "root", "pw-from-stdin")  # stdin password
        served["where"] = (host, port)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    r = run.invoke(cli, ["serve", "-p", str(folder), "--port", "8123"])
    assert r.exit_code == 0, r.output
    assert "http://127.0.0.1:8123/" in r.output
    assert served["where"] == ("127.0.0.1", 8123) and served["status"]["project"] == "cli"
    assert served["csrf"]
