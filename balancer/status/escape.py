"""Writing values safely in each format.

Names from the config are restricted to ``[A-Za-z0-9_.-]``, but routes, domains and redirects
can be edited at runtime, last-error texts come from the network, and parameters come from the
client: every value goes through one of these on its way out, whatever its origin.
"""

from __future__ import annotations

import html
import re

from balancer.status.model import Scalar

# Printable ASCII without space, '"' and '\': written bare in txt (mod_jk's values look so).
_TXT_PLAIN = re.compile(r"[!#-\[\]-~]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_XML_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def text(value: Scalar) -> str:
    """The text form shared by txt, prop, xml and html: mod_jk's True/False, "-" = unknown."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _escape_control(match: re.Match[str]) -> str:
    c = match.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if c in named:
        return named[c]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def txt(value: Scalar, quoted: bool = False) -> str:
    """A txt attribute value: bare when harmless (mod_jk's look), else in double quotes with
    backslash escapes, so a value can never end its line or swallow the next attribute."""
    s = text(value)
    if not quoted and _TXT_PLAIN.fullmatch(s):
        return s
    s = s.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _CONTROL.sub(_escape_control, s) + '"'


def prop_value(value: Scalar) -> str:
    """A properties value (java.util.Properties escapes): one line whatever it holds."""
    s = _CONTROL.sub(_prop_control, text(value).replace("\\", "\\\\"))
    return "\\" + s if s.startswith((" ", "#", "!")) else s


def _prop_control(match: re.Match[str]) -> str:
    c = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c, f"\\u{ord(c):04x}")


def prop_key(key: str) -> str:
    """A properties key: separators, comment starts and spaces escaped as well."""
    s = re.sub(r"([=: #!])", r"\\\1", key.replace("\\", "\\\\"))
    return _CONTROL.sub(_prop_control, s)


def xml_attr(value: Scalar) -> str:
    """An XML attribute value for double quotes. Characters XML 1.0 cannot carry become
    U+FFFD; line breaks and tabs are kept as character references."""
    s = _XML_BAD.sub("\ufffd", text(value))
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return s.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")


def xml_name(name: str) -> str | None:
    """``name`` if it can be an XML attribute name, else None (the caller skips it)."""
    return name if _XML_NAME.fullmatch(name) else None


def h(value: Scalar) -> str:
    """HTML text or attribute value (quotes escaped too)."""
    return html.escape(_XML_BAD.sub("\ufffd", text(value)), quote=True)


def log(value: object) -> str:
    """A value for a ``key=value`` log line: bare when harmless, else quoted and escaped."""
    s = "" if value is None else text(value) if isinstance(value, str | int) else str(value)
    return txt(s)
