"""Schemathesis over the OpenAPI document, with an admin token: no input makes a server error.

Every operation of the REST API gets generated requests (valid and invalid by the schema) in
process, over ASGI, on a small SQLite project. The number of examples is bounded and the
generation derandomized, so CI runs the same cases each time within a minute or two.
Raise ``LABELLOOP_SCHEMATHESIS_EXAMPLES`` to look harder locally.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from labelloop.api import create_app  # noqa: E402
from labelloop.auth import create_token, create_user  # noqa: E402
from labelloop.project import Project  # noqa: E402

EXAMPLES = int(os.environ.get("LABELLOOP_SCHEMATHESIS_EXAMPLES", "20"))


def _served() -> tuple[object, dict[str, str]]:
    """The app over a project with a few items, and an admin's bearer header.

    Built when the module is collected: schemathesis's fixture-based loader does not work with
    the pytest this suite runs on (it reads a private attribute pytest 9 dropped).
    """
    tmp = Path(tempfile.mkdtemp(prefix="labelloop-fuzz-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    p = Project.init(
        tmp / "proj", name="fuzz", labels=["ham", "spam"], storage=f"sqlite:///{tmp / 's.db'}"
    )
    atexit.register(p.close)
    csv = tmp / "msgs.csv"
    pd.DataFrame({"text": [f"message {i}" for i in range(12)]}).to_csv(csv, index=False)
    p.ingest(csv)
    ids = [int(i) for i in p.items()["id"]]
    p.enqueue(ids[:8], [1.0] * 8)
    create_user(p.db, "boss", "admin", "correct horse battery")
    return create_app(p), {"Authorization": f"Bearer {create_token(p.db, 'boss')}"}


APP, HEADERS = _served()
# The OpenAPI document needs a login too.
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, headers=HEADERS)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_a_server_error(case) -> None:
    case.call_and_validate(headers=HEADERS, checks=[not_a_server_error])
