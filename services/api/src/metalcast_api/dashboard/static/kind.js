// metalcast: one page per instrument kind. For each catalogued instrument: its history
// (/v1/instruments/{symbol}/history, in its cadence), its production model's forecast and
// the 80% and 95% bands (/v1/forecasts/{symbol}), drawn with uPlot.
(function () {
  "use strict";
  const HISTORY = { hourly: 7 * 24 * 3600e3, daily: 365 * 24 * 3600e3 };
  const HORIZON = { hourly: 48, daily: 30 };
  const $ = (sel, root) => (root || document).querySelector(sel);
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  const fmt = (v) => v == null ? "–" : Number(v).toLocaleString("en-US", { maximumFractionDigits: 2 });

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

  function series(points, fc) {
    const xs = new Map();
    const row = (t) => { if (!xs.has(t)) xs.set(t, [t, null, null, null, null, null, null]); return xs.get(t); };
    for (const p of points) row(p.t)[1] = p.v;
    if (fc) {
      if (points.length) {
        const last = points[points.length - 1];
        if (Date.parse(fc.cutoff) / 1000 === last.t) { const r = row(last.t); r[2] = r[3] = r[4] = r[5] = r[6] = last.v; }
      }
      for (const s of fc.steps) {
        const r = row(Date.parse(s.ts) / 1000);
        r[2] = s.point; r[3] = s.lower_95; r[4] = s.upper_95; r[5] = s.lower_80; r[6] = s.upper_80;
      }
    }
    const rows = Array.from(xs.values()).sort((a, b) => a[0] - b[0]);
    return [0, 1, 2, 3, 4, 5, 6].map((i) => rows.map((r) => r[i]));
  }

  function draw(el, data) {
    new uPlot({
      width: Math.max(320, el.clientWidth || 560), height: 260,
      scales: { x: { time: true } },
      series: [
        {},
        { label: "price", stroke: "#1d2433", width: 1.6 },
        { label: "forecast", stroke: "#b8860b", width: 1.6, dash: [6, 4] },
        { label: "95% low", stroke: "rgba(184,134,11,0.25)", width: 1 },
        { label: "95% high", stroke: "rgba(184,134,11,0.25)", width: 1 },
        { label: "80% low", stroke: "rgba(184,134,11,0.45)", width: 1 },
        { label: "80% high", stroke: "rgba(184,134,11,0.45)", width: 1 },
      ],
      bands: [
        { series: [4, 3], fill: "rgba(184,134,11,0.12)" },
        { series: [6, 5], fill: "rgba(184,134,11,0.22)" },
      ],
      axes: [{}, { size: 70, values: (u, vals) => vals.map(fmt) }],
    }, data, el);
  }

  async function load(card) {
    const symbol = card.dataset.symbol;
    const cadence = card.dataset.cadence;
    const notes = [];
    let points = [];
    try {
      const from = new Date(Date.now() - HISTORY[cadence]).toISOString();
      const hist = await getJSON(`/v1/instruments/${symbol}/history?from=${encodeURIComponent(from)}`);
      points = cadence === "daily"
        ? hist.daily.map((b) => ({ t: Date.parse(b.date + "T00:00:00Z") / 1000, v: b.close }))
        : hist.hourly.map((p) => ({ t: Date.parse(p.ts) / 1000, v: p.price }));
    } catch (e) { notes.push("history: " + e.message); }
    let fc = null;
    try {
      fc = await getJSON(`/v1/forecasts/${symbol}?horizon=${HORIZON[cadence]}`);
      $('[data-field="model"]', card).innerHTML =
        `model: <b>v${fc.model.version}</b> ${esc(fc.model.candidate || fc.model.family)} · ` +
        `cutoff ${esc(fc.cutoff.slice(0, 16).replace("T", " "))} UTC · ${fc.horizon} ${cadence === "daily" ? "days" : "hours"} ahead`;
    } catch (e) {
      $('[data-field="model"]', card).textContent = "model: " + (e.status === 409 ? "none in production yet" : e.message);
    }
    const el = document.getElementById("chart-" + symbol);
    draw(el, series(points, fc));
    el.dataset.points = String(points.length);
    el.dataset.forecastSteps = String(fc ? fc.steps.length : 0);
    $('[data-field="note"]', card).textContent = notes.join(" · ");
  }

  Promise.all(Array.from(document.querySelectorAll("article.metal")).map(load))
    .finally(() => { document.body.dataset.ready = "true"; });
})();
