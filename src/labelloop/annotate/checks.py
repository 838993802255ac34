"""Checks on machine labelers: label skew against people, one-label answers, order sensitivity."""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd

from labelloop.core.types import Item
from labelloop.labelers.llm import MemoryCache
from labelloop.labelers.llm.factory import ProjectLLM
from labelloop.quality.bias import compare_label_distributions, mode_collapse, order_sensitivity
from labelloop.store.context import ProjectContext
from labelloop.store.reads import final_labels_frame, valid_answers


def labeler_bias(ctx: ProjectContext, factor: float = 2.0) -> pd.DataFrame:
    """Per machine labeler: how its answers are spread over the labels next to people's.

    Columns: labeler, n (its valid answers), total_variation (0 = same spread as people),
    over_predicted (labels it gives >= ``factor`` times as often as people), mode, mode_share,
    human_mode_share, one_label (its mode far above people's share of it), flagged.
    """
    fl = final_labels_frame(ctx.db, ctx.id)
    human = (
        []
        if fl.empty
        else [
            ls[0]
            for ls, k in zip(fl["labels"], fl["source_kind"], strict=True)
            if k in ("human", "import") and ls
        ]
    )
    cols = [
        "labeler",
        "n",
        "total_variation",
        "over_predicted",
        "mode",
        "mode_share",
        "human_mode_share",
        "one_label",
        "flagged",
    ]
    if len(set(human)) < 2:
        return pd.DataFrame(columns=cols)
    answers = valid_answers(ctx.db, ctx.id)
    out: list[dict[str, Any]] = []
    for labeler, group in answers.groupby("labeler"):
        machine = list(group["label"])
        cmp = compare_label_distributions(machine, human, ctx.config.label_names, factor)
        mode = mode_collapse(machine, human)
        out.append(
            {
                "labeler": labeler,
                "n": len(machine),
                "total_variation": round(cmp.total_variation, 4),
                "over_predicted": ", ".join(map(str, cmp.over_predicted)),
                "mode": mode.label,
                "mode_share": round(mode.machine_share, 4),
                "human_mode_share": round(mode.human_share, 4),
                "one_label": mode.flagged,
                "flagged": bool(mode.flagged or cmp.over_predicted),
            }
        )
    return pd.DataFrame(out, columns=cols)


def llm_order_sensitivity(ctx: ProjectContext, llm: ProjectLLM, n: int = 30) -> dict[str, Any]:
    """Ask the LLM the same ``n`` human-labeled items under two label orders; the flip rate.

    A labeler whose answer follows the order of the labels in the prompt (position bias) flips
    often. Costs 2n LLM calls (the cache is bypassed by using two different order seeds).
    """
    fl = final_labels_frame(ctx.db, ctx.id, ("human",)).head(n)
    if fl.empty:
        return {"n_items": 0, "flip_rate": None, "measured_on": "no human-labeled items yet"}
    items = [
        Item(content=c, content_hash=h, id=int(i))
        for i, c, h in zip(fl["item_id"], fl["content"], fl["content_hash"], strict=True)
    ]
    answers = []
    for seed in (101, 202):
        other = copy.copy(llm.inner)
        other.seed = seed
        other.cache = MemoryCache()
        answers.append([s.top_label if s.status == "ok" else None for s in other.suggest(items)])
    result = order_sensitivity(answers[0], answers[1])
    return {
        "n_items": result.n_items,
        "flips": result.n_flips,
        "flip_rate": result.flip_rate,
        "ci_low": result.ci_low,
        "ci_high": result.ci_high,
        "measured_on": f"{result.n_items} human-labeled items, asked under two label orders",
    }
