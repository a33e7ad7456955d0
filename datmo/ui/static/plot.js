/* The charts of a `datmo plot` file: its data is the JSON block above, read as data. */
"use strict";
(function () {
  const fig = JSON.parse(document.getElementById("data").textContent);
  const palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf"];
  const labels = Object.fromEntries(fig.runs.map((r, i) => [r.id, [r.label, palette[i % palette.length]]]));
  document.getElementById("title").textContent = fig.title;
  const charts = document.getElementById("charts");
  function figure(title) {
    const f = document.createElement("figure");
    const c = document.createElement("figcaption");
    c.textContent = title;
    const box = document.createElement("div");
    f.append(c, box);
    charts.append(f);
    return box;
  }
  function draw(box, tables, series, xTime, log, scatter) {
    const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
    const width = Math.max(300, box.clientWidth || 500);
    new uPlot({
      width: width, height: 280,
      scales: { x: { time: xTime }, y: log ? { distr: 3 } : {} },
      series: [{}].concat(series.map((s) => Object.assign({ width: 1.5, spanGaps: true }, s,
        scatter ? { paths: () => null, points: { show: true, size: 7, fill: s.stroke } } : {}))),
    }, data, box);
    box.dataset.series = String(series.length);
  }
  for (const [key, list] of Object.entries(fig.metrics)) {
    const tables = list.map((s) => [s.x, s.y.map((y) => (fig.log && !(y > 0) ? null : y))]);
    draw(figure(key + (fig.axis === "time" ? " (by time)" : "")), tables,
      list.map((s) => ({ label: labels[s.run][0], stroke: labels[s.run][1] })), fig.axis === "time", fig.log);
  }
  for (const s of fig.scatter) {
    const pts = s.points;
    draw(figure(s.metric + " by " + s.key), [[pts.map((p) => p[0]), pts.map((p) => p[1])]],
      [{ label: s.metric, stroke: palette[0] }], false, false, true);
  }
  if (!charts.children.length) charts.textContent = "no series to draw";
})();
