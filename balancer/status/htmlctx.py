"""What the HTML writers share: the request's context, links and the CSP source of a stylesheet."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from balancer.config.model import StatusConfig
from balancer.status import forms
from balancer.status.escape import h
from balancer.status.messages import Params
from balancer.status.model import Result, Sources

_CSS_URL = re.compile(r"(https?://[^\s;,'\"<>]+|/[^\s;,'\"<>]*)")


@dataclass(frozen=True, slots=True)
class Context:
    config: StatusConfig
    sources: Sources
    path: str  # safe_path of the request
    params: Params
    csrf: str
    read_only: bool
    banner: Result | None = None
    status: int = 200

    @property
    def opt(self) -> int:
        return self.params.opt

    def link(self, label: str, title: str = "", **query: object) -> str:
        """A GET link to this page; ``opt`` is carried along unless given."""
        q = {k: str(v) for k, v in query.items() if v is not None and v != ""}
        if "opt" not in query and self.opt:
            q["opt"] = str(self.opt)
        href = self.path + ("?" + urlencode(q) if q else "")
        t = f' title="{h(title)}"' if title else ""
        return f'<a href="{h(href)}"{t}>{h(label)}</a>'

    def toggle(self, label: str, bit: int, on: bool) -> str:
        """A link that sets (on) or clears an opt bit of the current view."""
        query = {
            k: v
            for k, v in self.params.values.items()
            if k in ("cmd", "w", "sw", "re", "att", "from")
        }
        opt = self.opt | bit if on else self.opt & ~bit
        return self.link(label, **query, opt=opt)

    def target(self) -> forms.Target:
        cmd = self.params.cmd
        origin = self.params.origin if cmd == "edit" else "show" if cmd == "show" else "list"
        return forms.Target(self.path, self.csrf, origin)


def css_source(css: str) -> str:
    """The CSP addition for a configured stylesheet (mod_jk's ``css``), if it is a plain URL."""
    if not css or not css.isascii() or not _CSS_URL.fullmatch(css):
        return ""
    return " 'self'" if css.startswith("/") else " " + css
