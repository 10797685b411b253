"""The status page's stylesheet, inlined in the page's ``<style>`` (the CSP allows inline
styles and nothing else: no script, no asset to fetch).

Two layouts from one document, by media query only: on a laptop the mod_jk tables, with each
member's actions next to its name; at phone width (<= 600px) the members-at-a-glance cards
first (``balancer.status.glance``, hidden otherwise) and the same tables below, scrolling
sideways inside their own wrappers. Colours: a state is green (OK), amber (busy, recovering,
probing, forced) or red (ERR); a disabled or stopped member is greyed.
"""

from __future__ import annotations

import re

_SOURCE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;
  padding:0 1rem 2rem;max-width:120rem;color:#1f2328;background:#fff}
h1{font-size:1.4rem;margin:1rem 0 .5rem}
h2{font-size:1.2rem;border-top:1px solid #d0d7de;padding-top:.8rem}
h3{font-size:1.05rem;margin:1.2rem 0 .3rem}
h4{margin:.8rem 0 .3rem}
a{color:#0969da}
.muted{color:#57606a}
.small{font-size:.85rem}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;margin:.3rem 0 .9rem;max-width:100%}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:.2rem .45rem;text-align:left;white-space:nowrap;
  vertical-align:middle}
th{background:#f3f5f7;font-weight:600}
td.n{text-align:right}
.notice,.ok,.error{padding:.5rem .75rem;border-radius:4px;margin:.6rem 0}
.notice{background:#fff8c5;border:1px solid #d4a72c}
.ok{background:#dafbe1;border:1px solid #4ac26b}
.error{background:#ffebe9;border:1px solid #ff8182}
nav{display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;align-items:center;margin:.5rem 0}
form.inline{display:inline;margin:0}
form.bar{margin:.4rem 0}
button,input,select{font:inherit}
input.short{width:4.5em}
button.link{border:0;background:none;color:#0969da;padding:0 .1rem;cursor:pointer;
  text-decoration:underline}

/* states, activations, the drained mark, ratings */
.s-ok{color:#1a7f37}
.s-warn{color:#9a6700}
.s-err{color:#cf222e;font-weight:600}
.s-none{color:#57606a}
.a-dis,.a-stp{color:#6e7781}
.drained{color:#0969da}
.r-good{color:#1a7f37}
.r-degraded{color:#9a6700}
.r-bad{color:#cf222e;font-weight:600}

/* the member table: a greyed row for a disabled or stopped member; the name stays in view
   while the counters scroll under it */
tr.m-dis>td,tr.m-stp>td{background:#f6f8fa;color:#57606a}
tr.m-dis>td.name,tr.m-stp>td.name{color:#6e7781}
table.members .name{position:sticky;left:0;background:#fff;font-weight:600;
  box-shadow:inset -1px 0 #d0d7de}
table.members th.name{background:#f3f5f7}
td.actions{padding:.15rem .35rem}
td.actions input.short{width:3.5em;padding:.05rem .2rem}

/* action buttons: Activate green, Disable amber, Stop red; the current one greyed out */
td.actions button,.trio button{border:1px solid #d0d7de;border-radius:4px;background:#f6f8fa;
  color:#1f2328;padding:.05rem .5rem;margin:0 .15rem 0 0;cursor:pointer}
td.actions button:hover:enabled,.trio button:hover:enabled{background:#eaeef2}
td.actions .b-a,.trio .b-a{color:#1a7f37;border-color:#4ac26b}
td.actions .b-d,.trio .b-d{color:#9a6700;border-color:#d4a72c}
td.actions .b-s,.trio .b-s{color:#cf222e;border-color:#ff8182}
td.actions button:disabled,.trio button:disabled{color:#8c959f;border-color:#d0d7de;
  background:#eaeef2;cursor:default}

/* members at a glance: phone width only */
.glance{display:none}
.cards{display:grid;gap:.55rem;margin:.4rem 0 .6rem}
.card{border:1px solid #d0d7de;border-left:5px solid #8c959f;border-radius:6px;
  padding:.5rem .65rem .6rem}
.card.k-ok{border-left-color:#2da44e}
.card.k-warn{border-left-color:#d4a72c}
.card.k-err{border-left-color:#cf222e}
.card.m-dis,.card.m-stp{background:#f6f8fa}
.card .top{display:flex;flex-wrap:wrap;align-items:center;gap:.3rem .4rem}
.card .name{font-size:1.1rem;margin-right:.2rem}
.card .top a{margin-left:auto}
.card.m-dis .name,.card.m-stp .name{color:#57606a}
.pill{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.8rem;font-weight:600;
  border:1px solid #d0d7de;background:#fff;text-decoration:none}
.pill.a-act{color:#1f2328}
.pill.a-dis,.pill.a-stp{background:#eaeef2;color:#57606a}
.pill.drained{background:#ddf4ff;border-color:#54aeff}
.pill.s-ok{background:#dafbe1;border-color:#4ac26b}
.pill.s-warn{background:#fff8c5;border-color:#d4a72c}
.pill.s-err{background:#ffebe9;border-color:#ff8182}
.card dl{display:grid;gap:0 .6rem;margin:.45rem 0;
  grid-template-columns:minmax(0,1.4fr) minmax(0,1.2fr) minmax(0,.6fr) minmax(0,.6fr)}
.card dt{font-size:.75rem;color:#57606a}
.card dd{margin:0;font-weight:600;font-variant-numeric:tabular-nums;overflow:hidden;
  text-overflow:ellipsis;white-space:nowrap}
form.trio{display:grid;grid-template-columns:repeat(3,1fr);gap:.4rem;margin:0}
.trio button{min-height:2.5rem;margin:0;font-weight:600}

@media (max-width:600px){
  body{padding:0 .5rem 1rem}
  h1{font-size:1.15rem}
  .glance{display:block}
  .glance h2{border-top:0;padding-top:0;margin:.6rem 0 .2rem;font-size:1.05rem}
}
"""

# One line, without the comments. A line break may only follow "{", ";", "}" or ",", or come
# before "}" (so removing it with the indentation cannot glue two words together).
STYLE = re.sub(r"\s*\n\s*", "", re.sub(r"/\*.*?\*/", "", _SOURCE, flags=re.S))
