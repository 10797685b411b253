"""The commands' own logs on stderr: ``text`` (key=value, as today) or ``json`` (one object a line).

Both stamp records in UTC with the offset written out (``2026-12-06T16:24:25.123+00:00``), so
lines from machines in other zones sort and compare as they are. The JSON form carries the
message and, as fields of their own, the ``key=value`` pairs the message holds
(``member=node2 state=ERR reason=connect-refused`` → ``"member": "node2", ...``): pyjk's log
lines are written that way to be grepped, and a log pipeline can then filter on them without
parsing the message again.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

__all__ = ["LOG_FORMATS", "JsonFormatter", "TextFormatter", "configure_logging", "utc_stamp"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
# the record's own keys: a key=value pair of the message never overwrites them
_RESERVED = frozenset({"time", "level", "logger", "message", "exception"})
_PAIR = re.compile(r'(?<![\w.-])([a-z_][a-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^\s"]+)')


def utc_stamp(seconds: float) -> str:
    """ISO 8601 in UTC with milliseconds and the offset: ``2026-12-06T16:24:25.123+00:00``."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def message_fields(message: str) -> dict[str, str]:
    """The ``key=value`` pairs of a message (quoted values unquoted); the first one wins."""
    fields: dict[str, str] = {}
    for key, value in _PAIR.findall(message):
        if key in _RESERVED or key in fields:
            continue
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        fields[key] = value
    return fields


class TextFormatter(logging.Formatter):
    """``<UTC time> LEVEL logger message``: today's key=value lines, with the offset."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_stamp(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the message's pairs."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        doc: dict[str, object] = {
            "time": utc_stamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        doc.update(message_fields(message))
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure_logging(
    level: str = "info", fmt: LogFormat = "text", stream: TextIO | None = None
) -> None:
    """Route the root logger to ``stream`` (stderr) in ``fmt``; replaces earlier handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
