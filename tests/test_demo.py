"""The main job, `labelloop demo --simulate`, on a small labeled file: it runs the loop
unattended and writes its report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from labelloop.cli.main import app
from labelloop.datasets import sms_spam_path


def test_demo_simulate_on_a_small_file_writes_the_report(tmp_path: Path) -> None:
    df = pd.read_csv(sms_spam_path()).drop_duplicates("text")
    small = pd.concat([df[df.label == "spam"].head(60), df[df.label == "ham"].head(240)])
    data = tmp_path / "small.jsonl"
    small.rename(columns={"text": "message", "label": "kind"}).to_json(
        data, orient="records", lines=True
    )
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--simulate",
            "--out",
            str(out),
            "--data",
            str(data),
            "--text-col",
            "message",
            "--label-col",
            "kind",
            "--budget",
            "60",
            "--retrain-every",
            "20",
            "--no-llm",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "SIMULATION" in result.output
    report = (out / "report" / "report.html").read_text()
    assert "SIMULATION" in report and "human labels saved" in report
    assert (out / "report" / "learning_curve.png").stat().st_size > 1000
    assert (out / "report" / "machine_labels.png").stat().st_size > 1000


def test_demo_names_a_missing_column(tmp_path: Path) -> None:
    data = tmp_path / "x.csv"
    data.write_text("body,label\nhello,a\nbye,b\n")
    result = CliRunner().invoke(
        app, ["demo", "--simulate", "--out", str(tmp_path / "d"), "--data", str(data), "--no-llm"]
    )
    assert result.exit_code == 1
    assert "no column 'text'" in result.output and "--text-col" in result.output
