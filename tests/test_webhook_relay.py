"""Decisions to a webhook through the relay (issue 13, item 1), on the real Redis and a real
HTTP receiver: signed, each entry acknowledged only after a 2xx, a receiver that fails gets
retries and then the entry is dead-lettered with its error while the rest go on; a relay
killed before acknowledging leaves the entry for another relay."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from labelloop.workers.stream import RedisStreamSink, RedisStreamSource
from labelloop.workers.webhook_relay import WebhookRelay


class _Receiver(BaseHTTPRequestHandler):
    got: list[dict[str, Any]] = []
    refuse: set[str] = set()  # decision keys answered with 500

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(b"s3", body, hashlib.sha256).hexdigest()
        event = json.loads(body)
        signed = hmac.compare_digest(expected, self.headers.get("X-Labelloop-Signature", ""))
        key = self.headers.get("X-Labelloop-Key")
        if key in self.refuse:
            self.send_response(500)
        else:
            self.got.append({"event": event, "signed": signed, "key": key})
            self.send_response(204)
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.got, _Receiver.refuse = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_relay_delivers_signed_once_and_dead_letters_a_refused_entry(redis, receiver) -> None:
    stream = f"{redis.test_prefix}:decisions"
    sink = RedisStreamSink(redis, stream)
    for k in range(6):
        sink.publish(f"item-{k}", {"decision": "auto", "label": "spam", "item": k})
    _Receiver.refuse = {"item-3"}
    waits: list[float] = []
    source = RedisStreamSource(
        redis,
        stream,
        "webhooks",
        claim_idle_ms=0,
        max_tries=2,
        dead_letter=f"{stream}:webhook-dead",
    )
    relay = WebhookRelay(source, receiver, secret="s3", tries=2, sleep=waits.append)
    report = relay.run(until_idle=True, block_ms=50)
    assert report.delivered == 5 and report.dead_lettered == 1
    keys = [g["key"] for g in _Receiver.got]
    assert sorted(keys) == ["item-0", "item-1", "item-2", "item-4", "item-5"]
    assert all(g["signed"] for g in _Receiver.got)
    assert _Receiver.got[0]["event"]["decision"] == {"decision": "auto", "item": 0, "label": "spam"}
    dead = redis.xrange(f"{stream}:webhook-dead")
    assert [d[1]["key"] for d in dead] == ["item-3"] and "HTTP 500" in dead[0][1]["_error"]
    assert waits and all(w <= 30 for w in waits)  # backed off between tries
    assert source.idle()  # everything acknowledged or set aside


def test_a_relay_killed_before_acknowledging_leaves_the_entry_to_another(redis, receiver) -> None:
    stream = f"{redis.test_prefix}:decisions"
    RedisStreamSink(redis, stream).publish("item-9", {"decision": "review"})
    first = RedisStreamSource(redis, stream, "webhooks", consumer="a", claim_idle_ms=0)
    entries = first.read(10, 50)  # delivered to relay a, which dies before it POSTs or acks
    assert [e.fields["key"] for e in entries] == ["item-9"]
    second = RedisStreamSource(redis, stream, "webhooks", consumer="b", claim_idle_ms=0)
    report = WebhookRelay(second, receiver, sleep=lambda s: None).run(until_idle=True, block_ms=50)
    assert report.delivered == 1 and [g["key"] for g in _Receiver.got] == ["item-9"]
    assert not _Receiver.got[0]["signed"]  # no secret given: no signature


def test_relay_refuses_a_bad_url(redis) -> None:
    source = RedisStreamSource(redis, f"{redis.test_prefix}:d", "webhooks")
    with pytest.raises(ValueError, match="http"):
        WebhookRelay(source, "file:///etc/passwd")


def test_cli_relays_until_idle(redis, receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import TEST_REDIS_URL
    from typer.testing import CliRunner

    from labelloop.cli.main import app

    stream = f"{redis.test_prefix}:decisions"
    RedisStreamSink(redis, stream).publish("item-1", {"decision": "auto"})
    monkeypatch.setenv("LABELLOOP_TEST_RELAY_SECRET", "s3")
    args = ["webhook-relay", receiver, "--redis", TEST_REDIS_URL, "--stream", stream]
    out = CliRunner().invoke(
        app, [*args, "--secret-env", "LABELLOOP_TEST_RELAY_SECRET", "--until-idle"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["delivered"] == 1
    assert [(g["key"], g["signed"]) for g in _Receiver.got] == [("item-1", True)]
    missing = CliRunner().invoke(app, [*args, "--secret-env", "LABELLOOP_NOT_SET_ANYWHERE"])
    assert missing.exit_code != 0 and "LABELLOOP_NOT_SET_ANYWHERE" in missing.output
