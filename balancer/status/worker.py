"""The status worker (mod_jk's jkstatus/jkmanager): dispatch and security.

``StatusWorker.handle(request, now, wall)`` answers one request; it is pure apart from reading
the engines it was given (and changing them for ``update``/``reset``/``recover``).

Commands, parameters, formats and messages are mod_jk's (reference modjk.md §5, §9.8). Where
pyjk does better (front-door-security.md, admin rows):
- access: the client must be on loopback or in the ``allow`` networks, and in the ``user``
  list when one is set; else 403 ``Access denied.``;
- ``read_only`` (or ``opt=0x20`` for one view) refuses every change with 403;
- changes (update, reset, recover) only by POST, parameters in a form-urlencoded body or, as
  mod_jk takes them, in the query string (the body's win where both name one), with the
  process's CSRF token (field ``csrf``, put in every HTML form) or ``Authorization: Bearer
  <token>`` (the ``token`` directive). A GET with such a command changes nothing: 405 with
  ``Allow: POST`` (the resource the query names only accepts POST). Wrong or missing token:
  403. A browser's ``Sec-Fetch-Site: cross-site`` on a form POST: 403;
- real status codes (mod_jk answers 200 to everything), mod_jk's ``Result`` body in every one;
- no caching, no sniffing, no framing; a strict CSP on HTML;
- one ``pyjk.audit`` log line per change: client, command, worker, member, before -> after.
Changes apply to the running engines only and are not persisted (the pages say so).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlencode

from prometheus_client.registry import Collector

from balancer.config.directives import is_sensitive_key
from balancer.config.model import StatusConfig, WorkersConfig
from balancer.lb.engine import LbEngine
from balancer.lb.shm import ProcessRow
from balancer.mounts import UriMap
from balancer.pair import PairView
from balancer.status import commands, page
from balancer.status.access import check_access, check_change, networks, safe_path
from balancer.status.escape import log
from balancer.status.jsondoc import render_json
from balancer.status.messages import (
    ACTION_FINISHED,
    CHANGES,
    COMMANDS,
    EMPTY_SUB_WORKER,
    FORM_ONLY,
    INVALID_COMMAND,
    INVALID_MIME,
    METHOD,
    MIMES,
    NO_SUB_WORKERS,
    NO_WORKER,
    OPT_NO_AJP,
    OPT_NO_LB,
    OPT_NO_MAPS,
    OPT_NO_MEMBERS,
    OPT_READ_ONLY,
    READ_ONLY,
    READ_ONLY_REFUSED,
    UNKNOWN_WORKER,
    WORKER_NEEDED,
    Params,
    StatusError,
    StatusRequest,
    StatusResponse,
)
from balancer.status.model import (
    ClusterLimits,
    ClusterView,
    Document,
    PoolStats,
    Result,
    Selection,
    ServerInfo,
    Sources,
)
from balancer.status.prometheus import CONTENT_TYPE as PROMETHEUS_TYPE
from balancer.status.prometheus import render_prometheus
from balancer.status.snapshot import head, snapshot
from balancer.status.text import render_prop, render_txt
from balancer.status.tls_view import TlsView
from balancer.status.xmldoc import render_xml

audit = logging.getLogger("pyjk.audit")
logger = logging.getLogger("pyjk.status")

_RENDER: dict[str, Callable[[Document, StatusConfig], bytes]] = {
    "txt": render_txt,
    "prop": render_prop,
    "xml": render_xml,
    "json": render_json,
}
_TYPES = {
    "html": "text/html; charset=utf-8",
    "xml": "text/xml; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
    "prop": "text/plain; charset=utf-8",
    "json": "application/json",
    "prometheus": PROMETHEUS_TYPE,
}
_COMMON_HEADERS = (
    ("Cache-Control", "no-cache"),
    ("Pragma", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
_HTML_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'{css}; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_KEPT_RESULTS = 64  # one-shot result messages waiting to be shown after a redirect


def _signed(secret: str, message: str) -> str:
    text = base64.urlsafe_b64encode(message.encode()).decode().rstrip("=")
    mac = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{text}.{mac}"


def _verified(secret: str, key: str) -> str | None:
    text, _, mac = key.partition(".")
    good = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()[:32]
    if not hmac.compare_digest(mac, good):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except ValueError:
        return None


class StatusWorker:
    """One ``type=status`` worker. Single-threaded: call it from the event loop only."""

    def __init__(
        self,
        config: StatusConfig,
        workers: WorkersConfig,
        engines: Mapping[str, LbEngine],
        uri_map: UriMap | None,
        server: ServerInfo,
        started: float,
        *,
        cluster_view: ClusterView | None = None,
        pool_stats: PoolStats | None = None,
        maintain_tick: float = 1.0,
        tls_view: Callable[[], TlsView | None] | None = None,
        cluster_limits: ClusterLimits | None = None,
        processes: Callable[[], Sequence[ProcessRow]] | None = None,
        pair: Callable[[], PairView | None] | None = None,
    ) -> None:
        self.config = config
        self.sources = Sources(
            config,
            workers,
            engines,
            uri_map,
            server,
            started,
            cluster_view,
            pool_stats,
            maintain_tick,
            tls_view,
            cluster_limits,
            processes,
            pair,
        )
        self.csrf = secrets.token_urlsafe(32)  # per process: a restart invalidates old pages
        # rendered after the snapshot on /metrics (traffic, process, python); set by the wiring
        self.collectors: tuple[Collector, ...] = ()
        self._allow = networks(config)
        self._results: OrderedDict[str, Result] = OrderedDict()
        # --processes N: the page after a change may come from another process, which has
        # not this one's results; the message then travels in the URL, signed with the token
        # every process shares (a forged message does not verify), and ``consume_result``
        # (the shared table's) says whether its one-shot id was shown already
        self.consume_result: Callable[[int], bool] | None = None

    def update_sources(
        self,
        *,
        workers: WorkersConfig | None = None,
        engines: Mapping[str, LbEngine] | None = None,
        uri_map: UriMap | None = None,
        cluster_view: ClusterView | None = None,
        pool_stats: PoolStats | None = None,
    ) -> None:
        """After a reload (or once the cluster and the pools exist): read these from now on;
        None keeps the current one."""
        src = self.sources
        src.workers = workers or src.workers
        src.engines = engines if engines is not None else src.engines
        src.uri_map = uri_map or src.uri_map
        src.cluster_view = cluster_view or src.cluster_view
        src.pool_stats = pool_stats or src.pool_stats

    # -- the request ------------------------------------------------------------------------

    def handle(self, req: StatusRequest, now: float, wall: float) -> StatusResponse:
        params = Params()
        mime = "txt"
        try:
            params = self._params(req)
            mime = self._mime(req, params)
            return self._dispatch(req, params, mime, now, wall)
        except StatusError as e:
            if e.status == 403:
                logger.warning(
                    "status worker=%s refused client=%s method=%s cmd=%s reason=%s",
                    self.config.name,
                    log(req.client_ip),
                    log(req.method),
                    log(params.cmd),
                    log(e.message),
                )
            return self._answer(
                req, params, mime, Document(Result(False, e.message)), e.status, e.headers
            )

    def _params(self, req: StatusRequest) -> Params:
        if req.method == "POST":
            ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
            if ctype != "application/x-www-form-urlencoded" and (ctype or req.body):
                # the query still names the format for the error answer
                raise StatusError(415, FORM_ONLY)
            # mod_jk reads a command's parameters from the query string; a mod_jk-era
            # ``curl -X POST ".../jkstatus?cmd=update&w=lb&sw=n3&vwa=d"`` must do what it says
            # rather than answer the list page (issue 18). The body's values win over the
            # query's (first value wins in Params.parse), so a form that posts to a URL with a
            # query still does what its fields say.
            body = req.body.decode("latin-1")
            return Params.parse(f"{body}&{req.query}" if body and req.query else body or req.query)
        return Params.parse(req.query)

    def _mime(self, req: StatusRequest, params: Params) -> str:
        given = params.get("mime")
        if given is None and req.path.endswith("/metrics"):
            return "prometheus"
        return params.mime if params.mime in MIMES else "txt"

    def _dispatch(
        self, req: StatusRequest, params: Params, mime: str, now: float, wall: float
    ) -> StatusResponse:
        check_access(self.config, self._allow, req)
        if req.method not in ("GET", "HEAD", "POST"):
            raise StatusError(405, METHOD, (("Allow", "GET, HEAD, POST"),))
        cmd = params.cmd
        read_only = self.config.read_only or bool(params.opt & OPT_READ_ONLY)
        if read_only and cmd in READ_ONLY_REFUSED:
            raise StatusError(403, READ_ONLY)
        if cmd not in COMMANDS:
            raise StatusError(400, INVALID_COMMAND)
        if params.get("mime") is not None and params.mime not in MIMES:
            raise StatusError(400, INVALID_MIME)
        if cmd in CHANGES:
            check_change(self.config, self.csrf, req, params)
        target = self._target(params, cmd) if cmd in WORKER_NEEDED else None
        if cmd in CHANGES:
            assert target is not None
            return self._change(req, params, mime, cmd, target, now)
        return self._view(req, params, mime, cmd, now, wall)

    def _target(self, params: Params, cmd: str) -> tuple[str, LbEngine, bool]:
        name = params.worker
        if not name:
            raise StatusError(400, NO_WORKER)
        engine = self.sources.engines.get(name)
        if engine is None:
            raise StatusError(404, UNKNOWN_WORKER)
        single = not self.sources.is_lb(name)
        sub = params.sub
        if sub is not None and not sub:
            raise StatusError(400, EMPTY_SUB_WORKER)
        if sub is not None and cmd in ("show", "edit"):
            if single:
                raise StatusError(400, NO_SUB_WORKERS)
            commands.find_members(engine, sub, wildcard=False)
        return name, engine, single

    # -- changes ----------------------------------------------------------------------------

    def _change(
        self,
        req: StatusRequest,
        params: Params,
        mime: str,
        cmd: str,
        target: tuple[str, LbEngine, bool],
        now: float,
    ) -> StatusResponse:
        name, engine, single = target
        run = {"update": commands.update, "reset": commands.reset, "recover": commands.recover}
        changes = run[cmd](engine, single, params, now)
        for c in changes:
            audit.info(
                "status change client=%s user=%s cmd=%s worker=%s member=%s attribute=%s "
                "before=%s after=%s",
                log(req.client_ip),
                log(req.user or "-"),
                cmd,
                log(c.worker),
                log(c.member or "-"),
                log(c.attribute),
                log(c.before),
                log(c.after),
            )
        result = Result(True, ACTION_FINISHED)
        if mime != "html":
            return self._answer(req, params, mime, Document(result), 200)
        return self._see_other(req, params, name, page.describe(cmd, changes))

    def _see_other(
        self, req: StatusRequest, params: Params, worker: str, message: str
    ) -> StatusResponse:
        """After a change from the HTML page: 303 to the view it came from, with a one-shot
        result id (not the text: a message in a URL could be forged by anyone)."""
        if self.consume_result is not None:
            key = _signed(self.csrf, f"{secrets.randbits(62) + 1}:{message}")
        else:
            key = secrets.token_urlsafe(9)
            self._results[key] = Result(True, message)
            while len(self._results) > _KEPT_RESULTS:
                self._results.popitem(last=False)
        query: dict[str, str] = {"cmd": params.origin}
        if params.origin == "show":
            query["w"] = worker
            sub = params.sub
            if sub and "*" not in sub and "?" not in sub:
                query["sw"] = sub
        for name in ("opt", "re"):
            value = params.get(name)
            if value:
                query[name] = value
        query["result"] = key
        location = f"{safe_path(req.path)}?{urlencode(query)}"
        body = f"See {location}\n".encode()
        return StatusResponse(
            303, "text/plain; charset=utf-8", body, (*_COMMON_HEADERS, ("Location", location))
        )

    # -- views ------------------------------------------------------------------------------

    def _view(
        self, req: StatusRequest, params: Params, mime: str, cmd: str, now: float, wall: float
    ) -> StatusResponse:
        ok = Result(True, ACTION_FINISHED)
        if cmd in ("list", "show"):
            opt = params.opt
            sel = Selection(
                worker=params.worker if cmd == "show" else None,
                member=params.sub if cmd == "show" else None,
                hide_members=bool(opt & OPT_NO_MEMBERS),
                hide_maps=bool(opt & OPT_NO_MAPS),
                hide_lbs=bool(opt & OPT_NO_LB),
                hide_ajp=bool(opt & OPT_NO_AJP),
            )
            snap = snapshot(self.sources, sel, now, wall)
            if mime == "prometheus":
                return StatusResponse(
                    200, _TYPES[mime], render_prometheus(snap, self.collectors), _COMMON_HEADERS
                )
            doc = Document(ok, head(self.sources, wall), snap)
        elif cmd == "version":
            doc = Document(ok, head(self.sources, wall))
        elif cmd == "dump":
            doc = Document(ok, head(self.sources, wall), dump=self._dump())
        elif mime == "html":  # edit: the form shows the worker's current settings
            doc = Document(ok, snapshot=snapshot(self.sources, Selection(params.worker), now, wall))
        else:  # edit in another format: mod_jk answers with the result alone
            doc = Document(ok)
        return self._answer(req, params, mime, doc, 200)

    def _dump(self) -> tuple[tuple[str, str], ...]:
        return tuple(
            (k, v)
            for k, v in self.sources.workers.properties.items()
            if not is_sensitive_key(k) and k.rsplit(".", 1)[-1] not in ("secret", "token")
        )

    def _answer(
        self,
        req: StatusRequest,
        params: Params,
        mime: str,
        doc: Document,
        status: int,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> StatusResponse:
        headers = (*_COMMON_HEADERS, *extra)
        if mime == "html":
            ctx = page.Context(
                config=self.config,
                sources=self.sources,
                path=safe_path(req.path),
                params=params,
                csrf=self.csrf,
                read_only=self.config.read_only or bool(params.opt & OPT_READ_ONLY),
                banner=self._take_result(params) if status == 200 else None,
                status=status,
            )
            body = page.render(ctx, doc)
            csp = _HTML_CSP.format(css=page.css_source(self.config.css))
            return StatusResponse(
                status, _TYPES["html"], body, (*headers, ("Content-Security-Policy", csp))
            )
        if mime not in _RENDER:  # prometheus answers list/show only; the rest as txt
            mime = "txt"
        return StatusResponse(status, _TYPES[mime], _RENDER[mime](doc, self.config), headers)

    def _take_result(self, params: Params) -> Result | None:
        key = params.get("result")
        if key is None:
            return None
        if self.consume_result is not None:
            signed = _verified(self.csrf, key)
            if signed is None:
                return None
            token, _, message = signed.partition(":")
            if not token.isdigit() or not self.consume_result(int(token)):
                return None  # shown once, by whichever process
            return Result(True, message)
        return self._results.pop(key, None)
