"""The commands' log formats: key=value text and JSON lines, both stamped in UTC with the offset."""

from __future__ import annotations

import io
import json
import logging

from pyjk.logs import configure_logging, message_fields, utc_stamp


def _emit(fmt: str, *args: object, exc: bool = False) -> str:
    stream = io.StringIO()
    configure_logging("info", fmt, stream)  # type: ignore[arg-type]
    try:
        log = logging.getLogger("pyjk.test")
        if exc:
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception(*args)  # type: ignore[arg-type]
        else:
            log.warning(*args)  # type: ignore[arg-type]
    finally:
        configure_logging("warning", "text")
    return stream.getvalue()


def test_a_utc_stamp_writes_the_offset():
    assert utc_stamp(0.25) == "1970-01-01T00:00:00.250+00:00"


def test_text_lines_keep_key_value_and_gain_the_utc_offset():
    line = _emit("text", "member=%s state=%s", "node2", "ERR")
    stamp, level, logger, message = line.rstrip("\n").split(" ", 3)
    assert stamp.endswith("+00:00")
    assert (level, logger, message) == ("WARNING", "pyjk.test", "member=node2 state=ERR")


def test_a_json_line_is_one_object_with_the_message_pairs_as_fields():
    line = _emit("json", 'member=%s state=ERR reason="%s"', "node2", 'said "no"')
    assert line.count("\n") == 1
    doc = json.loads(line)
    assert doc["time"].endswith("+00:00")
    assert doc["level"] == "WARNING"
    assert doc["logger"] == "pyjk.test"
    assert doc["member"] == "node2"
    assert doc["state"] == "ERR"
    assert doc["message"].startswith("member=node2")


def test_a_json_line_carries_the_traceback_in_one_line():
    line = _emit("json", "failed id=%s", "abc", exc=True)
    assert line.count("\n") == 1
    doc = json.loads(line)
    assert "ValueError: boom" in doc["exception"]


def test_message_pairs_never_overwrite_the_record_fields():
    assert message_fields("level=DEBUG time=x a=1 a=2 url=http://h:1/x?q=1") == {
        "a": "1",
        "url": "http://h:1/x?q=1",
    }
