"""``python -m labelloop.edge annotate BUNDLE INPUT`` | ``sync BUNDLE URL --token T``.

``annotate`` reads a ``.txt`` file (one text per line) or ``.jsonl`` (a string, or an object
with ``text`` and optionally ``id``, per line) and prints one JSON answer per line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from labelloop.edge.annotator import EdgeAnnotator
from labelloop.edge.bundle import BundleError
from labelloop.edge.sync import SyncError

BATCH = 256


def read_inputs(path: Path) -> tuple[list[Any], list[Any]]:
    """(texts or rows, ids) from a .txt or .jsonl file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix.lower() != ".jsonl":
        texts = [line for line in lines if line.strip()]
        return texts, [None] * len(texts)
    texts, ids = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise SystemExit(f"{path}:{n}: not JSON") from None
        if isinstance(value, str):
            texts.append(value)
            ids.append(None)
        elif isinstance(value, dict) and "text" in value:
            texts.append(str(value["text"]))
            ids.append(value.get("id"))
        elif isinstance(value, dict):  # a table row
            ids.append(value.pop("id", None))
            texts.append(value)
        else:
            raise SystemExit(f"{path}:{n}: expected a string or an object with 'text'")
    return texts, ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labelloop.edge")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("annotate", help="label a .txt or .jsonl file; JSON lines out")
    a.add_argument("bundle", type=Path)
    a.add_argument("input", type=Path)
    a.add_argument("--db", type=Path, default=None, help="the results buffer (SQLite)")
    s = sub.add_parser("sync", help="send the buffered answers to the server")
    s.add_argument("bundle", type=Path)
    s.add_argument("url")
    s.add_argument("--token", default=os.environ.get("LABELLOOP_TOKEN"), help="or LABELLOOP_TOKEN")
    s.add_argument("--db", type=Path, default=None)
    s.add_argument("--batch", type=int, default=500)
    s.add_argument("--timeout", type=float, default=10)
    args = parser.parse_args(argv)
    try:
        with EdgeAnnotator(args.bundle, args.db) as edge:
            if args.command == "annotate":
                texts, ids = read_inputs(args.input)
                for start in range(0, len(texts), BATCH):
                    stop = start + BATCH
                    for row in edge.annotate(texts[start:stop], ids[start:stop]):
                        print(json.dumps(row))
                return 0
            if not args.token:
                parser.error("sync needs --token or LABELLOOP_TOKEN")
            print(json.dumps(edge.sync(args.url, args.token, args.batch, args.timeout)))
            return 0
    except (BundleError, SyncError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
