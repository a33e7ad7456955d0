/* One run: what it was, what it did, its charts, its log (followed while it runs) and
   the files of its after snapshot. Tags and the message can be changed here. */
"use strict";
(function (D) {
  function section(title, ...body) {
    return D.el("section", { "aria-label": title }, D.el("h2", {}, title), ...body);
  }

  function editor(run, kind, onSaved) {
    const box = D.el("div", { class: "edit" });
    const err = D.el("span", { class: "error", role: "alert" });
    function show() {
      const msg = D.el("span", { id: "message", class: "message" }, run.message || "(no message)");
      const tags = (run.tags || []).map((t) => D.el("span", { class: "tag" }, t, " ",
        D.el("button", { type: "button", class: "link", "aria-label": "remove tag " + t,
          onclick: () => save("tags", { remove: [t] }) }, "×")));
      const tagInput = D.el("input", { id: "new-tag", size: 12, placeholder: "new tag", "aria-label": "new tag" });
      box.replaceChildren(
        D.el("p", {}, msg, " ", D.el("button", { type: "button", class: "link", onclick: edit }, "edit")),
        D.el("form", { class: "tags", onsubmit: (e) => { e.preventDefault(); if (tagInput.value) save("tags", { add: [tagInput.value] }); } },
          tags, tagInput, D.el("button", { type: "submit" }, "add tag")), err);
    }
    function edit() {
      const input = D.el("input", { id: "message-input", value: run.message || "", size: 60, "aria-label": "message" });
      box.replaceChildren(D.el("form", { onsubmit: (e) => { e.preventDefault(); save("message", { message: input.value }); } },
        input, D.el("button", { type: "submit" }, "save"), D.el("button", { type: "button", onclick: show }, "cancel")), err);
      input.focus();
    }
    async function save(what, body) {
      try {
        const got = await D.api(kind + "/" + encodeURIComponent(run.id) + "/" + what, null, body);
        Object.assign(run, got);
        err.textContent = "";
        show();
        if (onSaved) onSaved();
      } catch (e) { err.textContent = e.message; }
    }
    show();
    return box;
  }
  D.editor = editor;

  function filesOf(snapshotId, box) {
    box.replaceChildren(D.el("p", { class: "muted" }, "Loading files…"));
    D.api("snapshots/" + encodeURIComponent(snapshotId) + "/files").then((doc) => {
      const preview = D.el("div", { class: "preview" });
      const rows = doc.files.map((f) => {
        const href = "files/" + encodeURIComponent(doc.snapshot) + "/" + f.path.split("/").map(encodeURIComponent).join("/");
        const image = /\.(png|jpe?g|gif|webp|bmp|svg)$/i.test(f.path);
        return D.el("tr", {},
          D.el("td", { class: "mono" }, f.path),
          D.el("td", {}, f.kind),
          D.el("td", { class: "num" }, D.bytes(f.size)),
          D.el("td", {}, f.kind === "link" ? "" : D.el("a", { href: href, download: f.path.split("/").pop() }, "download"),
            image ? [" ", D.el("button", { type: "button", class: "link", onclick: () => {
              preview.replaceChildren(D.el("p", { class: "mono" }, f.path), D.el("img", { src: href + "?preview=1", alt: f.path }));
            } }, "preview")] : null));
      });
      box.replaceChildren(doc.files.length ? D.el("table", { class: "grid files" },
        D.el("thead", {}, D.el("tr", {}, ["path", "kind", "size", ""].map((h) => D.el("th", { scope: "col" }, h)))),
        D.el("tbody", {}, rows)) : D.el("p", { class: "muted" }, "no files"), preview);
    }).catch((e) => D.error(box, e));
  }
  D.filesOf = filesOf;

  D.pages.run = async function (app, where) {
    let run = await D.api("runs/" + encodeURIComponent(where.arg));
    const head = D.el("div", { class: "runhead" });
    const facts = D.el("div");
    const config = D.el("div");
    const metrics = D.el("div");
    const charts = D.el("div", { class: "charts" });
    const log = D.el("pre", { id: "log", class: "log", tabindex: "0" });
    const files = D.el("div");
    const title = D.el("h1");
    head.append(title, D.el("p", { class: "mono cmd" }, run.command), editor(run, "runs"),
      D.el("label", {}, D.el("input", { type: "checkbox", checked: D.selected.has(run.id),
        onchange: (e) => D.select(run.id, e.target.checked) }), " select to compare"));
    function top() {
      title.replaceChildren("Run ", D.el("span", { class: "mono" }, D.short(run.id)), " ", D.status(run.status));
      const snap = (id) => id ? D.el("span", {}, D.el("span", { class: "mono" }, D.short(id)), " ",
        (run.snapshots[id] || {}).message || "") : "";
      facts.replaceChildren(D.kv({
        status: run.status, "exit code": run.exit_code, error: run.error, created: D.when(run.created_at),
        started: D.when(run.started_at), ended: D.when(run.ended_at), duration: D.duration(run.duration_s),
        executor: run.executor, environment: run.environment_id, image: run.image_id,
        GPUs: (run.gpus || []).join(", ") || "none", sweep: run.sweep_id, "rerun of": run.rerun_of,
      }), D.el("h3", {}, "Snapshots"), D.el("table", { class: "kv" }, D.el("tbody", {},
        D.el("tr", {}, D.el("th", {}, "before"), D.el("td", {}, snap(run.before_snapshot_id))),
        D.el("tr", {}, D.el("th", {}, "after"), D.el("td", {}, snap(run.after_snapshot_id))))),
      D.el("h3", {}, "Timings"), D.kv(run.timings), D.el("h3", {}, "Platform"), D.kv(run.platform),
      D.el("h3", {}, "Environment variables"), D.kv(run.env));
      config.replaceChildren(D.kv(run.config, "config"));
      const m = {};
      for (const [k, v] of Object.entries(run.metrics)) {
        const r = run.metric_ranges[k];
        m[k] = D.fmt(v) + (r ? `  (min ${D.fmt(r[0])}, max ${D.fmt(r[1])})` : "");
      }
      metrics.replaceChildren(D.kv(m, "metrics"));
    }
    top();
    app.append(head,
      D.el("div", { class: "cols" }, section("Config", config), section("Metrics", metrics)),
      section("Charts", charts), section("Run", facts), section("Log", log),
      section("Files of the after snapshot", files));

    const drawn = {};
    function chartsFor(keys) {
      if (!keys.length && !Object.keys(drawn).length) charts.replaceChildren(D.el("p", { class: "muted" }, "no metric series"));
      for (const k of keys) {
        if (drawn[k]) continue;
        if (!Object.keys(drawn).length) charts.replaceChildren();
        const box = D.el("div", { class: "chartbox", "data-key": k });
        charts.append(D.el("figure", {}, D.el("figcaption", {}, k), box));
        drawn[k] = new D.SeriesChart(box, { runs: [run.id], key: k, height: 200 });
        drawn[k].load(null, null).catch((e) => D.error(box, e));
      }
    }
    chartsFor(run.series);

    let logAt = null;
    async function follow() {
      const doc = await D.api("runs/" + encodeURIComponent(run.id) + "/log", logAt === null ? {} : { offset: logAt });
      if (logAt === null && doc.offset - doc.text.length > 0) log.append("… (the start of a long log is left out)\n");
      logAt = doc.offset;
      if (doc.text) {
        const end = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.append(doc.text);
        if (end) log.scrollTop = log.scrollHeight;
      }
    }
    await follow().catch((e) => D.error(log, e));
    if (run.after_snapshot_id) filesOf(run.after_snapshot_id, files);
    else files.append(D.el("p", { class: "muted" }, run.status === "RUNNING" ? "the run has not ended" : "none"));

    if (D.live(run.status)) {
      D.every(1000, () => follow().catch(() => {}));
      D.every(2000, async () => {
        const was = run.status;
        run = await D.api("runs/" + encodeURIComponent(run.id));
        top();
        chartsFor(run.series);
        Object.values(drawn).forEach((c) => { if (c.range[0] === null) c.reload().catch(() => {}); });
        if (!D.live(run.status) && was !== run.status) { follow(); D.route(); }
      });
    }
  };
})(window.D);
