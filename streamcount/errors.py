"""User-facing errors: each becomes one line on stderr and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (file, URL, config, model). One line, exit code 2."""

    exit_code = 2


class InputError(UserError):
    """An input (video, image, folder, stream URL) is missing or unreadable."""


class ModelError(UserError):
    """An unknown model name, a wrong or corrupt checkpoint, a shape mismatch."""


class RegionError(UserError):
    """A bad regions file or polygon."""


class BackendError(UserError):
    """An inference backend that is unknown or cannot run here."""


class ConfigError(UserError):
    """A config problem; carries the key path and YAML line where known."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None,
                 line: int | None = None) -> None:
        where = ""
        if path:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
            where += ": "
        if key:
            where += f"{key}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.key = key
        self.line = line
