/* Metric charts on uPlot. The server sends at most two points per pixel column of the
   range shown (its min/max envelope); dragging across a chart asks for that range at
   full detail, a double click goes back to the whole series. */
"use strict";
(function (D) {
  D.palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"];
  D.color = (i) => D.palette[i % D.palette.length];

  /** Exponential moving average, debiased (as TensorBoard smooths). */
  function smooth(ys, w) {
    if (!w) return ys;
    let last = 0, n = 0;
    return ys.map((y) => {
      if (y === null || y === undefined || !isFinite(y)) return y;
      last = last * w + (1 - w) * y; n++;
      return last / (1 - Math.pow(w, n));
    });
  }

  /** A framed answer of /api/series (api.framed): the JSON head, then each series' n y
      as doubles, read in place (no copy), and its n x: doubles too, or (with xi: [first,
      delta]) 4-byte indices, x = first + delta * index; each series padded to 8 bytes.
      A y that is not finite becomes null (a gap, as uPlot wants it), which needs a
      plain array, made only when there is one. */
  function unframe(buf) {
    const size = new DataView(buf).getUint32(0, true);
    const doc = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, size)));
    let at = 4 + size;
    for (const s of doc.series) {
      const n = s.n;
      s.y = gaps(new Float64Array(buf, at, n));
      at += 8 * n;
      if (s.xi) {
        const index = new Uint32Array(buf, at, n), first = s.xi[0], delta = s.xi[1];
        s.x = new Float64Array(n);
        for (let i = 0; i < n; i++) s.x[i] = first + delta * index[i];
        at += 4 * n + (n % 2) * 4;
      } else {
        s.x = new Float64Array(buf, at, n);
        at += 8 * n;
      }
    }
    return doc;
  }
  D.unframe = unframe;

  function gaps(ys) {
    for (let i = 0; i < ys.length; i++) {
      if (!isFinite(ys[i])) return Array.from(ys, (y) => (isFinite(y) ? y : null));
    }
    return ys;
  }

  class SeriesChart {
    /** opts: runs [ids], key, axis ("step"|"time"), smooth (0..0.99), log (bool),
        height, labels {id: text} */
    constructor(box, opts) {
      this.box = box;
      this.opts = Object.assign({ axis: "step", smooth: 0, log: false, height: 240 }, opts);
      this.plot = null;
      this.range = [null, null];
      this.seq = 0;
      this.box.classList.add("chart");
      this.box.setAttribute("role", "img");
      this.box.setAttribute("aria-label", "chart of " + this.opts.key);
    }

    async load(lo, hi) {
      const mine = ++this.seq;
      this.range = [lo, hi];
      const width = Math.max(200, Math.floor(this.box.clientWidth || 600));
      const buf = await D.api("series", {
        run: this.opts.runs, key: this.opts.key, axis: this.opts.axis,
        lo: lo, hi: hi, width: width,
      }, null, true);
      if (mine !== this.seq) return; // a newer request is under way
      this.doc = unframe(buf);
      this.draw();
    }

    reload() { return this.load(this.range[0], this.range[1]); }

    draw() {
      const o = this.opts, doc = this.doc;
      const tables = doc.series.map((s) => {
        let ys = smooth(s.y, o.smooth);
        if (o.log) ys = Array.from(ys, (y) => (y > 0 ? y : null));
        return [s.x, ys];
      });
      // Several runs: each keeps its own x (uPlot's mode 2), no join onto a common x.
      const many = tables.length > 1;
      const data = many ? [null].concat(tables) : tables[0];
      const labels = o.labels || {};
      const series = [{ label: o.axis }].concat(doc.series.map((s, i) => Object.assign({
        label: labels[s.run] || D.short(s.run),
        stroke: D.color(o.colors ? o.colors[i] : i),
        // Hairlines for overlays: Chromium's software raster took 140 ms to paint 20
        // noisy lines 1.5 px wide, 4 ms at 1 px (issue 15).
        width: many ? 1 : 1.5,
        spanGaps: true,
        points: { show: (s.x.length || 0) < 60 },
      }, many ? { paths: uPlot.paths.linear() } : {})));
      const width = Math.max(200, Math.floor(this.box.clientWidth || 600));
      const chart = this;
      const opts = {
        width: width,
        height: o.height,
        mode: many ? 2 : 1,
        series: series,
        scales: { x: { time: o.axis === "time" }, y: o.log ? { distr: 3 } : {} },
        axes: [{ label: o.axis === "time" ? "" : "step" }, { size: 60 }],
        legend: { show: doc.series.length <= 12 },
        cursor: { drag: { x: true, y: false }, bind: {
          dblclick: () => () => { chart.load(null, null); return null; },
        } },
        hooks: { setSelect: [(u) => {
          if (u.select.width < 3) return;
          const lo = u.posToVal(u.select.left, "x"), hi = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          chart.load(lo, hi);
        }] },
      };
      if (this.plot) this.plot.destroy();
      this.box.replaceChildren();
      this.plot = new uPlot(opts, data, this.box);
      const points = doc.series.reduce((a, s) => a + s.x.length, 0);
      this.box.dataset.series = String(doc.series.length);
      this.box.dataset.points = String(points);
      this.box.dataset.total = String(doc.series.reduce((a, s) => a + s.total, 0));
      this.box.dataset.drawn = String(Date.now());
      if (!points) this.box.append(D.el("p", { class: "muted empty" }, "no points yet"));
    }
  }
  D.SeriesChart = SeriesChart;
  D.smooth = smooth;
})(window.D);
