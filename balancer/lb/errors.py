"""Errors the lb engine raises when asked to do something it cannot (status worker commands)."""

from __future__ import annotations


class LbError(Exception):
    """Base of the engine's errors; the message says what was asked and why it was refused."""


class UnknownMember(LbError, KeyError):
    """No member of this name in the lb."""

    def __init__(self, lb: str, member: str) -> None:
        self.lb = lb
        self.member = member
        super().__init__(f"lb {lb!r} has no member {member!r}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class RecoverRefused(LbError):
    """``recover`` was asked for a member that is not in ERR (mod_jk §5.1)."""

    def __init__(self, lb: str, member: str, state: str) -> None:
        self.lb = lb
        self.member = member
        self.state = state
        super().__init__(f"lb {lb!r} member {member!r}: recover needs state ERR, found {state}")


class InvalidSetting(LbError, ValueError):
    """A runtime edit with a value out of range or of the wrong type."""

    def __init__(self, where: str, name: str, value: object, expected: str) -> None:
        self.where = where
        self.name = name
        self.value = value
        super().__init__(f"{where}: {name} expects {expected}, got {value!r}")
