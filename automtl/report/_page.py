"""The dashboard's single page (HTML + JS). `{{TITLE}}` is replaced by the HTML-escaped study
name and `{{REFRESH_MS}}` by the polling interval; every value from the API is inserted with
textContent, never as HTML."""

PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>automtl dashboard: {{TITLE}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<script src="static/plotly.js"></script>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222}
header{background:#24292f;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:center}
header h1{font-size:1.1em;margin:0} #status{font-size:0.85em;opacity:0.85}
main{display:grid;grid-template-columns:minmax(0,1fr) 420px;gap:16px;padding:16px}
#side{position:sticky;top:10px;align-self:start;max-height:95vh;overflow:auto}
.card{border:1px solid #ddd;border-radius:6px;padding:10px;margin-bottom:14px;background:#fff;
overflow:hidden}
/* the table stays clickable even if a plot's layer ever spills out of its card */
#trials-card{position:relative;z-index:2}
.card h2{font-size:1em;margin:0 0 8px 0}
table{border-collapse:collapse;font-size:0.82em;width:100%}
td,th{border-bottom:1px solid #eee;padding:3px 6px;text-align:left;white-space:nowrap}
th{cursor:pointer;background:#f6f8fa;position:sticky;top:0;user-select:none}
th.sorted-asc::after{content:" \25B2"} th.sorted-desc::after{content:" \25BC"}
#trials tbody tr{cursor:pointer} #trials tbody tr:hover{background:#f0f6ff}
#trials tbody tr.selected{background:#dbeafe}
.tablewrap{max-height:420px;overflow:auto}
pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:0.8em;white-space:pre}
.muted{color:#777;font-size:0.85em} .state-fail{color:#b91c1c} .state-pruned{color:#a16207}
.state-running{color:#1d4ed8}
</style></head>
<body data-refresh-ms="{{REFRESH_MS}}">
<header><h1>automtl study <span id="study-name">{{TITLE}}</span></h1>
<span id="status">loading…</span></header>
<main>
<div id="content">
  <div class="card"><h2>Summary</h2><table id="summary"><tbody></tbody></table></div>
  <div id="figures"></div>
  <div class="card" id="trials-card"><h2>Trials <span class="muted">(click a header to sort, a row for its
  config)</span></h2><div class="tablewrap"><table id="trials"><thead></thead><tbody></tbody>
  </table></div></div>
</div>
<div id="side"><div class="card" id="trial-card"><h2 id="trial-title">Trial</h2>
  <p class="muted" id="trial-hint">Click a point in the Pareto plot or a row of the trials
  table.</p>
  <div id="trial-meta"></div>
  <h2>Export</h2><pre id="trial-export"></pre>
  <h2>Config (YAML)</h2><pre id="trial-yaml"></pre></div></div>
</main>
<script>
"use strict";
const REFRESH_MS = Number(document.body.dataset.refreshMs) || 5000;
let version = null, table = null, sortCol = 0, sortAsc = true, selected = null;

function fmt(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number" && !Number.isInteger(v)) return v.toPrecision(5);
  return String(v);
}
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
async function getJSON(url) {
  const r = await fetch(url, {cache: "no-store"});
  if (!r.ok) throw new Error(url + ": HTTP " + r.status);
  return r.json();
}
function setStatus(text) { document.getElementById("status").textContent = text; }

function renderSummary(s) {
  const body = document.querySelector("#summary tbody");
  body.replaceChildren();
  const states = Object.entries(s.states).filter(([k, n]) => n > 0)
    .map(([k, n]) => n + " " + k.toLowerCase()).join(", ") || "none yet";
  const rows = [["dataset", s.dataset], ["storage", s.storage],
    ["objectives", s.objectives.map((o, i) => o + " (" + s.directions[i] + ")").join(", ")],
    ["trials", states], ["Pareto front", s.front.length + " trials: " + s.front.join(", ")]];
  for (const [o, b] of Object.entries(s.best))
    rows.push(["best " + o, fmt(b.value) + " (trial " + b.trial + ", " + b.arch + ")"]);
  for (const [k, v] of rows) {
    const tr = el("tr"); tr.append(el("th", k), el("td", v)); body.append(tr);
  }
}

async function renderFigures(payload) {
  const box = document.getElementById("figures");
  const drawn = [];
  for (const name of payload.order) {
    let div = document.getElementById("fig-" + name);
    if (!div) {
      const card = el("div", undefined, "card");
      div = el("div"); div.id = "fig-" + name; card.append(div); box.append(card);
    }
    const fig = payload.figures[name];
    // responsive plots take the div's height: a div without one collapses to 0 and the card
    // (which clips its plot) shows nothing, so give it the figure's height (plotly's default 450)
    div.style.height = (fig.layout.height || 450) + "px";
    drawn.push(Plotly.react(div, fig.data, fig.layout, {responsive: true, displaylogo: false}));
    if (!div.dataset.bound) {
      div.on("plotly_click", (ev) => {
        const p = ev.points && ev.points[0];
        if (!p || p.customdata === undefined || p.customdata === null) return;
        const n = Array.isArray(p.customdata) ? p.customdata[0] : p.customdata;
        const pt = Array.isArray(p.customdata) ? p.customdata[1] : undefined;
        if (Number.isInteger(n)) showTrial(n, Number.isInteger(pt) ? pt : undefined);
      });
      div.dataset.bound = "1";
    }
  }
  await Promise.all(drawn);  // the page is "ready" only once every plot has its final size
}

function blank(v) { return v === null || v === undefined || v === ""; }
function cmp(a, b) {
  if (a === b) return 0;
  if (blank(a)) return 1;
  if (blank(b)) return -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, {numeric: true});
}
function renderTrials() {
  if (!table) return;
  const head = document.querySelector("#trials thead");
  const body = document.querySelector("#trials tbody");
  const htr = el("tr");
  table.columns.forEach((c, i) => {
    const th = el("th", c);
    if (i === sortCol) th.className = sortAsc ? "sorted-asc" : "sorted-desc";
    th.addEventListener("click", () => {
      if (sortCol === i) sortAsc = !sortAsc; else { sortCol = i; sortAsc = true; }
      renderTrials();
    });
    htr.append(th);
  });
  head.replaceChildren(htr);
  const rows = table.rows.slice().sort((a, b) => {
    const c = cmp(a[sortCol], b[sortCol]);
    // empty cells stay at the bottom in both directions
    return (sortAsc || blank(a[sortCol]) || blank(b[sortCol])) ? c : -c;
  });
  body.replaceChildren();
  for (const r of rows) {
    const tr = el("tr");
    tr.dataset.trial = r[0];
    if (r[0] === selected) tr.className = "selected";
    r.forEach((v, i) => tr.append(el("td", fmt(v), i === 1 ? "state-" + v : undefined)));
    tr.addEventListener("click", () => showTrial(r[0]));
    body.append(tr);
  }
}

async function showTrial(n, point) {
  selected = n;
  document.querySelectorAll("#trials tbody tr").forEach(
    (tr) => tr.classList.toggle("selected", Number(tr.dataset.trial) === n));
  try {
    const t = await getJSON("api/trial/" + n + (point === undefined ? "" : "?point=" + point));
    const at = t.weights ? " at task weights " + Object.entries(t.weights).map(
      ([k, v]) => k + "=" + Number(v).toPrecision(3)).join(", ") : "";
    document.getElementById("trial-title").textContent = "Trial " + t.number + at +
      " (" + t.state + (t.on_front ? ", on the Pareto front" : "") + ")";
    document.getElementById("trial-hint").textContent = "";
    const meta = document.getElementById("trial-meta");
    meta.replaceChildren();
    const tbl = el("table");
    const add = (k, v) => {
      const tr = el("tr"); tr.append(el("th", k), el("td", fmt(v))); tbl.append(tr);
    };
    for (const [k, v] of Object.entries(t.values)) add("val " + k, v);
    for (const [k, v] of Object.entries(t.test)) add("test " + k, v);
    for (const [k, v] of Object.entries(t.attrs)) add(k, v);
    meta.append(tbl);
    document.getElementById("trial-export").textContent = t.export;
    document.getElementById("trial-yaml").textContent = t.yaml;
    document.getElementById("trial-card").dataset.trial = String(t.number);
  } catch (e) {
    document.getElementById("trial-title").textContent = "Trial " + n + ": " + e.message;
  }
}

async function refresh() {
  try {
    const st = await getJSON("api/state");
    const live = st.running ? "search running, " : "";
    setStatus(live + st.trials + " trials · checked " + new Date().toLocaleTimeString());
    if (st.version === version) return;
    const [summary, figs, trials] = await Promise.all(
      [getJSON("api/summary"), getJSON("api/figures"), getJSON("api/trials")]);
    renderSummary(summary);
    await renderFigures(figs);
    table = trials;
    renderTrials();
    version = st.version;
    document.body.dataset.version = version;
  } catch (e) {
    setStatus("cannot reach the dashboard server (" + e.message + ")");
  }
}
refresh();
setInterval(refresh, REFRESH_MS);
</script>
</body></html>
"""
