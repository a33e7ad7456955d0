/* The runs table: the filter and sort of `datmo ls`, run by the server on its index,
   one page at a time; RUNNING and QUEUED rows refresh in place. */
"use strict";
(function (D) {
  const PAGE = 50;
  const BASE = ["id", "status", "created", "message", "tags", "duration"];

  function chosenColumns(keys) {
    const saved = JSON.parse(localStorage.getItem("datmo-columns") || "null");
    if (saved) return saved;
    return { config: keys.config.slice(0, 6), metrics: keys.metrics.slice(0, 6) };
  }

  D.pages.runs = async function (app, where) {
    const q = where.query;
    const state = { filter: q.get("filter") || "", sort: q.get("sort") || "",
      offset: +(q.get("offset") || 0), gen: 0, rows: [] };
    const keys = await D.api("keys");
    let cols = chosenColumns(keys);

    const filter = D.el("input", { id: "filter", type: "search", value: state.filter, size: 40,
      placeholder: "acc>0.9 and lr=0.01", "aria-label": "filter", spellcheck: "false" });
    const sort = D.el("input", { id: "sort", type: "search", value: state.sort, size: 16,
      placeholder: "acc:desc", "aria-label": "sort", spellcheck: "false" });
    const message = D.el("p", { id: "filter-error", class: "error", role: "alert", hidden: true });
    const count = D.el("span", { id: "count", class: "muted", "aria-live": "polite" });
    const prev = D.el("button", { type: "button", onclick: () => page(-1) }, "‹ newer");
    const next = D.el("button", { type: "button", onclick: () => page(1) }, "older ›");
    const picker = D.el("details", { class: "picker" }, D.el("summary", {}, "Columns"));
    const table = D.el("table", { id: "runs", class: "grid" });
    app.append(
      D.el("h1", {}, "Runs"),
      D.el("form", { class: "bar", onsubmit: (e) => { e.preventDefault(); clearTimeout(timer); refilter(); } },
        D.el("label", {}, "Filter ", filter), D.el("label", {}, "Sort ", sort),
        D.el("button", { type: "submit" }, "Apply"), picker),
      message,
      D.el("div", { class: "bar" }, count, prev, next),
      D.el("div", { class: "scroll" }, table));

    function fillPicker() {
      picker.replaceChildren(D.el("summary", {}, "Columns"));
      for (const part of ["config", "metrics"]) {
        const box = D.el("fieldset", {}, D.el("legend", {}, part));
        for (const k of keys[part]) {
          const id = "col-" + part + "-" + k;
          const cb = D.el("input", { type: "checkbox", id: id, checked: cols[part].includes(k),
            onchange: () => {
              cols[part] = keys[part].filter((x) => x === k ? cb.checked : cols[part].includes(x));
              localStorage.setItem("datmo-columns", JSON.stringify(cols));
              draw();
            } });
          box.append(D.el("label", { for: id }, cb, " " + k));
        }
        picker.append(box);
      }
    }

    let timer = null;
    filter.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refilter, 250); });
    sort.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refilter, 250); });

    function refilter() { state.filter = filter.value; state.sort = sort.value; state.offset = 0; load(); }
    function page(d) { state.offset = Math.max(0, state.offset + d * PAGE); load(); }

    async function load(quiet) {
      const mine = ++state.gen;
      let doc;
      const asked = { filter: state.filter, sort: state.sort, offset: state.offset, limit: PAGE };
      try {
        doc = await D.api("runs", asked);
      } catch (e) {
        if (mine !== state.gen) return;
        message.textContent = e.message; message.hidden = false;
        state.rows = []; draw(); count.textContent = "";
        return;
      }
      if (mine !== state.gen) return; // an older answer after a newer request
      message.hidden = true;
      if (!quiet) D.go("runs", Object.fromEntries(Object.entries({
        filter: state.filter, sort: state.sort, offset: state.offset || "" }).filter(([, v]) => v)));
      state.rows = doc.runs;
      const a = doc.runs.length ? state.offset + 1 : 0, b = state.offset + doc.runs.length;
      const notes = (doc.damaged ? ` (${doc.damaged} damaged records left out: run 'datmo fsck')` : "") +
        (doc.unknown.length ? ` (no run has ${doc.unknown.join(", ")})` : "");
      prev.disabled = state.offset === 0;
      next.disabled = doc.runs.length < PAGE;
      draw();
      // The count needs every match: asked for after the rows are drawn.
      if (state.total === undefined || !quiet || state.counted !== JSON.stringify([asked.filter, asked.sort])) {
        count.textContent = `runs ${a}–${b}` + notes;
        const total = await D.api("runs", Object.assign({}, asked, { limit: 1, offset: 0, count: "1" })).catch(() => null);
        if (mine !== state.gen || !total) return;
        state.total = total.total;
        state.counted = JSON.stringify([asked.filter, asked.sort]);
      }
      count.textContent = `runs ${a}–${b} of ${state.total}` + notes;
      next.disabled = b >= state.total;
      table.dataset.counted = String(Date.now());
    }

    function draw() {
      const head = D.el("tr", {}, D.el("th", { scope: "col" }, D.el("span", { class: "sr" }, "select")),
        BASE.map((c) => D.el("th", { scope: "col" }, c)),
        cols.config.map((k) => D.el("th", { scope: "col", class: "cfg" }, k)),
        cols.metrics.map((k) => D.el("th", { scope: "col", class: "met" }, k)));
      const body = D.el("tbody", {}, state.rows.map((r) => D.el("tr", { "data-id": r.id, "data-status": r.status },
        D.el("td", {}, D.el("input", { type: "checkbox", "aria-label": "select " + D.short(r.id),
          checked: D.selected.has(r.id), onchange: (e) => D.select(r.id, e.target.checked) })),
        D.el("td", {}, D.runLink(r.id)),
        D.el("td", {}, D.status(r.status)),
        D.el("td", { class: "nowrap" }, D.when(r.created_at)),
        D.el("td", { class: "msg", title: r.command }, r.message || ""),
        D.el("td", {}, (r.tags || []).map((t) => D.el("span", { class: "tag" }, t))),
        D.el("td", { class: "num" }, D.duration(r.duration_s)),
        cols.config.map((k) => D.el("td", { class: "num", "data-key": "config." + k }, D.fmt(r.config[k]))),
        cols.metrics.map((k) => D.el("td", { class: "num", "data-key": "metrics." + k }, D.fmt(r.metrics[k]))))));
      table.replaceChildren(D.el("thead", {}, head), body);
      table.dataset.loaded = String(Date.now());
    }

    fillPicker();
    await load(true);
    // Live: a page with RUNNING or QUEUED runs is fetched again every 2 s, others every 10 s.
    let ticks = 0;
    D.every(2000, () => {
      ticks++;
      if (state.rows.some((r) => D.live(r.status)) || ticks % 5 === 0) load(true);
    });
  };
})(window.D);
