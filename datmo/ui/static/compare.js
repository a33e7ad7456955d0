/* Compare 2 to 100 runs: a metric's series overlaid, parallel coordinates of config
   against a metric, a scatter of any two columns, the values side by side with the
   differences marked, and for two runs the code diff of their after snapshots. */
"use strict";
(function (D) {
  const num = (v) => typeof v === "number" && isFinite(v);

  function columns(doc) {
    return doc.config_keys.map((k) => ["config", k]).concat(doc.metrics_keys.map((k) => ["metrics", k]));
  }
  const value = (run, [part, k]) => run[part][k];
  const label = ([part, k]) => (part === "config" ? k : k + " (metric)");

  function table(doc) {
    const rows = [];
    for (const part of ["config", "metrics"]) {
      const differ = new Set(doc[part + "_differ"]);
      rows.push(D.el("tr", { class: "group" }, D.el("th", { colspan: doc.runs.length + 2, scope: "rowgroup" }, part)));
      for (const k of doc[part + "_keys"]) {
        const d = differ.has(k);
        rows.push(D.el("tr", { class: d ? "differ" : "same", "data-key": part + "." + k },
          D.el("th", { scope: "row" }, k),
          D.el("td", { class: "mark", title: d ? "the values differ" : "the same in every run" }, d ? "≠" : ""),
          doc.runs.map((r) => D.el("td", { class: "num" }, D.fmt(r[part][k])))));
      }
    }
    return D.el("table", { id: "compare-table", class: "grid compare" },
      D.el("thead", {}, D.el("tr", {}, D.el("th", {}, "key"), D.el("th", {}, D.el("span", { class: "sr" }, "differs")),
        doc.runs.map((r, i) => D.el("th", { scope: "col", style: "border-top: 4px solid " + D.color(i) }, D.runLink(r.id))))),
      D.el("tbody", {}, rows));
  }

  async function parallel(box, doc, metric) {
    const echarts = await D.echarts();
    const keys = doc.config_differ.length ? doc.config_differ : doc.config_keys;
    const dims = keys.map((k) => ["config", k]).concat(metric ? [["metrics", metric]] : []);
    const axes = dims.map((d, i) => {
      const vals = doc.runs.map((r) => value(r, d));
      const numeric = vals.every((v) => v === undefined || v === null || num(v));
      return numeric ? { dim: i, name: label(d) }
        : { dim: i, name: label(d), type: "category", data: [...new Set(vals.map(D.fmt))] };
    });
    const data = doc.runs.map((r) => dims.map((d, i) => axes[i].type === "category" ? D.fmt(value(r, d)) : value(r, d) ?? null));
    const chart = echarts.init(box, null, { renderer: "canvas" });
    chart.setOption({
      animation: false,
      parallelAxis: axes,
      parallel: { left: 60, right: 100, top: 40, bottom: 30 },
      series: [{ type: "parallel", lineStyle: { width: 2, opacity: 0.7 },
        data: data.map((v, i) => ({ value: v, lineStyle: { color: D.color(i) } })) }],
    });
    box.dataset.lines = String(data.length);
    return chart;
  }

  async function scatter(box, doc, x, y) {
    const echarts = await D.echarts();
    const points = doc.runs.map((r, i) => ({ value: [value(r, x), value(r, y)], name: D.short(r.id),
      itemStyle: { color: D.color(i) } })).filter((p) => num(p.value[0]) && num(p.value[1]));
    const chart = echarts.getInstanceByDom(box) || echarts.init(box);
    chart.setOption({
      animation: false,
      grid: { left: 70, right: 30, top: 20, bottom: 50 },
      tooltip: { formatter: (p) => D.fmtTip(p) },
      xAxis: { name: label(x), nameLocation: "middle", nameGap: 30, scale: true },
      yAxis: { name: label(y), scale: true },
      series: [{ type: "scatter", symbolSize: 10, data: points }],
    }, true);
    box.dataset.points = String(points.length);
  }
  // ECharts puts a formatter's string in as HTML: give it escaped text only.
  D.fmtTip = (p) => { const t = document.createElement("span"); t.textContent = p.name + ": " + p.value.map(D.fmt).join(", "); return t.innerHTML; };

  async function codeDiff(box, a, b) {
    const doc = await D.api("diff", { a: a, b: b });
    const list = [];
    for (const part of ["code", "files"]) {
      for (const how of ["added", "removed", "changed"]) {
        for (const p of doc[part][how] || []) list.push(D.el("li", { class: how }, `${how} ${part === "code" ? "" : "file "}`, D.el("span", { class: "mono" }, p)));
      }
    }
    const pre = D.el("pre", { class: "diff", id: "patch" });
    for (const line of doc.patch.split("\n")) {
      const c = line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "";
      pre.append(D.el("span", { class: c }, line + "\n"));
    }
    box.replaceChildren(...[D.el("h3", {}, "Changed files"),
      list.length ? D.el("ul", { id: "changed" }, list) : D.el("p", { class: "muted" }, "no file differs"),
      doc.patch ? D.el("h3", {}, "Code diff") : null, doc.patch ? pre : null,
      doc.patch_cut ? D.el("p", { class: "muted" }, "(cut: the diff is long; use 'datmo snapshot diff -p')") : null].filter(Boolean));
  }

  D.pages.compare = async function (app, where) {
    const ids = (where.query.get("ids") || [...D.selected].join(",")).split(",").filter(Boolean);
    app.append(D.el("h1", {}, "Compare"));
    if (ids.length < 2) {
      app.append(D.el("p", { class: "muted" }, "Select 2 to 100 runs on the Runs page (the boxes at the left), then Compare."));
      return;
    }
    const doc = await D.api("compare", { run: ids });
    const labels = Object.fromEntries(doc.runs.map((r) => [r.id, D.short(r.id)]));
    const metricSel = D.el("select", { id: "metric", "aria-label": "metric" }, doc.series.map((k) => D.el("option", { value: k }, k)));
    const axisSel = D.el("select", { id: "axis", "aria-label": "x axis" }, D.el("option", { value: "step" }, "step"), D.el("option", { value: "time" }, "time"));
    const smoothIn = D.el("input", { id: "smooth", type: "range", min: 0, max: 0.99, step: 0.01, value: 0, "aria-label": "smoothing" });
    const logIn = D.el("input", { id: "log", type: "checkbox", "aria-label": "log scale" });
    const chartBox = D.el("div", { class: "chartbox", id: "overlay" });
    const parBox = D.el("div", { class: "echart", id: "parallel" });
    const cols = columns(doc);
    const opt = (c, i) => D.el("option", { value: String(i) }, label(c));
    const xSel = D.el("select", { id: "scatter-x", "aria-label": "scatter x" }, cols.map(opt));
    const ySel = D.el("select", { id: "scatter-y", "aria-label": "scatter y" }, cols.map(opt));
    if (cols.length > 1) ySel.value = String(cols.findIndex((c) => c[0] === "metrics") >= 0 ? cols.findIndex((c) => c[0] === "metrics") : 1);
    const scatterBox = D.el("div", { class: "echart", id: "scatter" });
    const diffBox = D.el("div", { id: "diff" });
    app.append(...[
      D.el("p", {}, doc.runs.map((r, i) => D.el("span", { class: "swatch", style: "border-color: " + D.color(i) }, D.runLink(r.id), " ", r.message || ""))),
      D.el("section", { "aria-label": "series" }, D.el("h2", {}, "Series"),
        D.el("div", { class: "bar" }, D.el("label", {}, "metric ", metricSel), D.el("label", {}, "x ", axisSel),
          D.el("label", {}, "smoothing ", smoothIn), D.el("label", {}, logIn, " log scale")),
        doc.series.length ? chartBox : D.el("p", { class: "muted" }, "these runs logged no series")),
      D.el("section", { "aria-label": "parallel coordinates" }, D.el("h2", {}, "Parallel coordinates"), parBox),
      D.el("section", { "aria-label": "scatter" }, D.el("h2", {}, "Scatter"),
        D.el("div", { class: "bar" }, D.el("label", {}, "x ", xSel), D.el("label", {}, "y ", ySel)), scatterBox),
      D.el("section", { "aria-label": "side by side" }, D.el("h2", {}, "Side by side"), D.el("div", { class: "scroll" }, table(doc))),
      doc.runs.length === 2 ? D.el("section", { "aria-label": "code diff" }, D.el("h2", {}, "Code and files"), diffBox) : null,
    ].filter(Boolean));

    let chart = null;
    function overlay() {
      if (!doc.series.length) return;
      chart = new D.SeriesChart(chartBox, { runs: doc.runs.map((r) => r.id), key: metricSel.value,
        axis: axisSel.value, smooth: +smoothIn.value, log: logIn.checked, labels: labels, height: 320 });
      chart.load(null, null).catch((e) => D.error(chartBox, e));
    }
    metricSel.onchange = () => { overlay(); parallel(parBox, doc, metricSel.value); };
    axisSel.onchange = overlay;
    logIn.onchange = () => { if (chart) { chart.opts.log = logIn.checked; chart.draw(); } };
    smoothIn.oninput = () => { if (chart && chart.doc) { chart.opts.smooth = +smoothIn.value; chart.draw(); } };
    const redrawScatter = () => scatter(scatterBox, doc, cols[+xSel.value], cols[+ySel.value]).catch((e) => D.error(scatterBox, e));
    xSel.onchange = ySel.onchange = redrawScatter;
    overlay();
    parallel(parBox, doc, metricSel.value).catch((e) => D.error(parBox, e));
    if (cols.length) redrawScatter();
    if (doc.runs.length === 2) codeDiff(diffBox, doc.runs[0].id, doc.runs[1].id).catch((e) => D.error(diffBox, e));
  };
  D.parallel = parallel;
})(window.D);
