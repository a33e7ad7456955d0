/* Snapshots (their files, and the diff of two) and sweeps (runs ranked by the sweep's
   objective, with parallel coordinates). */
"use strict";
(function (D) {
  D.pages.snapshots = async function (app, where) {
    const all = where.query.get("all") === "1";
    const doc = await D.api("snapshots", { all: all ? "1" : "" });
    const picked = new Set();
    const files = D.el("div", { id: "snapshot-files" });
    const diff = D.el("div", { id: "snapshot-diff" });
    const diffButton = D.el("button", { type: "button", disabled: true, onclick: async () => {
      const [a, b] = [...picked];
      try {
        const d = await D.api("diff", { a: a, b: b });
        const items = [];
        for (const part of ["code", "files"]) for (const how of ["added", "removed", "changed"])
          for (const p of d[part][how] || []) items.push(D.el("li", { class: how }, how + " ", D.el("span", { class: "mono" }, p)));
        const pre = D.el("pre", { class: "diff" });
        for (const line of d.patch.split("\n")) pre.append(D.el("span", { class: line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "" }, line + "\n"));
        diff.replaceChildren(...[D.el("h2", {}, `Diff ${D.short(a)} → ${D.short(b)}`),
          D.el("h3", {}, "Config"), D.kv(Object.fromEntries(Object.entries(d.config).map(([k, v]) => [k, D.fmt(v[0]) + " → " + D.fmt(v[1])]))),
          D.el("h3", {}, "Files"), items.length ? D.el("ul", {}, items) : D.el("p", { class: "muted" }, "no file differs"),
          d.patch ? pre : null].filter(Boolean));
      } catch (e) { D.error(diff, e); }
    } }, "Diff the two selected");
    const rows = doc.snapshots.map((s) => D.el("tr", { "data-id": s.id },
      D.el("td", {}, D.el("input", { type: "checkbox", "aria-label": "select " + D.short(s.id), onchange: (e) => {
        if (e.target.checked) picked.add(s.id); else picked.delete(s.id);
        diffButton.disabled = picked.size !== 2;
      } })),
      D.el("td", {}, D.el("button", { type: "button", class: "link mono", onclick: () => {
        files.replaceChildren(D.el("h2", {}, "Snapshot ", D.el("span", { class: "mono" }, D.short(s.id))),
          D.editor(s, "snapshots"), D.el("h3", {}, "Files"), D.el("div"));
        D.filesOf(s.id, files.lastChild);
      } }, D.short(s.id))),
      D.el("td", { class: "nowrap" }, D.when(s.created_at)),
      D.el("td", {}, s.label || ""),
      D.el("td", { class: "msg" }, s.message),
      D.el("td", {}, (s.tags || []).map((t) => D.el("span", { class: "tag" }, t))),
      D.el("td", {}, Object.entries(s.config).map(([k, v]) => k + "=" + D.fmt(v)).join(", ")),
      D.el("td", {}, Object.entries(s.metrics).map(([k, v]) => k + "=" + D.fmt(v)).join(", ")),
      D.el("td", {}, s.run_id ? D.runLink(s.run_id) : "")));
    app.append(...[D.el("h1", {}, "Snapshots"),
      D.el("div", { class: "bar" }, diffButton, D.el("a", { href: all ? "#/snapshots" : "#/snapshots?all=1" }, all ? "hide the hidden ones" : "show hidden (runs' own) snapshots")),
      D.el("div", { class: "scroll" }, D.el("table", { class: "grid", id: "snapshots" },
        D.el("thead", {}, D.el("tr", {}, ["", "id", "created", "label", "message", "tags", "config", "metrics", "run"].map((h) => D.el("th", { scope: "col" }, h)))),
        D.el("tbody", {}, rows))),
      doc.snapshots.length ? null : D.el("p", { class: "muted" }, "no snapshots yet: datmo snapshot create -m \"...\""),
      files, diff].filter(Boolean));
  };

  D.pages.sweeps = async function (app) {
    const doc = await D.api("sweeps");
    app.append(D.el("h1", {}, "Sweeps"));
    if (!doc.sweeps.length) {
      app.append(D.el("p", { class: "muted" }, "no sweeps yet: datmo sweep \"python train.py --lr {lr}\" -c lr=0.1,0.01"));
      return;
    }
    app.append(D.el("table", { class: "grid", id: "sweeps" },
      D.el("thead", {}, D.el("tr", {}, ["id", "created", "command", "space", "objective", ""].map((h) => D.el("th", { scope: "col" }, h)))),
      D.el("tbody", {}, doc.sweeps.map((s) => D.el("tr", {},
        D.el("td", {}, D.el("a", { href: "#/sweep/" + encodeURIComponent(s.id), class: "mono" }, D.short(s.id))),
        D.el("td", { class: "nowrap" }, D.when(s.created_at)),
        D.el("td", { class: "mono" }, s.command),
        D.el("td", {}, Object.entries(s.space).map(([k, v]) => k + "=" + v).join("; ")),
        D.el("td", {}, s.objective || ""),
        D.el("td", {}, s.stopped_at ? "stopped" : ""))))));
  };

  D.pages.sweep = async function (app, where) {
    const doc = await D.api("sweeps/" + encodeURIComponent(where.arg));
    const s = doc.sweep;
    const [metric] = (s.objective || "").split(":");
    app.append(D.el("h1", {}, "Sweep ", D.el("span", { class: "mono" }, D.short(s.id))),
      D.el("p", { class: "mono cmd" }, s.command),
      D.el("p", {}, s.objective ? `ranked by ${s.objective} (${doc.ranked} of ${doc.runs.length} runs have it)` : "no objective: newest first"));
    const par = D.el("div", { class: "echart", id: "sweep-parallel" });
    const ids = doc.runs.map((r) => r.id);
    app.append(D.el("div", { class: "bar" }, ids.length >= 2 ? D.el("a", { class: "button", href: "#/compare?ids=" + ids.slice(0, 100).join(",") }, "Compare these runs") : null),
      D.el("table", { class: "grid", id: "sweep-runs" },
        D.el("thead", {}, D.el("tr", {}, ["rank", "run", "status"].concat(doc.keys, metric ? [metric] : []).map((h) => D.el("th", { scope: "col" }, h)))),
        D.el("tbody", {}, doc.runs.map((r, i) => D.el("tr", {},
          D.el("td", { class: "num" }, i < doc.ranked ? String(i + 1) : ""),
          D.el("td", {}, D.runLink(r.id)), D.el("td", {}, D.status(r.status)),
          doc.keys.map((k) => D.el("td", { class: "num" }, D.fmt(r.config[k]))),
          metric ? D.el("td", { class: "num" }, D.fmt(r.metrics[metric])) : null)))),
      D.el("h2", {}, "Parallel coordinates"), par);
    if (doc.runs.length) {
      const pdoc = { runs: doc.runs, config_keys: doc.keys, config_differ: doc.keys };
      D.parallel(par, pdoc, metric || null).catch((e) => D.error(par, e));
    }
  };
})(window.D);
