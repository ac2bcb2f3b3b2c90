// ibin review page: exhibits -> lead list -> lead pictures -> disposition.
// Talks to the JSON API of ibin.report._server; no libraries, no external resources.
"use strict";

const state = { info: null, exhibits: [], query: null, leads: [], index: -1, figureToken: 0 };
const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const r = await fetch(path, options);
  const type = r.headers.get("Content-Type") || "";
  const body = type.startsWith("application/json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
  return body;
}
const q = (params) => new URLSearchParams(params).toString();

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}
const fmt = (v, digits) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const mdText = (md) => Object.entries(md || {}).map(([k, v]) => `${k}=${v}`).join(", ");

function dispBadge(d) {
  const status = (d && d.status) || "not reviewed";
  const cls = status === "hit" ? "disp hit" : status === "no hit" ? "disp no-hit" : "disp";
  return el("span", { class: cls, title: d && d.by ? `${d.by}, ${d.at}${d.comment ? ": " + d.comment : ""}` : "" }, status);
}

// ------------------------------------------------------------------ exhibits
async function loadExhibits() {
  state.exhibits = await api("/api/exhibits");
  renderExhibits();
}

function renderExhibits() {
  const f = $("filter").value.trim().toLowerCase();
  const ul = $("exhibits");
  ul.replaceChildren();
  for (const ex of state.exhibits) {
    const text = `${ex.id} ${mdText(ex.metadata)} ${ex.source}`.toLowerCase();
    if (f && !text.includes(f)) continue;
    const li = el("li", { role: "option", "data-id": ex.id },
      el("span", { class: "id" }, ex.id));
    if (ex.hit) li.append(el("span", { class: "count hit", title: "confirmed hits" }, `${ex.hit} hit`));
    if (ex["no hit"]) li.append(el("span", { class: "count", title: "leads marked no hit" }, `${ex["no hit"]} no hit`));
    li.append(el("span", { class: "md" }, mdText(ex.metadata) || ex.source));
    if (state.query && state.query.id === ex.id) li.classList.add("selected");
    li.addEventListener("click", () => openQuery(ex.id));
    ul.append(li);
  }
}

// ------------------------------------------------------------------ lead list
async function openQuery(id, leadRank) {
  $("welcome").hidden = true;
  $("query").hidden = false;
  $("viewer").hidden = true;
  $("query-title").textContent = `Lead list for ${id}`;
  $("query-meta").textContent = "";
  $("leads").tBodies[0].replaceChildren();
  $("lead-status").textContent = "Correlating with the exhibits on file…";
  $("report-link").href = "/api/report?" + q({ id });
  state.query = { id };
  renderExhibits();
  try {
    const ll = await api("/api/leads?" + q({ id }));
    if (!state.query || state.query.id !== id) return;
    state.query = ll.query;
    state.leads = ll.leads;
    $("query-meta").textContent = `${mdText(ll.query.metadata)} · ${ll.leads.length} leads from ${ll.database.exhibits} exhibits · ${fmt(ll.timing_ms.total / 1000, 1)} s`;
    $("lead-status").textContent = ll.leads.length ? "" : "No other exhibits on file to compare with.";
    renderLeads();
    const start = leadRank ? Math.max(0, state.leads.findIndex((l) => l.rank === leadRank)) : 0;
    if (state.leads.length) showLead(start);
  } catch (e) {
    $("lead-status").textContent = `Could not compute the lead list: ${e.message}`;
    $("lead-status").className = "error";
  }
}

function renderLeads() {
  const tb = $("leads").tBodies[0];
  tb.replaceChildren();
  state.leads.forEach((l, i) => {
    const tr = el("tr", { "data-lead": l.id },
      el("td", { class: "num" }, String(l.rank)), el("td", {}, l.id),
      el("td", { class: "num" }, fmt(l.score, 2)), el("td", { class: "num" }, l.cmc ?? "–"),
      el("td", { class: "num" }, fmt(l.ccf, 3)), el("td", { class: "num" }, fmt(l.rotation_deg, 1)),
      el("td", {}, l.status === "ok" ? mdText(l.metadata) : l.status), el("td", {}, dispBadge(l.disposition)));
    if (i === state.index) tr.classList.add("current");
    tr.addEventListener("click", () => showLead(i));
    tb.append(tr);
  });
}

// ------------------------------------------------------------------ one lead
function showLead(i) {
  if (i < 0 || i >= state.leads.length) return;
  state.index = i;
  const l = state.leads[i];
  $("viewer").hidden = false;
  $("lead-title").textContent = `Lead ${l.rank} of ${state.leads.length}: ${l.id} — score ${fmt(l.score, 2)}, CMC ${l.cmc ?? "–"}`;
  $("prev").disabled = i === 0;
  $("next").disabled = i === state.leads.length - 1;
  for (const tr of $("leads").tBodies[0].rows) tr.classList.toggle("current", tr.dataset.lead === l.id);
  history.replaceState(null, "", "#" + q({ q: state.query.id, l: l.rank }));
  // picture
  const img = $("lead-figure");
  const token = ++state.figureToken;
  img.dataset.loading = "1";
  img.alt = `pictures of lead ${l.rank}, ${l.id}`;
  $("figure-status").textContent = "Drawing the lead…";
  $("figure-status").className = "muted";
  const src = "/api/figure?" + q({ query: state.query.id, lead: l.id });
  img.onload = () => { if (token === state.figureToken) { img.dataset.loading = "0"; $("figure-status").textContent = ""; } };
  img.onerror = () => {
    if (token !== state.figureToken) return;
    img.dataset.loading = "0";
    $("figure-status").textContent = l.status === "ok" ? "The pictures could not be drawn." : `No pictures: the comparison ${l.status}.`;
    $("figure-status").className = "error";
  };
  img.src = src;
  // disposition
  const d = l.disposition || { status: "not reviewed", comment: "" };
  for (const r of document.querySelectorAll('input[name="status"]')) r.checked = r.value === d.status;
  $("comment").value = d.comment || "";
  $("save-status").textContent = d.by ? `recorded by ${d.by}, ${d.at.replace("T", " ")}` : "";
  $("save-status").className = "muted";
  loadHistory(l.id);
  // warm the next picture
  if (i + 1 < state.leads.length && state.leads[i + 1].status === "ok") {
    const pre = new Image();
    pre.src = "/api/figure?" + q({ query: state.query.id, lead: state.leads[i + 1].id });
  }
}

async function loadHistory(leadId) {
  const ol = $("history");
  ol.replaceChildren();
  try {
    const h = await api("/api/history?" + q({ query: state.query.id, lead: leadId }));
    for (const d of h) {
      ol.append(el("li", {}, `${d.at.replace("T", " ")} ${d.by || ""}: ${d.status}${d.comment ? " — " + d.comment : ""} (from the lead list of ${d.query})`));
    }
    if (!h.length) ol.append(el("li", { class: "muted" }, "no disposition recorded yet"));
  } catch (e) {
    ol.append(el("li", { class: "error" }, e.message));
  }
}

async function saveDisposition(ev) {
  ev.preventDefault();
  const l = state.leads[state.index];
  const checked = document.querySelector('input[name="status"]:checked');
  if (!l || !checked) {
    $("save-status").textContent = "Choose a disposition first.";
    $("save-status").className = "error";
    return;
  }
  const by = $("examiner").value.trim();
  localStorage.setItem("ibin-examiner", by);
  $("save").disabled = true;
  try {
    const d = await api("/api/disposition", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query: state.query.id, lead: l.id, status: checked.value, comment: $("comment").value, by }),
    });
    l.disposition = { status: d.status, comment: d.comment, by: d.by, at: d.at };
    renderLeads();
    $("save-status").textContent = `Saved: ${d.status} (${d.by}, ${d.at.replace("T", " ")})`;
    $("save-status").className = "ok";
    loadHistory(l.id);
    loadExhibits();
  } catch (e) {
    $("save-status").textContent = `Not saved: ${e.message}`;
    $("save-status").className = "error";
  } finally {
    $("save").disabled = false;
  }
}

// ------------------------------------------------------------------ hits
async function showHits() {
  const body = $("hits-body");
  body.replaceChildren(el("p", { class: "muted" }, "Loading…"));
  $("hits-dialog").showModal();
  try {
    const h = await api("/api/hits");
    if (!h.hits.length) { body.replaceChildren(el("p", {}, "No confirmed hits yet.")); return; }
    const t = el("table", {}, el("thead", {}, el("tr", {}, ...["exhibit", "case", "exhibit", "case", "by", "at", "comment"].map((c) => el("th", {}, c)))));
    const tb = el("tbody");
    for (const x of h.hits) {
      tb.append(el("tr", {}, el("td", {}, x.exhibits[0]), el("td", {}, x.cases[0] ?? "–"), el("td", {}, x.exhibits[1]),
        el("td", {}, x.cases[1] ?? "–"), el("td", {}, x.by || ""), el("td", {}, (x.at || "").replace("T", " ")), el("td", {}, x.comment)));
    }
    t.append(tb);
    body.replaceChildren(t);
  } catch (e) {
    body.replaceChildren(el("p", { class: "error" }, e.message));
  }
}

// ------------------------------------------------------------------ start
function onKey(e) {
  if (e.target.closest && e.target.closest("input, textarea, select")) return;
  if ($("viewer").hidden) return;
  if (e.key === "ArrowRight" || e.key === "j") showLead(state.index + 1);
  else if (e.key === "ArrowLeft" || e.key === "k") showLead(state.index - 1);
}

async function start() {
  $("filter").addEventListener("input", renderExhibits);
  $("prev").addEventListener("click", () => showLead(state.index - 1));
  $("next").addEventListener("click", () => showLead(state.index + 1));
  $("disposition-form").addEventListener("submit", saveDisposition);
  $("show-hits").addEventListener("click", showHits);
  document.addEventListener("keydown", onKey);
  try {
    state.info = await api("/api/info");
    $("db-name").textContent = `${state.info.database} · ${state.info.exhibits} exhibits`;
    $("examiner").value = localStorage.getItem("ibin-examiner") || state.info.user || "";
    await loadExhibits();
  } catch (e) {
    $("welcome").textContent = `Cannot reach the ibin server: ${e.message}`;
    $("welcome").className = "error";
    return;
  }
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.get("q")) openQuery(h.get("q"), Number(h.get("l")) || undefined);
  document.body.dataset.ready = "1";
}
start();
