"""A test kit for the status worker tests (and the tests of the kit itself).

``Kit`` builds a status worker over real engines from a small workers.properties: lb ``lb``
over n1..n3, a single-member worker ``solo``, the status worker ``jkstatus`` with an API token
and one allowed network. ``kit.get(...)``/``kit.post(...)`` send requests the way the wiring
would; ``kit.drive(...)`` runs requests through the real lb engine with fake outcomes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from urllib.parse import urlencode

from balancer.config.model import LbConfig
from balancer.config.reader import parse_workers
from balancer.lb.decisions import RequestFacts
from balancer.lb.engine import LbEngine
from balancer.mounts import parse_mounts
from balancer.status import ServerInfo, StatusRequest, StatusResponse, StatusWorker
from tests.unit.test_lb_driver import Behaviour, Run, run

TOKEN = "api-token-0123456789abcdefghijklmnop"
WORKERS = f"""
worker.list=lb,solo,jkstatus
worker.maintain=60
worker.n1.type=http
worker.n1.port=8101
worker.n2.type=http
worker.n2.port=8102
worker.n3.type=ajp13
worker.n3.port=8009
worker.n3.lbfactor=2
worker.n3.secret=very-secret-ajp
worker.solo.type=http
worker.solo.port=8200
worker.lb.type=lb
worker.lb.balance_workers=n1,n2,n3
worker.jkstatus.type=status
worker.jkstatus.token={TOKEN}
worker.jkstatus.allow=10.1.0.0/16
"""
MOUNTS = "/app|/*=lb\n/solo/*=solo\n/jkmanager|/*=jkstatus\n/metrics=jkstatus\n"
START = 1_700_000_000.0  # wall time of the start (monotonic 0)


class Kit:
    def __init__(
        self,
        workers_text: str = WORKERS,
        *,
        status: Mapping[str, object] | None = None,
        cluster_view: object = None,
        pool_stats: object = None,
        cluster_limits: object = None,
    ) -> None:
        workers, _ = parse_workers(workers_text, "workers.properties", {})
        self.workers = workers
        self.uri_map, _ = parse_mounts(MOUNTS, "uriworkermap.properties", workers)
        self.engines: dict[str, LbEngine] = {}
        for name, lb in workers.lbs.items():
            self.engines[name] = LbEngine(lb, workers.lb_members(lb), workers.maintain, 0.0)
        for name in workers.worker_list:
            if name in workers.members:
                wrapped = LbConfig(name, balance_workers=(name,))
                self.engines[name] = LbEngine(
                    wrapped, [workers.members[name]], workers.maintain, 0.0
                )
        config = workers.statuses["jkstatus"]
        if status:
            config = dataclasses.replace(config, **status)  # type: ignore[arg-type]
        self.worker = StatusWorker(
            config,
            workers,
            self.engines,
            self.uri_map,
            ServerInfo("localhost", 8080, "pyjk/0.1.0"),
            START,
            cluster_view=cluster_view,  # type: ignore[arg-type]
            pool_stats=pool_stats,  # type: ignore[arg-type]
            cluster_limits=cluster_limits,  # type: ignore[arg-type]
        )
        self.now = 10.0

    @property
    def lb(self) -> LbEngine:
        return self.engines["lb"]

    def send(self, req: StatusRequest) -> StatusResponse:
        return self.worker.handle(req, self.now, START + self.now)

    def get(
        self,
        query: str | Mapping[str, object] = "",
        *,
        ip: str = "127.0.0.1",
        path: str = "/jkmanager",
        headers: tuple[tuple[bytes, bytes], ...] = (),
        method: str = "GET",
        user: str | None = None,
    ) -> StatusResponse:
        if not isinstance(query, str):
            query = urlencode({k: str(v) for k, v in query.items()})
        return self.send(StatusRequest(method, path, query, headers, b"", ip, user))

    def post(
        self,
        params: Mapping[str, object],
        *,
        csrf: bool = True,
        bearer: str | None = None,
        ip: str = "127.0.0.1",
        path: str = "/jkmanager",
        headers: tuple[tuple[bytes, bytes], ...] = (),
        content_type: bytes = b"application/x-www-form-urlencoded",
        user: str | None = None,
    ) -> StatusResponse:
        fields = {k: str(v) for k, v in params.items()}
        if csrf:
            fields.setdefault("csrf", self.worker.csrf)
        all_headers = ((b"content-type", content_type), *headers)
        if bearer is not None:
            all_headers += ((b"authorization", b"Bearer " + bearer.encode()),)
        body = urlencode(fields).encode()
        return self.send(StatusRequest("POST", path, "", all_headers, body, ip, user))

    def drive(
        self,
        backends: Mapping[str, Behaviour] | None = None,
        *,
        cookie: str | None = None,
        sent: int = 0,
        received: int = 0,
        engine: str = "lb",
    ) -> Run:
        facts = RequestFacts("GET", b"/app/x", cookies=() if cookie is None else (cookie.encode(),))
        return run(self.engines[engine], facts, self.now, backends, sent=sent, received=received)


def text(resp: StatusResponse) -> str:
    return resp.body.decode("utf-8")


def header(resp: StatusResponse, name: str) -> str | None:
    for n, v in resp.headers:
        if n.lower() == name.lower():
            return v
    return None


def txt_fields(line: str) -> dict[str, str]:
    """``Kind: k=v k="v" ...`` -> {k: v} (quotes and backslash escapes undone)."""
    _, _, rest = line.partition(": ")
    out: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.index("=", i)
        key = rest[i:eq]
        i = eq + 1
        if rest.startswith('"', i):
            i += 1
            value = []
            while rest[i] != '"':
                if rest[i] == "\\":
                    i += 1
                    if rest[i] in "xu":
                        width = 2 if rest[i] == "x" else 4
                        value.append(chr(int(rest[i + 1 : i + 1 + width], 16)))
                        i += width
                    else:
                        value.append({"n": "\n", "r": "\r", "t": "\t"}.get(rest[i], rest[i]))
                else:
                    value.append(rest[i])
                i += 1
            i += 2  # closing quote and space
            out[key] = "".join(value)
        else:
            end = rest.find(" ", i)
            end = len(rest) if end < 0 else end
            out[key] = rest[i:end]
            i = end + 1
    return out


def txt_lines(resp: StatusResponse, kind: str) -> list[dict[str, str]]:
    return [txt_fields(line) for line in text(resp).splitlines() if line.startswith(kind + ": ")]


def prop_map(resp: StatusResponse) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text(resp).splitlines():
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


# -- the kit itself ---------------------------------------------------------------------------


def test_the_kit_builds_an_lb_and_a_single_member_worker():
    kit = Kit()
    assert [m.name for m in kit.lb.members] == ["n1", "n2", "n3"]
    assert [m.name for m in kit.engines["solo"].members] == ["solo"]
    assert kit.get("mime=txt").status == 200


def test_txt_fields_undoes_quoting():
    line = 'Member: name=n1 route="a \\"b\\" \\\\ c\\nd" redirect="" x=1'
    assert txt_fields(line) == {"name": "n1", "route": 'a "b" \\ c\nd', "redirect": "", "x": "1"}
