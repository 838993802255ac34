"""Project definitions: a config error names the file, the key and what is wrong."""

from pathlib import Path

import pytest

from labelloop.core.config import load_project_config, parse_project_config
from labelloop.core.errors import ConfigError

GOOD = """
name: spam
modality: text
task: single_label
content_fields: [text]
labels:
  - name: ham
    description: an ordinary message
  - name: spam
    description: unsolicited advertising
    examples: ["WIN a FREE prize now"]
metrics:
  precision_target: 0.9
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "labelloop.yaml"
    p.write_text(text)
    return p


def test_good_config_loads(tmp_path: Path) -> None:
    cfg = load_project_config(write(tmp_path, GOOD))
    assert cfg.label_names == ["ham", "spam"]
    assert cfg.metrics.precision_target == 0.9
    assert cfg.labels[1].examples == ["WIN a FREE prize now"]


def test_folder_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    assert load_project_config(tmp_path).name == "spam"


@pytest.mark.parametrize(
    "text, key, problem",
    [
        (
            GOOD.replace("precision_target: 0.9", "precision_target: 1.5"),
            "metrics.precision_target",
            "less than or equal to 1",
        ),
        (GOOD.replace("task: single_label", "task: regression"), "task", "single_label"),
        (
            GOOD.replace("    description: unsolicited advertising\n", "    descripton: typo\n"),
            "labels[1].descripton",
            "unknown key",
        ),
        (
            GOOD.replace(
                '  - name: spam\n    description: unsolicited advertising\n    examples: ["WIN a FREE prize now"]\n',
                "",
            ),
            "labels",
            "at least 2",
        ),
        (GOOD.replace("name: spam\n", "", 1), "name", "required"),
        (GOOD.replace("modality: text", "modality: audio"), "modality", "text"),
    ],
)
def test_bad_config_names_file_key_and_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_project_config(path)
    assert err.value.path == str(path)
    assert err.value.key == key
    assert problem in err.value.problem
    assert str(path) in str(err.value)


def test_duplicate_label_is_refused() -> None:
    with pytest.raises(ConfigError, match="appears twice"):
        parse_project_config({"name": "x", "labels": [{"name": "a"}, {"name": "a"}]}, "x.yaml")


def test_invalid_yaml_says_where(tmp_path: Path) -> None:
    path = write(tmp_path, "name: [unclosed\nlabels: x\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+"):
        load_project_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_project_config(tmp_path / "nope.yaml")


def test_relative_sqlite_storage_is_in_project_folder(tmp_path: Path) -> None:
    cfg = load_project_config(write(tmp_path, GOOD))
    assert cfg.resolved_storage(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'labelloop.db'}"
