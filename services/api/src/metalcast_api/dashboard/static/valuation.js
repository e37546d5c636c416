// metalcast: the gold valuation page. Everything comes from /v1/valuation/gold: actual vs
// fitted, the residual, the walk-forward forecasts against naive, the top features and the
// backtest table, drawn with uPlot.
(function () {
  "use strict";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  const fmt = (v, d) => v == null ? "–" : Number(v).toLocaleString("en-US", { maximumFractionDigits: d == null ? 2 : d });
  const t = (day) => Date.parse(day + "T00:00:00Z") / 1000;

  async function getJSON(url) {
    const res = await fetch(url, { headers: { Accept: "application/json" } });
    let data = null;
    try { data = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) {
      const detail = data && data.detail ? (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) : res.statusText;
      const err = new Error(detail); err.status = res.status; throw err;
    }
    return data;
  }

  function plot(id, series, data) {
    const el = document.getElementById(id);
    el.dataset.points = String(data[0].length);
    new uPlot({
      width: Math.max(320, el.clientWidth || 560), height: 220,
      scales: { x: { time: true } },
      series: [{}, ...series],
      axes: [{}, { size: 70, values: (u, vals) => vals.map((v) => fmt(v)) }],
    }, data, el);
  }

  function render(v) {
    const latest = v.latest;
    $('[data-field="verdict"]').innerHTML =
      `${fmt(latest.actual)} vs fitted ${fmt(latest.fitted)} · <b>${esc(latest.valuation || "–")}</b> (${fmt(latest.residual_pct, 2)}%)`;
    const prod = v.production ? `production: v${v.production.version} ${esc(v.production.candidate || v.production.family)}` : "no production version";
    $('[data-field="model"]').innerHTML =
      `LightGBM <b>v${v.model.version}</b> (${v.model.in_production ? "in production" : "not promoted"}) · ${prod} · ${esc(v.model.decision)}`;
    const f = v.forecast;
    $('[data-field="forecast"]').textContent =
      `${f.date}: ${fmt(f.price)}` + (f.fallback ? ` (EMA-30: ${f.fallback_reason})` : ` (model; EMA-30 ${fmt(f.ema30)})`);
    plot("chart-fitted",
      [{ label: "actual", stroke: "#1d2433", width: 1.6 }, { label: "fitted", stroke: "#b8860b", width: 1.4 }],
      [v.fitted.map((p) => t(p.date)), v.fitted.map((p) => p.actual), v.fitted.map((p) => p.fitted)]);
    plot("chart-residual",
      [{ label: "residual (actual − fitted)", stroke: "#8b3a3a", width: 1.2 }],
      [v.fitted.map((p) => t(p.date)), v.fitted.map((p) => p.residual)]);
    const bt = v.backtest_points;
    plot("chart-backtest",
      [{ label: "actual", stroke: "#1d2433", width: 1.6 },
       { label: "predicted (walk-forward)", stroke: "#b8860b", width: 1.4 },
       { label: "naive", stroke: "#7a8699", width: 1, dash: [4, 4] }],
      [bt.map((p) => t(p.date)), bt.map((p) => p.actual), bt.map((p) => p.predicted), bt.map((p) => p.naive)]);
    $("#features tbody").innerHTML = v.top_features
      .map((x) => `<tr><td>${esc(x.name)}</td><td>${fmt(100 * x.importance, 1)}%</td></tr>`).join("");
    $("#backtest tbody").innerHTML = Object.entries(v.backtest)
      .map(([name, s]) => `<tr data-candidate="${esc(name)}"><td>${esc(name)}</td><td>${fmt(s.mase, 4)}</td><td>${fmt(s.mae)}</td><td>${fmt(s.mae_ratio, 4)}</td><td>${fmt(s.origins, 0)}</td><td>${s.fallbacks == null ? "" : fmt(s.fallbacks, 0)}</td></tr>`).join("");
    $('[data-field="search"]').textContent =
      `grid search (expanding-window CV, ${v.search.folds ? v.search.folds.length : "?"} folds): best ${JSON.stringify(v.search.best_params)}, CV MAE ${fmt(v.search.best_mae, 6)}`;
  }

  async function main() {
    try {
      render(await getJSON("/v1/valuation/gold"));
    } catch (e) {
      $('[data-field="note"]').textContent = e.message;
    } finally {
      document.body.dataset.ready = "true";
    }
  }
  main();
})();
