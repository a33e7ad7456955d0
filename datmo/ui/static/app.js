/* datmo dashboard: shared helpers. Every piece of data reaches the page through
   textContent or an attribute set by el(): never as HTML, so a message such as
   <img src=x onerror=alert(1)> shows as the text it is. */
"use strict";

const D = (window.D = {});
D.token = document.querySelector('meta[name="datmo-token"]').content;
D.pages = {};
D.timers = [];

/** An element: el("td", {class: "num", title: t}, child, "text", ...). */
D.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = String(v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
};

/** GET or POST the API with the token header; throws Error(one line) on failure.
    binary: the answer's bytes (an ArrayBuffer) instead of its JSON. */
D.api = async function (path, params, body, binary) {
  const url = new URL("api/" + path, location.origin + "/");
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === "") continue;
    for (const one of Array.isArray(v) ? v : [v]) url.searchParams.append(k, one);
  }
  const init = { headers: { "X-Datmo-Token": D.token }, credentials: "same-origin" };
  if (body !== undefined && body !== null) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  if (binary && res.ok) return res.arrayBuffer();
  let doc = null;
  try { doc = await res.json(); } catch (e) { doc = null; }
  if (!res.ok) throw new Error((doc && doc.error) || res.status + " " + res.statusText);
  return doc;
};

D.short = (id) => (id ? String(id).slice(0, 8) : "");
D.fmt = function (v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(+v.toPrecision(5));
  }
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
};
D.when = (iso) => (iso ? String(iso).replace("T", " ").replace(/\.\d+/, "").replace(/\+00:00$|Z$/, "") : "");
D.duration = function (s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
};
D.bytes = function (n) {
  if (n === null || n === undefined) return "";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
};
D.status = (s) => D.el("span", { class: "status s-" + String(s).toLowerCase() }, s);
D.live = (s) => s === "RUNNING" || s === "QUEUED";
D.runLink = (id) => D.el("a", { href: "#/run/" + encodeURIComponent(id), class: "mono" }, D.short(id));

/** A key/value table; values through D.fmt. */
D.kv = function (obj, cls) {
  const keys = Object.keys(obj || {});
  if (!keys.length) return D.el("p", { class: "muted" }, "none");
  return D.el("table", { class: "kv " + (cls || "") },
    D.el("tbody", {}, keys.map((k) => D.el("tr", {}, D.el("th", { scope: "row" }, k), D.el("td", {}, D.fmt(obj[k]))))));
};

D.error = function (where, err) {
  where.replaceChildren(D.el("p", { class: "error", role: "alert" }, String(err.message || err)));
};

/** Timers that stop when the page changes. */
D.every = function (ms, fn) { const t = setInterval(fn, ms); D.timers.push(t); return t; };
D.clearTimers = function () { D.timers.forEach(clearInterval); D.timers = []; };

/* The runs picked for comparison, kept while the tab is open. */
D.selected = new Set(JSON.parse(sessionStorage.getItem("datmo-selected") || "[]"));
D.select = function (id, on) {
  if (on) D.selected.add(id); else D.selected.delete(id);
  sessionStorage.setItem("datmo-selected", JSON.stringify([...D.selected]));
  D.showSelection();
};
D.showSelection = function () {
  const box = document.getElementById("selection");
  const n = D.selected.size;
  box.replaceChildren();
  if (!n) return;
  box.append(
    D.el("span", {}, n + " selected "),
    D.el("a", { href: "#/compare?ids=" + [...D.selected].join(","), class: "button", id: "compare-selected" }, "Compare"),
    " ",
    D.el("button", { type: "button", class: "link", onclick: () => { D.selected.clear(); D.select("", false); D.route(); } }, "clear"));
};

/** #/page/arg?x=1 -> {page, arg, query}. */
D.parse = function () {
  const hash = location.hash.replace(/^#\/?/, "") || "runs";
  const [path, q] = hash.split("?");
  const [page, ...rest] = path.split("/");
  return { page, arg: decodeURIComponent(rest.join("/")), query: new URLSearchParams(q || "") };
};
D.go = function (page, query) {
  const q = new URLSearchParams(query || {}).toString();
  const target = "#/" + page + (q ? "?" + q : "");
  if (location.hash !== target) history.replaceState(null, "", target);
};

D.route = function () {
  D.clearTimers();
  const where = D.parse();
  const app = document.getElementById("app");
  document.querySelectorAll("nav a").forEach((a) => {
    const on = a.dataset.page === where.page || (where.page === "run" && a.dataset.page === "runs") ||
      (where.page === "sweep" && a.dataset.page === "sweeps");
    if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  const page = D.pages[where.page] || D.pages.runs;
  app.replaceChildren();
  D.showSelection();
  Promise.resolve(page(app, where)).catch((e) => D.error(app, e));
};

/** ECharts, loaded when a page first needs it (a megabyte the runs table never pays). */
D.echarts = function () {
  if (window.echarts) return Promise.resolve(window.echarts);
  if (!D._echarts) {
    D._echarts = new Promise((ok, fail) => {
      const s = D.el("script", { src: "static/vendor/echarts.min.js" });
      s.onload = () => ok(window.echarts);
      s.onerror = () => fail(new Error("could not load the chart library"));
      document.head.append(s);
    });
  }
  return D._echarts;
};
