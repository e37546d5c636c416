// metalcast dashboard: fetches /v1, draws uPlot charts, follows /v1/stream/ticks.
(function () {
  "use strict";
  const body = document.body;
  const HORIZON = Number(body.dataset.horizon || 24);
  const HISTORY_H = Number(body.dataset.historyHours || 72);
  const METALS = Array.from(document.querySelectorAll("article.metal")).map((el) => el.dataset.symbol);
  // ?live=0 leaves the stream closed (headless screenshots wait for the network to idle).
  const LIVE = new URLSearchParams(location.search).get("live") !== "0";
  const charts = {};
  const state = { history: {}, forecast: {} };

  const $ = (sel, root) => (root || document).querySelector(sel);
  const fmtPrice = (v) => v == null ? "–" : Number(v).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const fmtTime = (s) => s ? new Date(s).toISOString().slice(0, 16).replace("T", " ") : "–";
  const fmtAge = (sec) => {
    if (sec == null) return "–";
    if (sec < 90) return Math.round(sec) + " s";
    if (sec < 5400) return Math.round(sec / 60) + " min";
    if (sec < 172800) return (sec / 3600).toFixed(1) + " h";
    return (sec / 86400).toFixed(1) + " d";
  };
  const fmtPct = (v) => v == null ? "–" : Math.round(v * 100) + "%";
  const fmtNum = (v, d) => v == null ? "–" : Number(v).toFixed(d);
  const fmtBytes = (b) => b == null ? "–" : b > 1e6 ? (b / 1e6).toFixed(1) + " MB" : (b / 1e3).toFixed(0) + " kB";
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

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

  function chartData(symbol) {
    const hist = state.history[symbol] || [];
    const fc = state.forecast[symbol];
    const xs = new Map();
    const row = (t) => { if (!xs.has(t)) xs.set(t, [t, null, null, null, null, null, null]); return xs.get(t); };
    for (const p of hist) row(Date.parse(p.ts) / 1000)[1] = p.price;
    if (fc) {
      if (hist.length) { // join the forecast line to the last observation at the cutoff
        const last = hist[hist.length - 1];
        const t = Date.parse(last.ts) / 1000;
        if (Date.parse(fc.cutoff) / 1000 === t) { const r = row(t); r[2] = r[3] = r[4] = r[5] = r[6] = last.price; }
      }
      for (const s of fc.steps) {
        const r = row(Date.parse(s.ts) / 1000);
        r[2] = s.point; r[3] = s.lower_95; r[4] = s.upper_95; r[5] = s.lower_80; r[6] = s.upper_80;
      }
    }
    const rows = Array.from(xs.values()).sort((a, b) => a[0] - b[0]);
    return [0, 1, 2, 3, 4, 5, 6].map((i) => rows.map((r) => r[i]));
  }

  function draw(symbol) {
    const el = document.getElementById("chart-" + symbol);
    const data = chartData(symbol);
    const width = Math.max(320, el.clientWidth || 560);
    if (charts[symbol]) { charts[symbol].setData(data); }
    else {
      const opts = {
        width, height: 260,
        scales: { x: { time: true } },
        legend: { show: true },
        series: [
          {},
          { label: "price", stroke: "#1d2433", width: 1.6, spanGaps: false },
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
        axes: [{}, { size: 70, values: (u, vals) => vals.map((v) => fmtPrice(v)) }],
      };
      charts[symbol] = new uPlot(opts, data, el);
    }
    el.dataset.points = String((state.history[symbol] || []).length);
    el.dataset.forecastSteps = String(state.forecast[symbol] ? state.forecast[symbol].steps.length : 0);
  }

  async function loadMetal(symbol) {
    const card = document.getElementById("metal-" + symbol);
    const from = new Date(Date.now() - HISTORY_H * 3600e3).toISOString();
    const notes = [];
    try {
      const hist = await getJSON(`/v1/prices/${symbol}/history?from=${encodeURIComponent(from)}`);
      state.history[symbol] = hist.points;
    } catch (e) { notes.push("history: " + e.message); state.history[symbol] = []; }
    try {
      const fc = await getJSON(`/v1/forecasts/${symbol}?horizon=${HORIZON}`);
      state.forecast[symbol] = fc;
      const m = fc.model;
      const calibrated = fc.interval_coverage != null;
      $('[data-field="model"]', card).innerHTML =
        `model: <b>v${m.version}</b> ${esc(m.family)} · trained ${fmtTime(m.trained_at)} UTC · cutoff ${fmtTime(fc.cutoff)}` +
        ` · <span title="${esc(fc.interval_method)}">intervals: ${calibrated ? "calibrated" : "model's own"}</span>` +
        (fc.stale_hours ? ` · <span class="status-partial">${fc.stale_hours} h behind the data</span>` : "");
    } catch (e) {
      state.forecast[symbol] = null;
      $('[data-field="model"]', card).textContent = "model: " + (e.status === 409 ? "none in production yet" : e.message);
    }
    $('[data-field="note"]', card).textContent = notes.join(" · ");
    draw(symbol);
  }

  // The production model's trust panel: candidate, version, pin, window, backtest figures.
  function renderProduction(items) {
    const bySym = Object.fromEntries(items.map((v) => [v.symbol, v]));
    for (const symbol of METALS) {
      const dl = $('[data-field="trust"]', document.getElementById("metal-" + symbol));
      const v = bySym[symbol];
      const set = (k, html) => { $(`[data-k="${k}"]`, dl).innerHTML = html; };
      if (!v) {
        dl.dataset.version = dl.dataset.candidate = dl.dataset.pinned = "";
        set("model", '<span class="muted">none in production yet</span>');
        ["window", "skill", "coverage"].forEach((k) => set(k, "–"));
        continue;
      }
      dl.dataset.version = String(v.version);
      dl.dataset.candidate = v.candidate || v.family;
      dl.dataset.pinned = String(v.pinned);
      const pin = v.pinned
        ? `<span class="badge pinned" title="${esc(`pinned by ${v.pinned_by} at ${fmtTime(v.pinned_at)} UTC: ${v.pin_reason || ""}`)}">pinned</span>`
        : '<span class="badge" title="champion/challenger decides at each training run">auto</span>';
      set("model", `<b>v${v.version}</b> ${esc(v.candidate || v.family)} ${pin}`);
      const hours = v.window_hours != null ? v.window_hours
        : Math.round((Date.parse(v.window_end) - Date.parse(v.window_start)) / 3600e3);
      const first = fmtTime(v.window_start), last = fmtTime(v.window_end);
      set("window", `${first} – ${last.slice(0, 10) === first.slice(0, 10) ? last.slice(11) : last}` +
        ` <span class="muted">(${hours} h, ${v.n_observations} values)</span>`);
      const s = (v.backtest && v.backtest.summary) || null;
      if (!s) {
        set("skill", '<span class="muted">no backtest</span>');
        set("coverage", '<span class="muted">uncalibrated</span>');
        continue;
      }
      const ratio = s.mae_ratio;
      const tone = ratio == null ? "" : ratio < 0.995 ? "good" : ratio > 1.005 ? "warn" : "";
      set("skill", `${fmtNum(s.mase, 3)} · <span class="${tone}"` +
        ` title="MAE over the naive last value's MAE">${ratio == null ? "–" : fmtNum(ratio, 2) + "× naive"}</span>` +
        ` <span class="muted">(${v.backtest.origins} origins)</span>`);
      const off = (c, nominal) => c == null || Math.abs(c - nominal) > 0.05 ? "warn" : "good";
      set("coverage", `<span class="${off(s.coverage_80, 0.8)}">${fmtPct(s.coverage_80)}</span> · ` +
        `<span class="${off(s.coverage_95, 0.95)}">${fmtPct(s.coverage_95)}</span>`);
    }
  }

  async function loadProduction() {
    try { renderProduction(await getJSON("/v1/models/production")); }
    catch (e) { METALS.forEach((symbol) => { $('[data-k="model"]', document.getElementById("metal-" + symbol)).textContent = e.message; }); }
  }

  function renderLatest(latest, freshness) {
    const bySym = Object.fromEntries(latest.map((p) => [p.symbol, p]));
    for (const symbol of METALS) {
      const p = bySym[symbol]; const card = document.getElementById("metal-" + symbol);
      $('[data-field="price"]', card).textContent = p ? "$" + fmtPrice(p.price) : "–";
      $('[data-field="age"]', card).textContent = p ? `${fmtAge(p.age_seconds)} old · ${p.source}` : "no data";
    }
    const hours = Object.fromEntries((freshness || []).map((f) => [f.symbol, f.last_hour]));
    $("#freshness tbody").innerHTML = latest.length ? latest.map((p) =>
      `<tr data-symbol="${esc(p.symbol)}"><td>${esc(p.symbol)}</td><td>${fmtTime(p.observed_at)}</td>` +
      `<td>${fmtAge(p.age_seconds)}</td><td>${esc(p.source)}</td><td>${fmtTime(hours[p.symbol])}</td></tr>`).join("")
      : '<tr><td colspan="5" class="muted">no prices yet</td></tr>';
  }

  function renderRuns(runs) {
    $("#runs tbody").innerHTML = runs.length ? runs.map((r) =>
      `<tr><td>#${r.id}</td><td>${fmtTime(r.started_at)}</td><td class="status-${esc(r.status)}">${esc(r.status)}</td>` +
      `<td>${r.duration_s == null ? "–" : r.duration_s.toFixed(1) + " s"}</td><td>${fmtTime(r.window_end)}</td><td>` +
      r.results.map((x) => `<span class="status-${esc(x.status)}" title="${esc(x.reason || "")}">${esc(x.symbol)}${x.version ? " v" + x.version : ""}</span>`).join(" ") +
      (r.error ? ` <span class="status-failed">${esc(r.error)}</span>` : "") + "</td></tr>").join("")
      : '<tr><td colspan="6" class="muted">no training runs yet</td></tr>';
  }

  function renderBackups(items) {
    $("#backups tbody").innerHTML = items.length ? items.map((b) =>
      `<tr><td>${esc(b.id)}</td><td class="status-${esc(b.status)}">${esc(b.status)}</td><td>${b.total_rows ?? "–"}</td>` +
      `<td>${b.models ?? "–"}</td><td>${fmtBytes(b.total_bytes)}</td>` +
      `<td class="status-${esc(b.verify_status || "")}">${b.verify_status ? esc(b.verify_status) + " " + fmtTime(b.verified_at) : "–"}</td></tr>`).join("")
      : '<tr><td colspan="6" class="muted">no backups yet</td></tr>';
  }

  async function refreshTables() {
    const [latest, freshness, runs, backups] = await Promise.all([
      getJSON("/v1/prices/latest").catch(() => []),
      getJSON("/v1/ops/freshness").catch(() => []),
      getJSON("/v1/models/training-runs?limit=8").catch(() => []),
      getJSON("/v1/ops/backups?limit=5").catch(() => []),
    ]);
    renderLatest(latest, freshness); renderRuns(runs); renderBackups(backups);
    $("#updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
  }

  function follow() {
    const pill = $("#stream-status");
    if (!window.EventSource || !LIVE) { pill.textContent = "live: off"; return; }
    const es = new EventSource("/v1/stream/ticks");
    es.addEventListener("hello", () => { pill.textContent = "live"; pill.className = "pill on"; });
    es.onerror = () => { pill.textContent = "live: reconnecting"; pill.className = "pill off"; };
    es.addEventListener("tick", (ev) => {
      const t = JSON.parse(ev.data);
      const card = document.getElementById("metal-" + t.symbol);
      if (!card || t.instrument !== "spot" || t.currency !== "USD") return;
      const el = $('[data-field="price"]', card);
      el.textContent = "$" + fmtPrice(t.price);
      el.classList.remove("flash"); void el.offsetWidth; el.classList.add("flash");
      $('[data-field="age"]', card).textContent = `just now · ${t.source}`;
      // Extend the history with the hour this tick belongs to (its last tick wins).
      const hour = new Date(t.observed_at); hour.setUTCMinutes(0, 0, 0);
      const hist = state.history[t.symbol] || (state.history[t.symbol] = []);
      const ts = hour.toISOString();
      const last = hist[hist.length - 1];
      if (last && Date.parse(last.ts) === hour.getTime()) last.price = t.price;
      else if (!last || Date.parse(last.ts) < hour.getTime()) hist.push({ ts, price: t.price });
      draw(t.symbol);
    });
    es.addEventListener("models", () => { METALS.forEach(loadMetal); loadProduction(); refreshTables(); });
    es.addEventListener("production", (ev) => {
      const p = JSON.parse(ev.data);
      if (METALS.includes(p.symbol)) loadMetal(p.symbol);
      loadProduction(); refreshTables();
    });
  }

  async function start() {
    await Promise.all([refreshTables(), loadProduction(), ...METALS.map(loadMetal)]);
    body.dataset.ready = "true";
    follow();
    setInterval(refreshTables, 30000);
  }
  window.addEventListener("resize", () => {
    for (const [symbol, chart] of Object.entries(charts)) {
      const el = document.getElementById("chart-" + symbol);
      chart.setSize({ width: Math.max(320, el.clientWidth), height: 260 });
    }
  });
  start().catch((e) => { body.dataset.ready = "error"; console.error(e); });
})();
