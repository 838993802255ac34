"""Read an LLM's answer: validate it against the taxonomy and turn it into probabilities.

Three ways to a probability, in order of preference:

* ``probs_from_logprobs`` — the token log-probabilities the endpoint returned for its own answer,
  renormalised over the allowed labels (the model's alternatives include tokens that are no
  label at all; llama.cpp reports them before its grammar is applied).
* ``softmax_over`` — the in-process label scores (log-probabilities along the label trie).
* ``probs_from_votes`` — agreement among k sampled answers, when no log-probabilities exist.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence

from labelloop.labelers.llm.client import TokenLogprob
from labelloop.labelers.llm.prompts import SINGLE_KEY

Answer = tuple[str, ...]  # the labels an answer chose (one for single-label tasks)


class InvalidAnswer(ValueError):
    """The text is not a valid answer for the taxonomy; the message says why."""


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def parse_answer(text: str, labels: Sequence[str], multi_label: bool) -> Answer:
    """The labels an answer chose, or InvalidAnswer saying what is wrong with it."""
    cleaned = _FENCE.sub("", text.strip())
    try:
        data = json.loads(cleaned)
    except json.JSONDecodeError as exc:
        raise InvalidAnswer(f"not JSON ({exc.msg} at char {exc.pos}): {_clip(text)!r}") from None
    if not isinstance(data, dict):
        raise InvalidAnswer(f"expected a JSON object, got {type(data).__name__}: {_clip(text)!r}")
    if multi_label:
        missing = [name for name in labels if name not in data]
        if missing:
            raise InvalidAnswer(f"labels missing from the answer: {', '.join(missing)}")
        not_bool = [name for name in labels if not isinstance(data[name], bool)]
        if not_bool:
            raise InvalidAnswer(f"values must be true or false for: {', '.join(not_bool)}")
        return tuple(name for name in labels if data[name])
    value = data.get(SINGLE_KEY)
    if not isinstance(value, str):
        raise InvalidAnswer(f'expected {{"{SINGLE_KEY}": "<label>"}}, got {_clip(text)!r}')
    if value in labels:
        return (value,)
    folded = [name for name in labels if name.casefold() == value.strip().casefold()]
    if len(folded) == 1:
        return (folded[0],)
    raise InvalidAnswer(f"label {value!r} is not in the taxonomy")


def softmax_over(logprobs: Mapping[str, float]) -> dict[str, float]:
    top = max(logprobs.values())
    exp = {name: math.exp(lp - top) for name, lp in logprobs.items()}
    total = sum(exp.values())
    return {name: v / total for name, v in exp.items()}


def probs_from_votes(
    answers: Sequence[Answer], labels: Sequence[str], multi_label: bool
) -> dict[str, float]:
    """Share of the valid sampled answers that chose each label."""
    n = len(answers)
    if n == 0:
        raise ValueError("no valid answers to count")
    counts = {name: 0 for name in labels}
    for answer in answers:
        for name in answer:
            counts[name] += 1
    return {name: counts[name] / n for name in labels}


def _token_spans(logprobs: Sequence[TokenLogprob]) -> tuple[str, list[int]]:
    starts, pos = [], 0
    for tok in logprobs:
        starts.append(pos)
        pos += len(tok.token)
    return "".join(tok.token for tok in logprobs), starts


def _token_at(starts: Sequence[int], joined_len: int, char: int) -> int | None:
    if char >= joined_len:
        return None
    index = 0
    for i, start in enumerate(starts):
        if start <= char:
            index = i
        else:
            break
    return index


def _raw(label: str) -> str:
    return json.dumps(label, ensure_ascii=False)[1:-1]


def probs_from_logprobs(
    logprobs: Sequence[TokenLogprob], labels: Sequence[str], multi_label: bool
) -> dict[str, float] | None:
    """Probabilities over the labels from the answer's token log-probabilities, or None when the
    answer's tokens cannot be lined up with its JSON (then another method must be used)."""
    joined, starts = _token_spans(logprobs)
    if multi_label:
        return _multi_probs(logprobs, joined, starts, labels)
    return _single_probs(logprobs, joined, starts, labels)


def _single_probs(
    logprobs: Sequence[TokenLogprob], joined: str, starts: list[int], labels: Sequence[str]
) -> dict[str, float] | None:
    match = re.search(r'"' + SINGLE_KEY + r'"\s*:\s*"', joined)
    if match is None:
        return None
    value_start = match.end()
    first = _token_at(starts, len(joined), value_start)
    if first is None:
        return None
    raw = {name: _raw(name) for name in labels}
    scores: dict[str, float] = {}
    generated = ""  # the value's characters chosen before the current token
    path = 0.0  # log-probability of the tokens chosen so far within the value
    for j in range(first, len(logprobs)):
        tok = logprobs[j]
        head = joined[starts[j] : value_start] if j == first else ""
        alive = [name for name in labels if raw[name].startswith(generated)]
        for name in alive:
            best = None
            for alt, lp in tok.top.items():
                if not alt.startswith(head):
                    continue
                cand = generated + alt[len(head) :]
                if (cand and raw[name].startswith(cand)) or cand.startswith(raw[name] + '"'):
                    best = lp if best is None else max(best, lp)
            if best is not None:
                scores[name] = path + best
        rest = tok.token[len(head) :]
        generated += rest
        path += tok.logprob
        if '"' in rest:
            break
    if not scores:
        return None
    floor = min(logprobs[first].top.values()) + math.log(0.5)
    return softmax_over({name: scores.get(name, floor) for name in labels})


def _multi_probs(
    logprobs: Sequence[TokenLogprob], joined: str, starts: list[int], labels: Sequence[str]
) -> dict[str, float] | None:
    probs: dict[str, float] = {}
    for name in labels:
        match = re.search(re.escape(json.dumps(name, ensure_ascii=False)) + r"\s*:\s*", joined)
        if match is None:
            return None
        value_start = match.end()
        j = _token_at(starts, len(joined), value_start)
        if j is None:
            return None
        head = joined[starts[j] : value_start]
        tok = logprobs[j]
        mass = {"true": None, "false": None}
        for alt, lp in tok.top.items():
            if not alt.startswith(head):
                continue
            rest = alt[len(head) :].lstrip()
            if not rest:
                continue
            for word in mass:
                if word.startswith(rest) or rest.startswith(word):
                    current = mass[word]
                    mass[word] = lp if current is None else max(current, lp)
        if mass["true"] is None and mass["false"] is None:
            return None
        floor = min(tok.top.values()) + math.log(0.5)
        p = softmax_over({w: (lp if lp is not None else floor) for w, lp in mass.items()})
        probs[name] = p["true"]
    return probs


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
