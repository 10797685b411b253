"""The one error type configuration parsing raises.

Every problem names where it was found (file, line) and what (the directive or key), so an
operator can go straight to it. Problems are collected and raised together: a config with three
mistakes reports three, not the first one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a configuration file."""

    file: str
    line: int | None
    directive: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = f" {self.directive}:" if self.directive else ""
        return f"{where}:{what} {self.message}"


class ConfigError(Exception):
    """Raised with every problem found in one load; nothing else escapes the parsers."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
