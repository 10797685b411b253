"""The demo app, the first thing a user sees through the balancer.

- `GET /app/`: an HTML page with the serving node, the session id, a visit counter and a
  small cart (add/remove forms posting to `/app/cart/add` and `/app/cart/remove`, which
  redirect back with 303).
- `GET /app/counter`: `{"node": <route>, "session": <id>, "count": <n>}` after counting one.

Kill the node that serves you and reload: another node answers with the same counter and cart
and a session id whose route part changed (once replication is on).
"""

from __future__ import annotations

import html
import unicodedata

from aiohttp import web

from .middleware import SESSIONS, get_session
from .request_session import RequestSession

MAX_CART_LINES = 20
MAX_QUANTITY = 99
MAX_ITEM_LENGTH = 40
SUGGESTIONS = ("apple", "pear", "plum", "fig")

_STYLE = """
body{font:16px/1.45 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2430}
main{max-width:40rem;margin:2.5rem auto;padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 1rem}
.card{background:#fff;border-radius:10px;box-shadow:0 1px 3px #0002;padding:1.1rem 1.3rem;
margin-bottom:1rem}
.node{display:inline-block;background:#2f6fed;color:#fff;border-radius:999px;
padding:.1rem .7rem;font-weight:600}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:0}
dt{color:#5b6473}dd{margin:0;word-break:break-all}code{font-size:.9em}
.count{font-size:2rem;font-weight:700}
table{width:100%;border-collapse:collapse}td{padding:.35rem 0;border-bottom:1px solid #eee}
td.qty{text-align:right;padding-right:1rem;width:4rem}td.act{text-align:right;width:1%}
form{display:inline;margin:0}input[type=text]{padding:.35rem .5rem;border:1px solid #c8ccd4;
border-radius:6px;width:12rem}
button{padding:.35rem .8rem;border:0;border-radius:6px;background:#2f6fed;color:#fff;
cursor:pointer}button.quiet{background:#e6e8ee;color:#1d2430}
.muted{color:#5b6473;font-size:.9rem}.row{margin-top:.8rem}
"""


def _route(request: web.Request) -> str:
    return request.app[SESSIONS].route


async def _session(request: web.Request) -> RequestSession:
    session = await get_session(request)
    assert session is not None
    return session


def _count_visit(session: RequestSession) -> int:
    count = session.get("count", 0)
    count = (count if type(count) is int else 0) + 1
    session["count"] = count
    return count


def _cart(session: RequestSession) -> dict[str, int]:
    cart = session.get("cart")
    if not isinstance(cart, dict):
        cart = session["cart"] = {}
    return cart


def clean_item(raw: object) -> str | None:
    """A cart item name from a form field: trimmed, printable, short; None if unusable."""
    if not isinstance(raw, str):
        return None
    item = " ".join(raw.split())[:MAX_ITEM_LENGTH]
    if not item or any(unicodedata.category(c)[0] == "C" for c in item):
        return None
    return item


def render_page(node: str, session: RequestSession, count: int) -> str:
    """The demo page; every value from the session or the client is HTML-escaped."""
    e = html.escape
    cart = session.get("cart") or {}
    rows = "".join(
        f'<tr><td>{e(item)}</td><td class="qty">{int(qty)}</td><td class="act">'
        f'<form method="post" action="/app/cart/remove"><input type="hidden" name="item" '
        f'value="{e(item)}"><button class="quiet">Remove</button></form></td></tr>'
        for item, qty in cart.items()
    )
    if not rows:
        rows = '<tr><td class="muted">The cart is empty.</td></tr>'
    quick = "".join(
        f'<form method="post" action="/app/cart/add"><input type="hidden" name="item" '
        f'value="{e(s)}"><button class="quiet">+ {e(s)}</button></form> '
        for s in SUGGESTIONS
    )
    new = " (new)" if session.is_new else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>pyjk demo · {e(node)}</title><style>{_STYLE}</style></head>
<body><main>
<h1>pyjk demo</h1>
<section class="card"><dl>
<dt>Served by</dt><dd><span class="node">{e(node)}</span></dd>
<dt>Session</dt><dd><code>{e(session.id)}</code>{e(new)}</dd>
<dt>Visits</dt><dd class="count">{count}</dd>
</dl></section>
<section class="card"><h2>Cart</h2>
<table>{rows}</table>
<div class="row"><form method="post" action="/app/cart/add">
<input type="text" name="item" maxlength="{MAX_ITEM_LENGTH}" placeholder="Item" required>
<button>Add</button></form></div>
<div class="row">{quick}</div>
</section>
<p class="muted">JSON: <a href="/app/counter">/app/counter</a> · readiness:
<a href="/-/ready">/-/ready</a></p>
</main></body></html>
"""


async def page(request: web.Request) -> web.Response:
    session = await _session(request)
    count = _count_visit(session)
    return web.Response(
        text=render_page(_route(request), session, count),
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


async def counter(request: web.Request) -> web.Response:
    session = await _session(request)
    count = _count_visit(session)
    return web.json_response(
        {"node": _route(request), "session": session.id, "count": count},
        headers={"Cache-Control": "no-store"},
    )


async def cart_add(request: web.Request) -> web.Response:
    item = clean_item((await request.post()).get("item"))
    session = await _session(request)
    cart = _cart(session)
    if item is not None and (item in cart or len(cart) < MAX_CART_LINES):
        cart[item] = min(cart.get(item, 0) + 1, MAX_QUANTITY)  # changed in place: recorded
    raise web.HTTPSeeOther("/app/")


async def cart_remove(request: web.Request) -> web.Response:
    item = clean_item((await request.post()).get("item"))
    session = await get_session(request, create=False)
    if session is not None and item is not None:
        cart = _cart(session)
        if cart.get(item, 0) > 1:
            cart[item] -= 1
        else:
            cart.pop(item, None)
    raise web.HTTPSeeOther("/app/")


async def to_app(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/app/")


def create_app() -> web.Application:
    """The demo app factory (what `python -m worker` runs without --app)."""
    app = web.Application()
    app.router.add_get("/", to_app)
    app.router.add_get("/app", to_app)
    app.router.add_get("/app/", page)
    app.router.add_get("/app/counter", counter)
    app.router.add_post("/app/cart/add", cart_add)
    app.router.add_post("/app/cart/remove", cart_remove)
    return app
