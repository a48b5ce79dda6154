// The segment builder: schema -> attribute list; a condition tree <-> WHERE text; a live
// count (debounced), breakdown, overlap, save; saved segments polled so their counts
// follow writes. Talks only to segd's HTTP API (proto3 JSON).
"use strict";

const $ = (sel) => document.querySelector(sel);
const num = (x) => Number(x || 0); // proto3 JSON: 64-bit integers arrive as strings, zero is omitted
const fmt = (n) => n.toLocaleString("en-US");
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, "");
    else if (v !== false && v != null) e.setAttribute(k, v);
  }
  for (const k of kids.flat()) if (k != null) e.append(k);
  return e;
};

class ApiError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}
// A server started with a bearer token answers 401 until the page sends it: ask once,
// keep it for this tab only (sessionStorage), ask again if the server refuses it.
let askingToken = null;
async function api(method, path, body) {
  const headers = body ? { "content-type": "application/json" } : {};
  const token = sessionStorage.getItem("segd-token");
  if (token) headers.authorization = "Bearer " + token;
  const res = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  if (res.status === 401) {
    askingToken = askingToken || Promise.resolve(window.prompt("This segd server requires its bearer token:"));
    const given = await askingToken;
    askingToken = null;
    if (given && given.trim() && given.trim() !== token) {
      sessionStorage.setItem("segd-token", given.trim());
      return api(method, path, body);
    }
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(data.code || String(res.status), data.message || res.statusText);
  return data;
}

const state = {
  attrs: new Map(), // name -> Attribute (proto3 JSON)
  total: 0,
  root: SegSql.group("AND", []),
  where: "",
  treeShowsText: true,
  saved: [],
  countSeq: 0,
};
const kindOf = (col) => (state.attrs.get(col) || {}).kind || "unknown";
const valueText = (v) => {
  if (!v) return "";
  if ("stringValue" in v) return v.stringValue;
  if ("intValue" in v) return String(v.intValue);
  if ("floatValue" in v) return String(v.floatValue);
  if ("boolValue" in v) return v.boolValue ? "true" : "false";
  return "NULL";
};
const domain = (col) => ((state.attrs.get(col) || {}).values || []).map((vc) => valueText(vc.value)).filter((v) => v !== "NULL");

// ---- the tree ---------------------------------------------------------------------
function opsFor(kind) {
  const nulls = ["is null", "is not null"];
  switch (kind) {
    case "bool": return ["is true", "is false", ...nulls];
    case "int": case "float": case "date": case "timestamp": return ["between", "=", "<>", "<", "<=", ">", ">=", "in", "not in", ...nulls];
    case "list<string>": return ["contains", ...nulls];
    default: return ["in", "not in", "=", "<>", "<", "<=", ">", ">=", ...nulls];
  }
}
function defaultCond(col) {
  const k = kindOf(col);
  const op = opsFor(k)[0];
  const dom = domain(col);
  const values = op === "in" && dom.length ? [dom[0]] : op === "contains" && dom.length ? [dom[0]] : [];
  return SegSql.cond(col, op, values);
}
function findParent(node, target) {
  if (node.kind !== "group") return null;
  for (const c of node.children) {
    if (c === target) return node;
    const p = findParent(c, target);
    if (p) return p;
  }
  return null;
}

function inputType(kind) {
  return kind === "int" || kind === "float" ? "number" : kind === "date" ? "date" : "text";
}

function condView(c) {
  const k = kindOf(c.column);
  const id = `n${c.id}`;
  const dom = domain(c.column);
  const changed = () => { c.values = c.values.slice(); treeEdited(false); };
  const valueInput = (i, label) => el("input", {
    id: `${id}-v${i}`, type: inputType(k), step: k === "float" ? "any" : null, value: c.values[i] ?? "",
    "aria-label": `${c.column} ${label}`, oninput: (e) => { c.values[i] = e.target.value; changed(); },
  });
  let editor = [];
  if (c.op === "between") {
    editor = [valueInput(0, "from"), "to", valueInput(1, "to")];
  } else if ((c.op === "in" || c.op === "not in") && dom.length) {
    editor = [el("fieldset", {}, el("legend", { class: "sr" }, `${c.column} values`),
      dom.map((v, i) => el("label", {}, el("input", {
        type: "checkbox", id: `${id}-c${i}`, checked: c.values.includes(v),
        onchange: (e) => { c.values = e.target.checked ? [...c.values, v] : c.values.filter((x) => x !== v); changed(); },
      }), " " + v)))];
  } else if (c.op === "in" || c.op === "not in") {
    editor = [el("input", { id: `${id}-v0`, value: c.values.join(", "), "aria-label": `${c.column} values, comma separated`,
      oninput: (e) => { c.values = e.target.value.split(",").map((s) => s.trim()); changed(); } })];
  } else if (["is true", "is false", "is null", "is not null"].includes(c.op)) {
    editor = [];
  } else if (dom.length && k !== "int" && k !== "float") {
    editor = [el("select", { id: `${id}-v0`, "aria-label": `${c.column} value`, onchange: (e) => { c.values = [e.target.value]; changed(); } },
      el("option", { value: "" }, "—"), dom.map((v) => el("option", { value: v, selected: c.values[0] === v }, v)))];
  } else {
    editor = [valueInput(0, "value")];
  }
  return el("div", { class: "cond", id, "data-column": c.column, role: "group", "aria-label": `condition on ${c.column}` },
    el("span", { class: "col" }, c.column),
    el("select", { id: `${id}-op`, "aria-label": `${c.column} operator`, onchange: (e) => {
      c.op = e.target.value;
      c.values = c.op === "between" ? [c.values[0] ?? "", ""] : c.values.slice(0, c.op.includes("in") ? undefined : 1);
      treeEdited(true);
    } }, opsFor(k).map((o) => el("option", { value: o, selected: o === c.op }, o))),
    editor,
    el("button", { type: "button", id: `${id}-rm`, "aria-label": `remove condition on ${c.column}`, onclick: () => removeNode(c) }, "✕"),
    el("p", { class: "error", role: "alert", hidden: true }));
}

function groupView(g, isRoot) {
  const id = `n${g.id}`;
  const attrSelect = el("select", { id: `${id}-attr`, "aria-label": "attribute for a new condition" },
    [...state.attrs.keys()].map((n) => el("option", { value: n }, n)));
  return el("div", { class: "group" + (g.not ? " not" : ""), id, role: "group", "aria-label": isRoot ? "all conditions" : "condition group" },
    el("div", { class: "group-head" },
      el("label", {}, el("input", { type: "checkbox", id: `${id}-not`, checked: g.not, onchange: (e) => { g.not = e.target.checked; treeEdited(true); } }), " NOT"),
      el("label", { for: `${id}-op` }, "match"),
      el("select", { id: `${id}-op`, onchange: (e) => { g.op = e.target.value; treeEdited(true); } },
        el("option", { value: "AND", selected: g.op === "AND" }, "all (AND)"),
        el("option", { value: "OR", selected: g.op === "OR" }, "any (OR)")),
      attrSelect,
      el("button", { type: "button", id: `${id}-add`, onclick: () => { g.children.push(defaultCond(attrSelect.value)); treeEdited(true); } }, "+ condition"),
      el("button", { type: "button", id: `${id}-addgroup`, onclick: () => { g.children.push(SegSql.group(g.op === "AND" ? "OR" : "AND", [])); treeEdited(true); } }, "+ group"),
      isRoot ? null : el("button", { type: "button", id: `${id}-rm`, "aria-label": "remove group", onclick: () => removeNode(g) }, "✕")),
    g.children.map((c) => (c.kind === "group" ? groupView(c, false) : condView(c))),
    isRoot && !g.children.length ? el("p", { class: "muted" }, "No conditions: every customer.") : null);
}

function renderTree() {
  const focused = document.activeElement && document.activeElement.id;
  const tree = $("#tree");
  tree.replaceChildren(groupView(state.root, true));
  tree.classList.toggle("dim", !state.treeShowsText);
  if (focused && tree.contains(document.getElementById(focused))) document.getElementById(focused).focus();
  else if (focused && document.getElementById(focused) == null) {
    const first = tree.querySelector("select, input, button");
    if (first && tree.contains(document.activeElement) === false && document.activeElement === document.body) first.focus();
  }
}

function removeNode(n) {
  const parent = findParent(state.root, n);
  if (parent) parent.children = parent.children.filter((c) => c !== n);
  treeEdited(true);
}

// The tree changed: it writes the text. `structural` re-renders the tree.
function treeEdited(structural) {
  state.treeShowsText = true;
  state.where = SegSql.render(state.root, kindOf);
  $("#where").value = state.where;
  setNote(null);
  if (structural) renderTree();
  whereChanged();
}

// The text changed: the tree follows when it can show the text.
function textEdited() {
  state.where = $("#where").value;
  try {
    state.root = SegSql.parse(state.where);
    state.treeShowsText = true;
    setNote(null);
  } catch (e) {
    if (!(e instanceof SegSql.TreeError)) throw e;
    state.treeShowsText = false;
    setNote(`The tree cannot show this text (${e.message}); the segment is the text as written.`);
  }
  renderTree();
  whereChanged();
}

function setNote(text) {
  const n = $("#where-note");
  n.hidden = !text;
  n.textContent = text || "";
}

// ---- live results -----------------------------------------------------------------
let timer = null;
function whereChanged() {
  clearTimeout(timer);
  timer = setTimeout(refresh, 150);
}
const currentWhere = () => state.where.trim() || "TRUE";

function showError(err) {
  document.querySelectorAll(".cond.invalid").forEach((c) => {
    c.classList.remove("invalid");
    c.removeAttribute("aria-invalid");
    const p = c.querySelector(".error");
    p.hidden = true;
    p.textContent = "";
  });
  const we = $("#where-error");
  we.hidden = true;
  we.textContent = "";
  if (!err) return;
  const text = `${err.code}: ${err.message}`;
  // The server's messages name the column they are about: show them on its conditions.
  const m = /column '([^']+)'/.exec(err.message);
  const conds = m ? [...document.querySelectorAll(".cond")].filter((c) => c.dataset.column === m[1]) : [];
  if (conds.length && state.treeShowsText) {
    for (const c of conds) {
      c.classList.add("invalid");
      c.setAttribute("aria-invalid", "true");
      const p = c.querySelector(".error");
      p.hidden = false;
      p.textContent = text;
    }
  } else {
    we.hidden = false;
    we.textContent = text;
  }
}

async function refresh() {
  const seq = ++state.countSeq;
  const where = currentWhere();
  const t0 = performance.now();
  try {
    const r = await api("POST", "/v1/segments:count", { where });
    if (seq !== state.countSeq) return; // a newer edit answered or will answer
    const count = num(r.count);
    state.total = num(r.total);
    $("#count").textContent = fmt(count);
    $("#total").textContent = fmt(state.total);
    $("#share").textContent = state.total ? `${((100 * count) / state.total).toFixed(2)}%` : "–";
    $("#server-time").textContent = `${fmt(num(r.serverTimeUs))} µs${r.cached ? " (cached)" : ""}`;
    $("#round-trip").textContent = `${(performance.now() - t0).toFixed(1)} ms`;
    showError(null);
  } catch (e) {
    if (seq !== state.countSeq) return;
    // The figures on screen belong to the last segment that counted: grey them out.
    for (const id of ["#count", "#breakdown", "#overlap"]) $(id).classList.add("dim");
    showError(e);
    return;
  }
  for (const id of ["#count", "#breakdown", "#overlap"]) $(id).classList.remove("dim");
  breakdown(where, seq);
  overlap(where, seq);
}

async function breakdown(where, seq) {
  const attribute = $("#bd-attr").value;
  if (!attribute) return;
  try {
    const r = await api("POST", "/v1/segments:breakdown", { where, attribute, topN: 12 });
    if (seq !== state.countSeq) return;
    const groups = r.groups || [];
    const max = Math.max(1, ...groups.map((g) => num(g.count)));
    const rows = groups.map((g) => el("div", { class: "bar" },
      el("span", {}, valueText(g.value)),
      el("span", { style: `width:${(100 * num(g.count)) / max}%`, "aria-hidden": "true" }),
      el("span", {}, fmt(num(g.count)))));
    const extra = [];
    if (num(r.nullCount)) extra.push(`NULL: ${fmt(num(r.nullCount))}`);
    if (num(r.otherCount)) extra.push(`other: ${fmt(num(r.otherCount))}`);
    $("#breakdown").replaceChildren(...rows, extra.length ? el("p", { class: "muted" }, extra.join(" · ")) : "");
  } catch (e) {
    $("#breakdown").replaceChildren(el("p", { class: "error" }, e.message));
  }
}

async function overlap(where, seq) {
  const saved = state.saved.slice(0, 15);
  const body = $("#overlap tbody");
  if (!saved.length) return body.replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No saved segments yet.")));
  try {
    const r = await api("POST", "/v1/segments:overlap", { segments: [{ where }, ...saved.map((s) => ({ segmentId: s.segmentId }))] });
    if (seq !== state.countSeq) return;
    const rows = (r.rows || []).map((row) => (row.counts || []).map(num));
    const mine = rows[0][0];
    body.replaceChildren(...saved.map((s, i) => el("tr", {},
      el("th", { scope: "row" }, s.segmentId),
      el("td", { class: "num" }, fmt(rows[i + 1][i + 1])),
      el("td", { class: "num" }, fmt(rows[0][i + 1])),
      el("td", { class: "num" }, mine ? `${((100 * rows[0][i + 1]) / mine).toFixed(1)}%` : "–"))));
  } catch (e) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "error" }, e.message)));
  }
}

// ---- saved segments ---------------------------------------------------------------
async function loadSaved() {
  let r;
  try {
    r = await api("GET", "/v1/segments");
  } catch (e) {
    return;
  }
  const before = JSON.stringify(state.saved);
  state.saved = r.segments || [];
  if (JSON.stringify(state.saved) === before) return;
  $("#saved tbody").replaceChildren(...state.saved.map((s) => el("tr", { "data-id": s.segmentId },
    el("th", { scope: "row" }, s.segmentId),
    el("td", { class: "num count" }, fmt(num(s.count))),
    el("td", {}, s.where != null ? el("code", {}, s.where) : s.static ? "static list" : "predicate tree"),
    el("td", {},
      s.where != null ? el("button", { type: "button", "aria-label": `load ${s.segmentId} into the builder`, onclick: () => { $("#where").value = s.where; textEdited(); } }, "Load") : null,
      el("button", { type: "button", "aria-label": `delete ${s.segmentId}`, onclick: async () => {
        await api("DELETE", `/v1/segments/${encodeURIComponent(s.segmentId)}`).catch((e) => alert(e.message));
        loadSaved();
      } }, "Delete")))));
  if (!state.saved.length) $("#saved tbody").replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "None yet.")));
  // Saved counts moved, so the data did (or the list did): count the segment again too.
  refresh();
}

async function save(ev) {
  ev.preventDefault();
  const err = $("#save-error");
  err.hidden = true;
  try {
    await api("POST", "/v1/segments", { segmentId: $("#save-id").value, where: currentWhere(), description: $("#save-desc").value });
    $("#save-id").value = "";
    $("#save-desc").value = "";
  } catch (e) {
    err.hidden = false;
    err.textContent = `${e.code}: ${e.message}`;
  }
  loadSaved();
}

// ---- start ------------------------------------------------------------------------
async function start() {
  const schema = await api("GET", "/v1/schema?maxValues=64");
  state.total = num(schema.total);
  // The id column is not an attribute to segment by (the text may still name it).
  const attrs = (schema.attributes || []).filter((a) => a.name !== schema.idColumn);
  for (const a of attrs) state.attrs.set(a.name, a);
  $("#attribute-list").replaceChildren(...attrs.map((a) => el("li", {},
    el("button", { type: "button", id: `attr-${a.name}`, title: `${a.kind}, ${fmt(num(a.distinctValues))} distinct values`,
      onclick: () => { state.root.children.push(defaultCond(a.name)); treeEdited(true); } },
    a.name, el("small", {}, a.kind)))));
  const groupable = attrs.filter((a) => (a.values || []).length);
  $("#bd-attr").replaceChildren(...groupable.map((a) => el("option", { value: a.name }, a.name)));
  $("#bd-attr").addEventListener("change", () => breakdown(currentWhere(), state.countSeq));
  let textTimer = null;
  $("#where").addEventListener("input", () => { clearTimeout(textTimer); textTimer = setTimeout(textEdited, 150); });
  $("#save-form").addEventListener("submit", save);
  renderTree();
  treeEdited(true);
  await loadSaved();
  setInterval(loadSaved, 1500);
}

start().catch((e) => showError(e));
