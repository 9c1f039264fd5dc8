"""Typed errors; the CLI turns each into one line that says what to do."""


class MllmretError(Exception):
    """Base class for every error the CLI reports without a traceback."""


class ImageError(MllmretError):
    """An image file could not be read; the file is skipped, not fatal."""


class PathNotFound(MllmretError):
    """A path given to caption or OCR does not exist (a typo, an unmounted drive)."""


class GridError(MllmretError, ValueError):
    """A --grid value that is not NONE, COLSxROWS, or out of range."""


class PromptNotFound(MllmretError):
    """--prompt named neither a bundled prompt nor a readable file."""


class ModelLoadError(MllmretError):
    """A model could not be found, downloaded or loaded."""


class BackendError(MllmretError):
    """A captioning backend failed in a way that retrying will not fix."""


class UnknownBackend(MllmretError):
    """--backend named no registered backend."""


class ImportFormatError(MllmretError):
    """A JSONL import file has a malformed line (`kind` groups the reasons in the import's report)."""

    def __init__(self, message: str, kind: str = "invalid line") -> None:
        super().__init__(message)
        self.kind = kind
