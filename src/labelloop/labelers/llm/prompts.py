"""Versioned prompt templates: the taxonomy, the few-shot examples and the item become messages.

A template never changes once released; a new wording gets a new version, so every Suggestion
says which wording produced it (``Suggestion.prompt_version``).
"""

from __future__ import annotations

import base64
import json
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelloop.core.config import LabelSpec
from labelloop.labelers.llm.client import Message

PROMPT_VERSION = "v1"
SINGLE_KEY = "label"


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    version: str
    single_intro: str
    multi_intro: str
    item_intro: str
    image_intro: str
    retry_note: str


TEMPLATES: dict[str, PromptTemplate] = {
    "v1": PromptTemplate(
        version="v1",
        single_intro=(
            "You are a careful annotator. Read the item and choose exactly one label from the "
            'taxonomy below. Answer with JSON only: {"label": "<label name>"}.'
        ),
        multi_intro=(
            "You are a careful annotator. Read the item and decide for every label of the "
            "taxonomy below whether it applies. Answer with JSON only, one key per label with "
            "the value true or false."
        ),
        item_intro="Item:\n",
        image_intro="Label this image.",
        retry_note="That answer was not valid ({reason}). Answer again with JSON only.",
    ),
}


def template(version: str) -> PromptTemplate:
    try:
        return TEMPLATES[version]
    except KeyError:
        known = ", ".join(sorted(TEMPLATES))
        raise ValueError(f"unknown prompt version {version!r} (known: {known})") from None


def describe_taxonomy(labels: Sequence[LabelSpec], order: Sequence[str]) -> str:
    """The taxonomy as text, labels in ``order`` (shuffled per call against position bias)."""
    by_name = {spec.name: spec for spec in labels}
    lines = ["Taxonomy:"]
    for name in order:
        spec = by_name[name]
        line = f"- {name}"
        if spec.description:
            line += f": {spec.description}"
        lines.append(line)
        if spec.guidelines:
            lines.append(f"  Guidelines: {spec.guidelines}")
        for example in spec.examples[:3]:
            lines.append(f"  Example: {example}")
    return "\n".join(lines)


def answer_schema(order: Sequence[str], multi_label: bool) -> dict[str, Any]:
    """The JSON schema of a valid answer; the keys (multi-label) follow the shuffled order."""
    if multi_label:
        return {
            "type": "object",
            "properties": {name: {"type": "boolean"} for name in order},
            "required": list(order),
            "additionalProperties": False,
        }
    return {
        "type": "object",
        "properties": {SINGLE_KEY: {"type": "string", "enum": list(order)}},
        "required": [SINGLE_KEY],
        "additionalProperties": False,
    }


def answer_json(labels: Sequence[str], order: Sequence[str], multi_label: bool) -> str:
    """The answer a few-shot example shows, in the same shape the schema asks for."""
    if multi_label:
        chosen = set(labels)
        return json.dumps({name: name in chosen for name in order})
    return json.dumps({SINGLE_KEY: labels[0]})


def single_answer_prefix() -> str:
    """The opening of a single-label answer, up to where the label's first token comes."""
    return '{"' + SINGLE_KEY + '": "'


def image_part(path: str | Path) -> dict[str, Any]:
    """An OpenAI-style image content part holding the file as a base64 data URL."""
    p = Path(path)
    mime = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
    if not mime.startswith("image/"):
        raise ValueError(f"{p}: not an image file (guessed type {mime})")
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def item_content(
    tpl: PromptTemplate, text: str, media_path: str | None, max_chars: int
) -> str | list[dict[str, Any]]:
    """The user turn for one item: plain text, or a text part plus an image part."""
    if media_path:
        return [{"type": "text", "text": tpl.image_intro}, image_part(media_path)]
    if len(text) > max_chars:
        text = text[:max_chars] + " [...]"
    return tpl.item_intro + text


def build_messages(
    tpl: PromptTemplate,
    labels: Sequence[LabelSpec],
    order: Sequence[str],
    multi_label: bool,
    text: str,
    *,
    media_path: str | None = None,
    instructions: str = "",
    shots: Sequence[tuple[str, Sequence[str]]] = (),
    max_chars: int = 2000,
) -> list[Message]:
    """System turn (intro, task instructions, taxonomy), few-shot turns, then the item."""
    system = [tpl.multi_intro if multi_label else tpl.single_intro]
    if instructions:
        system.append(instructions)
    system.append(describe_taxonomy(labels, order))
    messages: list[Message] = [{"role": "system", "content": "\n\n".join(system)}]
    for shot_text, shot_labels in shots:
        messages.append({"role": "user", "content": item_content(tpl, shot_text, None, max_chars)})
        messages.append(
            {"role": "assistant", "content": answer_json(shot_labels, order, multi_label)}
        )
    messages.append({"role": "user", "content": item_content(tpl, text, media_path, max_chars)})
    return messages
