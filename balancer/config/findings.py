"""Collects the errors and warnings of one configuration load, so all are reported at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from balancer.config.errors import ConfigError, Problem
from balancer.config.properties import Entry, Properties


class Place(Protocol):
    """Where a problem was found: an ``Entry`` (whose key names the directive) or a
    ``Location`` (a uriworkermap rule, a worker's definition)."""

    @property
    def file(self) -> str: ...

    @property
    def line(self) -> int: ...


@dataclass(slots=True)
class Findings:
    file: str
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    # lines whose value already has an error (an unresolved $(var)): a second error saying
    # the same value is not a number would only repeat it
    muted: set[tuple[str, int]] = field(default_factory=set)

    def take(self, props: Properties) -> None:
        """Adopt what reading the lines found; values on those lines are not judged again."""
        self.errors.extend(props.problems)
        self.muted.update((p.file, p.line) for p in props.problems if p.line is not None)
        self.warnings.extend(props.warnings)

    def value_error(self, at: Entry, message: str) -> None:
        if (at.file, at.line) not in self.muted:
            self.error(at, None, message)

    def error(self, at: Place | None, directive: str | None, message: str) -> None:
        self.errors.append(self._problem(at, directive, message))

    def warn(self, at: Place | None, directive: str | None, message: str) -> None:
        self.warnings.append(self._problem(at, directive, message))

    def _problem(self, at: Place | None, directive: str | None, message: str) -> Problem:
        if at is None:
            return Problem(self.file, None, directive, message)
        if directive is None and isinstance(at, Entry):
            directive = at.key
        return Problem(at.file, at.line, directive, message)

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ConfigError(in_file_order(self.errors))


def in_file_order(problems: list[Problem]) -> list[Problem]:
    """Deduplicated (a template's bad value is found once per worker that references it) and
    sorted by file and line; problems without a line come first."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.file, p.line if p.line is not None else 0))
