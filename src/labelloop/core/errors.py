"""Errors a user can act on. Each message says what went wrong and where."""


class LabelloopError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class ConfigError(LabelloopError):
    """A project file is missing, unreadable or invalid."""

    def __init__(self, path: str, key: str | None, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem}")


class IngestError(LabelloopError):
    """A source cannot be read at all (a bad row is quarantined instead, never raised)."""


class StoreError(LabelloopError):
    """The store cannot be opened or is at the wrong schema version."""


class LabelError(LabelloopError):
    """A label is outside the taxonomy or otherwise invalid."""


def quoted(value: object, limit: int = 80) -> str:
    """``repr`` of a piece of user input, cut to ``limit`` characters with an ellipsis and the
    full length: an error message quotes an excerpt, never a 10 MB input whole."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,} characters)"
