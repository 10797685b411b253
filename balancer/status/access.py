"""Who may use the status worker, and how a change must arrive (front-door-security.md, admin
rows; mod_jk §5.3).

- The client address must be loopback or inside one of the ``allow`` networks (an IPv4-mapped
  IPv6 address counts as its IPv4 address); with a ``user`` list, the front end's
  authenticated user must be in it. Otherwise: 403 ``Access denied.``.
- A change needs POST (405 with ``Allow: POST`` otherwise: the resource a change's query names
  only accepts POST) and a token: ``Authorization: Bearer <token>`` equal to the ``token``
  directive, or the page's per-process CSRF token in the ``csrf`` form field. A bearer header
  that does not match is refused even when the form field would, and a browser that says the
  form came from another site (``Sec-Fetch-Site: cross-site``) is refused. Tokens are compared
  in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from urllib.parse import quote

from balancer.config.model import StatusConfig
from balancer.status.messages import (
    ACCESS_DENIED,
    BAD_TOKEN,
    CROSS_SITE,
    NEEDS_POST,
    Params,
    StatusError,
    StatusRequest,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(config: StatusConfig) -> list[Network]:
    return [ipaddress.ip_network(n, strict=False) for n in config.allow]


def check_access(config: StatusConfig, allow: Sequence[Network], req: StatusRequest) -> None:
    try:
        ip = ipaddress.ip_address(req.client_ip.split("%")[0])
    except ValueError:
        raise StatusError(403, ACCESS_DENIED) from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not (ip.is_loopback or any(ip in net for net in allow)):
        raise StatusError(403, ACCESS_DENIED)
    if config.user:
        fold = config.user_case_insensitive
        user = _folded(req.user or "", fold)
        if not any(hmac.compare_digest(user, _folded(u, fold)) for u in config.user):
            raise StatusError(403, ACCESS_DENIED)


def check_change(config: StatusConfig, csrf: str, req: StatusRequest, params: Params) -> None:
    if req.method != "POST":
        raise StatusError(405, NEEDS_POST, (("Allow", "POST"),))
    bearer = req.bearer
    if bearer is not None:
        if config.token and hmac.compare_digest(bearer.encode(), config.token.encode()):
            return
        raise StatusError(403, BAD_TOKEN)
    if (req.header("sec-fetch-site") or "").strip().lower() == "cross-site":
        raise StatusError(403, CROSS_SITE)
    given = params.get("csrf")
    if given is None or not hmac.compare_digest(given.encode(), csrf.encode()):
        raise StatusError(403, BAD_TOKEN)


def safe_path(path: str) -> str:
    """The request path for links, form actions and Location: one leading slash (``//host``
    would leave the site) and percent-escapes for anything outside the path alphabet."""
    return "/" + quote(path.lstrip("/"), safe="/;=-._~!$&'()*+,:@%")


def _folded(name: str, fold: bool) -> bytes:
    return (name.casefold() if fold else name).encode()
