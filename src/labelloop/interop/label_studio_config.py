"""Label Studio labeling configs (https://labelstud.io/tags/): the XML that names a project's
controls. An import reads which ``Choices`` control holds the labels and which data key holds
the content; an export writes a config with the control names the project was imported with,
so a round trip keeps ``topic`` as ``topic`` instead of renaming it ``label``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from labelloop.core.config import Modality, ProjectConfig, TaskType
from labelloop.core.errors import IngestError

_MAX_CONFIG_BYTES = 1_000_000
# Object tags whose ``value="$key"`` names the data key an item's content goes to.
_OBJECT_TAGS = {"Text", "HyperText", "Image", "Table", "Paragraphs", "Markdown"}


@dataclass(frozen=True)
class ChoicesControl:
    """One ``<Choices>`` control: its name, the object it labels, single or multiple, values."""

    name: str
    to_name: str
    multiple: bool
    values: tuple[str, ...]


@dataclass(frozen=True)
class LabelConfig:
    """What labelloop needs of a labeling config: its ``Choices`` controls and the data key of
    each object tag (``<Text name="text" value="$message"/>``: ``{"text": "message"}``)."""

    xml: str
    choices: tuple[ChoicesControl, ...]
    data_keys: dict[str, str]

    def control(self, from_name: str | None, source: str) -> ChoicesControl:
        """The ``Choices`` control named ``from_name`` (or the only one); a clear error else."""
        names = [c.name for c in self.choices]
        if from_name is not None:
            for c in self.choices:
                if c.name == from_name:
                    return c
            raise IngestError(
                f"{source}: the labeling config has no Choices control {from_name!r} "
                f"(it has {', '.join(map(repr, names)) or 'none'})"
            )
        if len(self.choices) == 1:
            return self.choices[0]
        if not self.choices:
            raise IngestError(
                f"{source}: the labeling config has no Choices control; labelloop reads "
                "classification labels (<Choices>) only"
            )
        raise IngestError(
            f"{source}: the labeling config has several Choices controls "
            f"({', '.join(map(repr, names))}); pass from_name= (--from-name) to pick one"
        )

    def data_key(self, control: ChoicesControl) -> str | None:
        return self.data_keys.get(control.to_name)


def parse_label_config(xml: str, source: str = "labeling config") -> LabelConfig:
    """Read a labeling config's ``Choices`` controls and object data keys."""
    if len(xml.encode("utf-8")) > _MAX_CONFIG_BYTES:
        raise IngestError(f"{source}: a labeling config over {_MAX_CONFIG_BYTES:,} bytes")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise IngestError(f"{source}: not a valid labeling config (XML: {exc})") from None
    choices = []
    data_keys: dict[str, str] = {}
    for el in root.iter():
        name = el.get("name")
        if el.tag == "Choices" and name:
            values = tuple(
                c.get("alias") or c.get("value") or "" for c in el.iter("Choice") if c is not el
            )
            choices.append(
                ChoicesControl(
                    name=name,
                    to_name=(el.get("toName") or "").split(",")[0],
                    multiple=(el.get("choice") or "single").startswith("multiple"),
                    values=tuple(v for v in values if v),
                )
            )
        elif el.tag in _OBJECT_TAGS and name and (el.get("value") or "").startswith("$"):
            data_keys[name] = el.get("value", "")[1:]
    return LabelConfig(xml=xml, choices=tuple(choices), data_keys=data_keys)


def read_label_config(value: str | Path) -> LabelConfig:
    """A labeling config from a file, or from the XML itself (a string starting with ``<``)."""
    if isinstance(value, str) and value.lstrip().startswith("<"):
        return parse_label_config(value)
    path = Path(value)
    if not path.is_file():
        raise IngestError(f"{path}: no such labeling config file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_label_config(text, str(path))


def config_path_for(tasks_path: str | Path) -> Path:
    """Where an export writes (and an import looks for) the labeling config of a task file:
    ``tasks.json`` -> ``tasks.label_config.xml``."""
    p = Path(tasks_path)
    return p.with_name(f"{p.stem}.label_config.xml")


def default_to_name(config: ProjectConfig) -> str:
    """The object tag's name when none was imported: ``text``, ``image`` or ``table``."""
    return {Modality.image: "image", Modality.tabular: "table"}.get(config.modality, "text")


def default_data_key(config: ProjectConfig) -> str:
    """The data key of the content when none was imported: the (first) content field for
    text, ``image`` for an image, ``row`` (an object of the cells) for a table row."""
    if config.modality == Modality.image:
        return "image"
    if config.modality == Modality.tabular:
        return "row"
    return config.content_fields[0]


def label_studio_config(
    project_or_config: ProjectConfig | Any,
    *,
    from_name: str = "label",
    to_name: str | None = None,
    data_key: str | None = None,
) -> str:
    """A Label Studio labeling config (XML) matching ``export_label_studio``'s tasks, for a
    ``ProjectConfig`` or anything holding one as ``.config`` (a project, its context)."""
    config = (
        project_or_config
        if isinstance(project_or_config, ProjectConfig)
        else project_or_config.config
    )
    choice = "multiple" if config.task == TaskType.multi_label else "single"
    to_name = to_name or default_to_name(config)
    key = data_key or default_data_key(config)
    if config.modality == Modality.image:
        objects = [f"  <Image name={quoteattr(to_name)} value={quoteattr('$' + key)}/>"]
    elif config.modality == Modality.tabular:
        # A table row's cells are one object under one data key, shown as a table.
        objects = [f"  <Table name={quoteattr(to_name)} value={quoteattr('$' + key)}/>"]
    else:
        keys = [key, *config.content_fields[1:]]
        objects = [
            f"  <Header value={quoteattr(k)}/>\n  <Text name={quoteattr(to_name if i == 0 else k)} "
            f"value={quoteattr('$' + k)}/>"
            if len(keys) > 1
            else f"  <Text name={quoteattr(to_name)} value={quoteattr('$' + k)}/>"
            for i, k in enumerate(keys)
        ]
    choices = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in config.label_names)
    return (
        "<View>\n"
        + "\n".join(objects)
        + f"\n  <Choices name={quoteattr(from_name)} toName={quoteattr(to_name)} "
        f'choice="{choice}" showInline="true">\n{choices}\n  </Choices>\n</View>\n'
    )


def config_fits(lc: LabelConfig, config: ProjectConfig, from_name: str) -> bool:
    """Whether an imported config still describes the project: its control ``from_name``
    offers exactly the project's labels with the project's single/multiple choice."""
    for c in lc.choices:
        if c.name == from_name:
            return set(c.values) == set(config.label_names) and c.multiple == (
                config.task == TaskType.multi_label
            )
    return False
