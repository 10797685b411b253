"""Collects the errors and warnings of one configuration load, so all are reported at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from balancer.config.errors import ConfigError, Problem
from balancer.config.properties import Entry


@dataclass(slots=True)
class Findings:
    file: str
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    # lines whose value already has an error (an unresolved $(var)): a second error saying
    # the same value is not a number would only repeat it
    muted: set[tuple[str, int]] = field(default_factory=set)

    def value_error(self, at: Entry, message: str) -> None:
        if (at.file, at.line) not in self.muted:
            self.error(at, None, message)

    def error(self, at: Entry | None, directive: str | None, message: str) -> None:
        self.errors.append(self._problem(at, directive, message))

    def warn(self, at: Entry | None, directive: str | None, message: str) -> None:
        self.warnings.append(self._problem(at, directive, message))

    def _problem(self, at: Entry | None, directive: str | None, message: str) -> Problem:
        if at is None:
            return Problem(self.file, None, directive, message)
        return Problem(at.file, at.line, directive if directive is not None else at.key, message)

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ConfigError(in_file_order(self.errors))


def in_file_order(problems: list[Problem]) -> list[Problem]:
    """Deduplicated (a template's bad value is found once per worker that references it) and
    sorted by file and line; problems without a line come first."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.file, p.line if p.line is not None else 0))
