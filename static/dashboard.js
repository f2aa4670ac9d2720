/* The live dashboard: the latest orders as their statuses change, counts per status, throughput
 * per minute, and a form that submits an order and follows it to the end.
 *
 * Sources: GET /api/orders (a snapshot with metrics) and the /ws firehose (every order's
 * updates). The socket reconnects by itself with exponential backoff; every (re)connect fills the
 * gap from the API (the list, and each followed order in full), so nothing missed while the
 * server was away stays missing. To stay smooth with thousands of orders, updates are applied
 * once per animation frame and only the latest 200 orders (plus the followed ones) are kept.
 * Vanilla JS, no dependencies: the page must work where there is no internet.
 */
(() => {
  "use strict";

  const MAX_ROWS = 200;
  const MAX_TRACKED = 20000; // statuses remembered for the live counts
  const MAX_FOLLOWED = 20;
  const CHART_MINUTES = 30;
  const METRICS_EVERY_MS = 10000;
  const METRICS_SOON_MS = 1000; // after an order ends: the header's "last min" catches up
  const HEARTBEAT_MS = 15000;
  const SILENCE_LIMIT_MS = 40000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const STATUSES = ["pending", "routing", "building", "submitted", "confirmed", "failed", "cancelled", "expired"];
  const STEPS = ["pending", "routing", "building", "submitted", "confirmed"];
  const TERMINAL = new Set(["confirmed", "failed", "cancelled", "expired"]);

  // --- state ----------------------------------------------------------------------------------
  const state = {
    rows: new Map(), // orderId -> record (the table's rows, followed and selected orders)
    ids: [], // ids shown in the table, newest first
    known: new Map(), // orderId -> {status, seq, t}: what the counts were last adjusted for
    counts: Object.fromEntries(STATUSES.map((s) => [s, null])),
    metrics: null,
    following: loadFollowing(),
    selected: null,
    events: new Map(), // orderId -> events (followed and selected orders only)
    bins: new Map(), // minute start (ms) -> {confirmed, failed, live}
    counted: new Map(), // orderId -> true: already in the chart
    dirty: new Set(),
    countsDirty: true,
    chartDirty: true,
    detailDirty: false,
    rate: [], // timestamps (ms) of recent events, for events/s
    filter: null,
    needHydrate: new Set(),
    bumped: new Set(),
    frame: 0,
    chartAt: 0,
  };

  const conn = { ws: null, attempt: 0, timer: 0, countdown: 0, lastMessage: 0, everOpen: false, heartbeat: 0 };

  // --- small helpers --------------------------------------------------------------------------
  const $ = (sel) => document.querySelector(sel);
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function setText(el, text) {
    const value = text === null || text === undefined ? "" : String(text);
    if (el.textContent !== value) el.textContent = value;
  }

  const shortId = (id) => (id ? String(id).slice(0, 8) : "");
  const shortSig = (sig) => (sig && sig.length > 16 ? `${sig.slice(0, 6)}…${sig.slice(-6)}` : sig || "");

  /** A decimal string for a person: no trailing zeros, thousands grouped, never via a float. */
  function amount(text) {
    if (text === null || text === undefined || text === "") return "";
    let [whole, frac = ""] = String(text).split(".");
    frac = frac.replace(/0+$/, "");
    const neg = whole.startsWith("-");
    if (neg) whole = whole.slice(1);
    whole = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    if (frac.length > 9 && whole !== "0") frac = frac.slice(0, 9);
    return (neg ? "-" : "") + whole + (frac ? `.${frac}` : "");
  }

  const ms = (iso) => (iso ? Date.parse(iso) : NaN);

  function clockUTC(t) {
    const d = new Date(t);
    const p = (n) => String(n).padStart(2, "0");
    return `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
  }

  function duration(msValue) {
    if (!Number.isFinite(msValue) || msValue < 0) return "";
    if (msValue < 1000) return `${Math.round(msValue)} ms`;
    if (msValue < 60000) return `${(msValue / 1000).toFixed(msValue < 10000 ? 2 : 1)} s`;
    const m = Math.floor(msValue / 60000);
    if (m < 60) return `${m}m ${Math.floor((msValue % 60000) / 1000)}s`;
    return `${Math.floor(m / 60)}h ${m % 60}m`;
  }

  function remember(map, key, value, limit) {
    map.delete(key);
    map.set(key, value);
    if (map.size > limit) map.delete(map.keys().next().value);
  }

  function loadFollowing() {
    try {
      return new Set(JSON.parse(sessionStorage.getItem("oe.following") || "[]"));
    } catch (_) {
      return new Set();
    }
  }

  function saveFollowing() {
    try {
      sessionStorage.setItem("oe.following", JSON.stringify([...state.following].slice(-MAX_FOLLOWED)));
    } catch (_) {
      /* private mode: following lasts for this page only */
    }
  }

  async function api(path, options = {}) {
    const response = await fetch(path, {
      credentials: "same-origin",
      headers: { Accept: "application/json", ...(options.headers || {}) },
      ...options,
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { status: response.status, ok: response.ok, body, headers: response.headers };
  }

  // --- folding data into records --------------------------------------------------------------

  function isFinal(r) {
    return TERMINAL.has(r.status) && !(r.status === "failed" && r.willRetry);
  }

  /** Fold events into a watched order's list: each seq once, in order. An answer from the API
   * and the socket's updates can arrive in either order, and an event never changes once
   * written, so the union of the two is never wrong; an older answer only adds what it knows. */
  function addEvents(id, incoming) {
    const bySeq = new Map((state.events.get(id) || []).map((e) => [e.seq, e]));
    for (const e of incoming) bySeq.set(e.seq, e);
    const events = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
    state.events.set(id, events);
    return events;
  }

  const gapless = (events) => events.every((e, i) => e.seq === i + 1);

  /** An order as the API returns it (list item or detail with events). */
  function mergeOrder(o) {
    const id = o.orderId;
    let r = state.rows.get(id);
    chartFromOrder(o);
    const watched = state.following.has(id) || state.selected === id;
    if (watched && Array.isArray(o.events)) addEvents(id, o.events.map((e) => ({ ...e, orderId: id })));
    if (r && r.updatedAt && ms(o.updatedAt) < ms(r.updatedAt)) return r; // the socket is ahead
    if (!r) {
      if (!fits(o.createdAt) && !watched) return null;
      r = { id };
      state.rows.set(id, r);
    }
    if (!state.ids.includes(id) && (watched || fits(o.createdAt))) insertId(id, o.createdAt);
    Object.assign(r, {
      status: o.status,
      orderType: o.orderType,
      walletAddress: o.walletAddress,
      tokenIn: o.tokenIn,
      tokenOut: o.tokenOut,
      amountIn: o.amountIn,
      slippage: o.slippage,
      limitPrice: o.limitPrice,
      expiresAt: o.expiresAt,
      attempt: o.attempts,
      nextAttemptAt: o.nextAttemptAt,
      willRetry: o.status === "failed" && Boolean(o.nextAttemptAt),
      selectedDex: o.selectedDex,
      quote: o.quote,
      txHash: o.txHash,
      executedPrice: o.executedPrice,
      amountOut: o.amountOut,
      error: o.error,
      createdAt: o.createdAt,
      updatedAt: o.updatedAt,
      hydrated: true,
    });
    if (Array.isArray(o.events)) {
      r.lastSeq = o.events.length ? o.events[o.events.length - 1].seq : null;
    } else {
      r.lastSeq = null; // unknown: compare updates by time until an event tells
    }
    const seen = state.known.get(id);
    if (!seen || ms(o.updatedAt) >= seen.t) {
      remember(state.known, id, { status: o.status, seq: r.lastSeq, t: ms(o.updatedAt) }, MAX_TRACKED);
    }
    state.needHydrate.delete(id);
    touch(id);
    return r;
  }

  /** One update from the socket. */
  function applyEvent(ev) {
    const id = ev.orderId;
    const t = ms(ev.timestamp);
    state.rate.push(Date.now());
    countEvent(ev, t);
    chartFromEvent(ev, t);
    // The header's "confirmed/failed · last min" come from the server's snapshot, not from the
    // socket: fetch it soon after an order ends rather than at the next 10 s tick.
    if (TERMINAL.has(ev.status) && !ev.willRetry) scheduleMetrics(METRICS_SOON_MS);

    let r = state.rows.get(id);
    const watched = state.following.has(id) || state.selected === id;
    if (!r) {
      // A new order enters the table; an older one not shown only moves the counts.
      if (!(ev.seq === 1 && fits(ev.timestamp)) && !watched) return;
      r = { id, createdAt: ev.seq === 1 ? ev.timestamp : null, hydrated: false, lastSeq: null };
      state.rows.set(id, r);
      if (r.createdAt) insertId(id, r.createdAt);
      state.needHydrate.add(id);
      hydrateSoon();
    } else if (r.lastSeq !== null && r.lastSeq !== undefined ? ev.seq <= r.lastSeq : t < ms(r.updatedAt)) {
      return; // older than what the record already shows
    }
    r.status = ev.status;
    r.attempt = ev.attempt;
    r.updatedAt = ev.timestamp;
    r.lastSeq = ev.seq;
    if (ev.status === "routing") {
      r.txHash = null;
      r.error = null;
      r.willRetry = false;
    }
    if (ev.status === "pending" && ev.seq > 1) {
      r.error = null;
      r.willRetry = false;
    }
    if (ev.selectedDex) r.selectedDex = ev.selectedDex;
    if (ev.quote) {
      r.quote = ev.quote;
      const route = ev.quote.route || [];
      if (!r.tokenIn && route.length) {
        r.tokenIn = route[0];
        r.tokenOut = route[route.length - 1];
      }
      if (!r.amountIn && ev.quote.amountIn) r.amountIn = ev.quote.amountIn;
    }
    if (ev.txHash) r.txHash = ev.txHash;
    if (ev.status === "confirmed") {
      r.amountOut = ev.amountOut;
      r.executedPrice = ev.executedPrice;
    }
    if (ev.status === "failed") {
      r.error = ev.error;
      r.willRetry = Boolean(ev.willRetry);
      r.nextAttemptAt = ev.nextAttemptAt || null;
    }
    if (watched) {
      if (!gapless(addEvents(id, [ev]))) refetchOrder(id); // a gap: the database has it
      state.detailDirty = state.detailDirty || state.selected === id;
      if (isFinal(r) && state.following.has(id)) announce(r);
    }
    touch(id);
  }

  /** Keep the per-status counts moving between metric snapshots. */
  function countEvent(ev, t) {
    const seen = state.known.get(ev.orderId);
    if (seen) {
      const older = seen.seq !== null && seen.seq !== undefined ? ev.seq <= seen.seq : t < seen.t;
      if (older) return;
    }
    let previous = seen ? seen.status : inferPrevious(ev);
    if (previous === undefined) {
      previous = null;
      scheduleMetrics(1500); // a status we cannot infer: ask the server soon
    }
    if (previous !== ev.status && state.counts[ev.status] !== null) {
      if (previous && state.counts[previous] > 0) bump(previous, -1);
      bump(ev.status, +1);
    }
    remember(state.known, ev.orderId, { status: ev.status, seq: ev.seq, t }, MAX_TRACKED);
  }

  function inferPrevious(ev) {
    if (ev.seq === 1) return null; // a new order
    switch (ev.status) {
      case "routing":
        return ev.attempt > 1 ? "failed" : "pending";
      case "building":
        return "routing";
      case "submitted":
        return "building";
      case "confirmed":
        return "submitted";
      case "cancelled":
      case "expired":
        return "pending";
      case "failed":
        return ev.txHash ? "submitted" : undefined;
      default:
        return undefined; // pending again: a requeue, from failed or expired
    }
  }

  function bump(status, delta) {
    state.counts[status] = Math.max(0, (state.counts[status] || 0) + delta);
    state.countsDirty = true;
    if (delta > 0) state.bumped.add(status); // animated once per frame, in renderCounts
  }

  // --- the throughput chart's data ------------------------------------------------------------
  const minuteOf = (t) => Math.floor(t / 60000) * 60000;

  function addToChart(id, status, t, live) {
    if (!Number.isFinite(t) || state.counted.has(id)) return;
    remember(state.counted, id, true, MAX_TRACKED);
    const key = minuteOf(t);
    const bin = state.bins.get(key) || { confirmed: 0, failed: 0, live: false };
    bin[status] += 1;
    bin.live = bin.live || live;
    state.bins.set(key, bin);
    const oldest = minuteOf(Date.now()) - (CHART_MINUTES + 5) * 60000;
    for (const k of state.bins.keys()) if (k < oldest) state.bins.delete(k);
    state.chartDirty = true;
  }

  function chartFromEvent(ev, t) {
    if (ev.status === "pending" && ev.seq > 1) state.counted.delete(ev.orderId); // requeued
    if (ev.status === "confirmed") addToChart(ev.orderId, "confirmed", t, true);
    if (ev.status === "failed" && !ev.willRetry) addToChart(ev.orderId, "failed", t, true);
  }

  /** An order read from the API: seen after the fact, so drawn as backfill before page load. */
  function chartFromOrder(o) {
    if (o.status === "confirmed") addToChart(o.orderId, "confirmed", ms(o.updatedAt), false);
    if (o.status === "failed" && !o.nextAttemptAt) addToChart(o.orderId, "failed", ms(o.updatedAt), false);
  }

  // --- the table's membership -----------------------------------------------------------------

  function fits(createdAt) {
    if (state.ids.length < MAX_ROWS) return true;
    const last = state.rows.get(state.ids[state.ids.length - 1]);
    return !last || !last.createdAt || ms(createdAt) > ms(last.createdAt);
  }

  function insertId(id, createdAt) {
    if (state.ids.includes(id)) return;
    const t = ms(createdAt);
    let lo = 0;
    let hi = state.ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const other = state.rows.get(state.ids[mid]);
      if (ms(other && other.createdAt) > t) lo = mid + 1;
      else hi = mid;
    }
    state.ids.splice(lo, 0, id);
  }

  function touch(id) {
    state.dirty.add(id);
    schedule();
  }

  function trim() {
    let i = state.ids.length - 1;
    let excess = state.ids.length - MAX_ROWS;
    while (excess > 0 && i >= 0) {
      const id = state.ids[i];
      if (!state.following.has(id) && state.selected !== id) {
        state.ids.splice(i, 1);
        const r = state.rows.get(id);
        if (r && r.el) r.el.remove();
        state.rows.delete(id);
        state.events.delete(id);
        state.needHydrate.delete(id);
        excess -= 1;
      }
      i -= 1;
    }
  }

  // --- rendering ------------------------------------------------------------------------------

  function schedule() {
    if (!state.frame) state.frame = requestAnimationFrame(flush);
  }

  function flush() {
    state.frame = 0;
    trim();
    const body = $("#orders-body");
    // Flash changed rows only while it still means something to the eye.
    state.flashing = state.dirty.size <= 40;
    for (const id of state.dirty) {
      const r = state.rows.get(id);
      if (!r) continue;
      const index = state.ids.indexOf(id);
      if (index === -1) continue; // followed but never placed (no creation time yet)
      if (!r.el) {
        r.el = buildRow(r);
        const next = state.ids.slice(index + 1).map((n) => state.rows.get(n)).find((x) => x && x.el && x.el.isConnected);
        body.insertBefore(r.el, next ? next.el : null);
      }
      updateRow(r);
    }
    state.dirty.clear();
    $("#empty").hidden = state.ids.length > 0;
    if (state.countsDirty) renderCounts();
    if (state.chartDirty) {
      // The chart changes by the minute: redraw it at most twice a second, however busy.
      const wait = state.chartAt + 500 - performance.now();
      if (wait <= 0) {
        state.chartAt = performance.now();
        renderChart();
      } else if (!state.chartTimer) {
        state.chartTimer = setTimeout(() => {
          state.chartTimer = 0;
          schedule();
        }, wait);
      }
    }
    if (state.detailDirty) renderDetail();
  }

  function buildRow(r) {
    const tr = h("tr", { dataset: { orderId: r.id } });
    tr.cells_ = {
      created: h("td", { class: "time" }),
      id: h("td", {}, h("button", { type: "button", class: "id-btn", onclick: () => select(r.id) })),
      pair: h("td", { class: "pair" }),
      amountIn: h("td", { class: "num" }),
      status: h("td", {}, h("span", { class: "badge" })),
      route: h("td", { class: "route" }),
      out: h("td", { class: "num" }),
      sig: h("td", { class: "mono sig", tabindex: "0", onclick: () => copySig(r), onkeydown: (e) => e.key === "Enter" && copySig(r) }),
      time: h("td", { class: "num time" }),
    };
    tr.append(...Object.values(tr.cells_));
    return tr;
  }

  /** "raydium", "raydium 60% + meteora 40%", or "raydium → meteora · via SOL" for two hops. */
  function routeText(r) {
    const q = r.quote;
    if (!q) return { text: r.selectedDex || "", title: "" };
    const legs = q.legs || [];
    const path = (q.route || []).join(" → ");
    const hops = new Map();
    for (const l of legs) {
      const key = `${l.tokenIn}>${l.tokenOut}`;
      if (!hops.has(key)) hops.set(key, []);
      hops.get(key).push(l);
    }
    let text = [...hops.values()]
      .map((hop) => (hop.length > 1 ? hop.map((l) => `${l.dex} ${l.percent}%`).join(" + ") : hop[0].dex))
      .join(" → ");
    text = text || q.dex || r.selectedDex || "";
    if ((q.route || []).length > 2) text += ` · via ${q.route.slice(1, -1).join(", ")}`;
    const title = legs
      .map((l) => `${l.dex}: ${amount(l.inAmount)} ${l.tokenIn} → ${amount(l.outAmount)} ${l.tokenOut} (${l.percent}%)`)
      .join("\n");
    return { text, title: title ? `${path}\n${title}` : path };
  }

  /** An amount short enough for a table cell (the exact value goes in the tooltip). */
  function amountShort(text) {
    const full = amount(text);
    const [whole, frac] = full.split(".");
    if (!frac) return full;
    const digits = whole.replace(/[,-]/g, "");
    if (digits.length >= 4) return `${whole}.${frac.slice(0, 2)}`.replace(/\.$/, "");
    if (digits !== "0") return `${whole}.${frac.slice(0, 6)}`;
    const lead = frac.match(/^0*/)[0].length;
    return `${whole}.${frac.slice(0, lead + 6)}`;
  }

  function updateRow(r) {
    const c = r.el.cells_;
    const tr = r.el;
    tr.dataset.status = r.status || "";
    tr.classList.toggle("is-followed", state.following.has(r.id));
    tr.classList.toggle("is-selected", state.selected === r.id);
    tr.hidden = Boolean(state.filter) && r.status !== state.filter;
    setText(c.created, r.createdAt ? clockUTC(ms(r.createdAt)) : "");
    c.created.title = r.createdAt || "";
    const btn = c.id.firstChild;
    setText(btn, shortId(r.id));
    btn.title = `${r.id} — show its history`;
    btn.setAttribute("aria-label", `order ${shortId(r.id)}, show its history`);
    if (state.following.has(r.id) && !c.id.querySelector(".tag--follow")) {
      c.id.append(h("span", { class: "tag tag--follow", text: "yours" }));
    }
    setText(c.pair, r.tokenIn ? `${r.tokenIn} → ${r.tokenOut}` : "…");
    if (r.orderType && r.orderType !== "market") c.pair.append(h("span", { class: "tag", text: r.orderType }));
    c.pair.title = r.orderType ? `${r.orderType} order` : "";
    setText(c.amountIn, amountShort(r.amountIn));
    c.amountIn.title = amount(r.amountIn);
    const badge = c.status.firstChild;
    const retry = r.status === "failed" && r.willRetry ? " ↻" : "";
    const attempt = r.attempt > 1 ? ` ·${r.attempt}` : "";
    setText(badge, `${r.status || ""}${attempt}${retry}`);
    badge.dataset.status = r.status || "";
    badge.title = r.error ? `${r.error}${r.willRetry ? " (another attempt follows)" : ""}` : r.status || "";
    const route = routeText(r);
    setText(c.route, route.text);
    c.route.title = route.title;
    if (r.amountOut) {
      setText(c.out, amountShort(r.amountOut)); // the token is in the pair column
      c.out.className = "num";
      c.out.title = `${amount(r.amountOut)} ${r.tokenOut || ""}${r.executedPrice ? `, executed at ${amount(r.executedPrice)} ${r.tokenOut} per ${r.tokenIn}` : ""}`;
    } else if (r.quote && r.quote.amountOut && !TERMINAL.has(r.status)) {
      setText(c.out, `≈${amountShort(r.quote.amountOut)}`);
      c.out.className = "num expected";
      c.out.title = "quoted, not yet filled";
    } else {
      setText(c.out, "");
    }
    setText(c.sig, shortSig(r.txHash));
    c.sig.title = r.txHash ? `${r.txHash}\n(click to copy)` : "";
    updateTime(r);
    if (r.renderedStatus !== r.status) {
      if (r.renderedStatus !== undefined && state.flashing) flash(tr);
      r.renderedStatus = r.status;
    }
  }

  function updateTime(r) {
    if (!r.el) return;
    const start = ms(r.createdAt);
    const end = isFinal(r) ? ms(r.updatedAt) : Date.now();
    setText(r.el.cells_.time, duration(end - start));
    r.el.cells_.time.title = isFinal(r) ? "from submission to the final status" : "running";
  }

  const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");
  /** A custom property's current value (the theme follows the system, so read it when used). */
  function cssVar(name, el = document.documentElement) {
    return getComputedStyle(el).getPropertyValue(name).trim() || "transparent";
  }
  function flash(tr) {
    // The Web Animations API: no class juggling, no forced layout per row.
    if (reducedMotion.matches || !tr.animate) return;
    tr.animate([{ backgroundColor: cssVar("--flash") }, { backgroundColor: "transparent" }], { duration: 700, easing: "ease-out" });
  }

  function renderCounts() {
    state.countsDirty = false;
    for (const s of STATUSES) {
      const el = document.querySelector(`[data-count="${s}"]`);
      if (el) setText(el, state.counts[s] === null ? "–" : state.counts[s].toLocaleString("en-US"));
    }
    if (!reducedMotion.matches) {
      for (const s of state.bumped) {
        const value = document.querySelector(`[data-count="${s}"]`);
        if (value && value.animate) value.animate([{ color: cssVar("--tile-color", value) }, { color: cssVar("--text") }], { duration: 500, easing: "ease-out" });
      }
    }
    state.bumped.clear();
  }

  function renderMetrics() {
    const m = state.metrics;
    if (!m) return;
    setText($("#kpi-waiting"), m.queue ? m.queue.waiting : "–");
    setText($("#kpi-active"), m.queue ? m.queue.active : "–");
    setText($("#kpi-confirmed"), m.lastMinute ? m.lastMinute.confirmed : "–");
    setText($("#kpi-failed"), m.lastMinute ? m.lastMinute.failed : "–");
    const lat = m.latencyMs || {};
    setText($("#kpi-p50"), lat.p50 === null || lat.p50 === undefined ? "–" : duration(lat.p50));
    setText($("#kpi-p95"), lat.p95 === null || lat.p95 === undefined ? "–" : duration(lat.p95));
  }

  function renderChart() {
    state.chartDirty = false;
    const svg = $("#chart");
    const W = 720;
    const H = 132;
    const left = 34;
    const bottom = 16;
    const top = 8;
    const now = minuteOf(Date.now());
    const minutes = [];
    for (let i = CHART_MINUTES - 1; i >= 0; i -= 1) minutes.push(now - i * 60000);
    const data = minutes.map((m) => state.bins.get(m) || { confirmed: 0, failed: 0, live: false });
    const peak = Math.max(1, ...data.map((d) => d.confirmed + d.failed));
    const scaleMax = niceMax(peak);
    const plotH = H - bottom - top;
    const slot = (W - left) / CHART_MINUTES;
    const barW = Math.max(2, slot - 3);
    const ns = "http://www.w3.org/2000/svg";
    const el = (tag, attrs, text) => {
      const node = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      if (text !== undefined) node.textContent = text;
      return node;
    };
    const frag = document.createDocumentFragment();
    for (const frac of [0, 0.5, 1]) {
      const y = top + plotH - frac * plotH;
      frag.append(el("line", { class: "grid", x1: left, x2: W, y1: y, y2: y }));
      const tick = scaleMax * frac;
      frag.append(el("text", { class: "axis", x: left - 4, y: y + 3, "text-anchor": "end" }, Number.isInteger(tick) ? String(tick) : tick.toFixed(1)));
    }
    data.forEach((d, i) => {
      const x = left + i * slot + 1.5;
      const hc = (d.confirmed / scaleMax) * plotH;
      const hf = (d.failed / scaleMax) * plotH;
      const g = el("g", { class: d.live || minutes[i] >= minuteOf(loadedAt) ? "" : "backfill" });
      g.append(el("title", {}, `${clockUTC(minutes[i]).slice(0, 5)} UTC — ${d.confirmed} confirmed, ${d.failed} failed`));
      g.append(el("rect", { class: "bar-confirmed", x, width: barW, y: top + plotH - hc, height: Math.max(hc, 0) }));
      g.append(el("rect", { class: "bar-failed", x, width: barW, y: top + plotH - hc - hf, height: Math.max(hf, 0) }));
      // a transparent full-height target so the tooltip is reachable on empty minutes too
      g.append(el("rect", { x, width: barW, y: top, height: plotH, fill: "transparent" }));
      frag.append(g);
    });
    for (const [i, label] of [[0, `-${CHART_MINUTES}m`], [Math.floor(CHART_MINUTES / 2), `-${CHART_MINUTES / 2}m`], [CHART_MINUTES - 1, "now"]]) {
      const anchor = i === CHART_MINUTES - 1 ? "end" : i === 0 ? "start" : "middle";
      const x = left + i * slot + (anchor === "end" ? slot : anchor === "middle" ? slot / 2 : 0);
      frag.append(el("text", { class: "axis", x, y: H - 3, "text-anchor": anchor }, label));
    }
    svg.replaceChildren(frag);
    const current = data[data.length - 1];
    const previous = data[data.length - 2];
    setText(
      $("#chart-summary"),
      `This minute so far: ${current.confirmed} confirmed, ${current.failed} failed. ` +
        `Previous minute: ${previous.confirmed} confirmed, ${previous.failed} failed.`,
    );
  }

  /** A round top for the axis whose half is round too (2, 3, 4, 6, 8, 10 × a power of ten). */
  function niceMax(n) {
    if (n <= 2) return 2;
    const pow = 10 ** Math.floor(Math.log10(n));
    for (const m of [1, 2, 3, 4, 6, 8, 10]) if (m * pow >= n) return m * pow;
    return 10 * pow;
  }

  // --- the order panel ------------------------------------------------------------------------

  function select(id, { focusPanel = true } = {}) {
    state.selected = id;
    state.detailDirty = true;
    $("#detail-close").hidden = false;
    for (const r of state.rows.values()) if (r.el) r.el.classList.toggle("is-selected", r.id === id);
    refetchOrder(id);
    schedule();
    if (focusPanel && window.matchMedia("(max-width: 1100px)").matches) $("#detail-title").scrollIntoView({ block: "start" });
  }

  // orderId -> asked for again while its answer was on the way (that answer may be older than
  // what asked: it is fetched once more if the events still have a gap)
  const refetching = new Map();
  async function refetchOrder(id) {
    if (refetching.has(id)) {
      refetching.set(id, true);
      return;
    }
    try {
      for (let again = true; again; ) {
        refetching.set(id, false);
        const { ok, body, status } = await api(`/api/orders/${encodeURIComponent(id)}`);
        if (ok && body) {
          mergeOrder(body);
          if (state.selected === id) state.detailDirty = true;
          schedule();
        } else if (status === 404) {
          state.following.delete(id);
          state.needHydrate.delete(id); // nothing to fill it from: stop asking
          saveFollowing();
          return;
        }
        again = refetching.get(id) && state.events.has(id) && !gapless(state.events.get(id));
      }
    } catch (_) {
      /* offline: the next reconnect fills it */
    } finally {
      refetching.delete(id);
    }
  }

  function renderDetail() {
    state.detailDirty = false;
    const box = $("#detail");
    const id = state.selected;
    const r = id && state.rows.get(id);
    if (!r) {
      box.replaceChildren(h("p", { class: "muted", text: "Submit an order or select one in the table to follow it here, event by event." }));
      return;
    }
    const events = state.events.get(id) || [];
    const reached = (events.filter((e) => STEPS.includes(e.status)).pop() || {}).status;
    const stepIndex = STEPS.includes(r.status) ? STEPS.indexOf(r.status) : STEPS.indexOf(reached || "pending");
    const stopped = isFinal(r) && r.status !== "confirmed";
    const steps = h(
      "ol",
      { class: "steps", "aria-label": "progress" },
      STEPS.map((s, i) => {
        let cls = i < stepIndex ? "done" : i === stepIndex ? "current" : "";
        if (i === stepIndex && r.status === "confirmed") cls += " ok";
        if (i === stepIndex && stopped) cls += " bad";
        return h("li", { class: cls, "aria-current": i === stepIndex ? "step" : null, text: s });
      }),
    );
    const facts = h("dl", { class: "facts" });
    const fact = (label, value) => {
      if (value === null || value === undefined || value === "") return;
      facts.append(h("dt", { text: label }), h("dd", {}, value));
    };
    fact("status", h("span", { class: "badge", dataset: { status: r.status }, text: r.status + (r.willRetry ? " ↻" : "") }));
    fact("order", `${r.orderType || ""} · ${amount(r.amountIn)} ${r.tokenIn || ""} → ${r.tokenOut || ""}`);
    fact("slippage", r.slippage ? `${r.slippage} %` : "");
    fact("limit price", r.limitPrice ? amount(r.limitPrice) : "");
    fact("attempts", r.attempt ? String(r.attempt) : "");
    if (r.quote) {
      fact("route", `${routeText(r).text} · ${(r.quote.route || []).join(" → ")}`);
      fact("quoted out", `${amount(r.quote.amountOut)} (min ${amount(r.quote.minAmountOut)}) · impact ${r.quote.priceImpact} % · fee ${amount(r.quote.fee)}`);
    }
    if (r.amountOut) fact("filled", `${amount(r.amountOut)} ${r.tokenOut} at ${amount(r.executedPrice)}`);
    if (r.txHash) {
      fact(
        "signature",
        h("span", {}, h("code", { class: "mono", text: r.txHash }), " ", h("button", { type: "button", class: "copy", onclick: () => copySig(r), text: "copy" })),
      );
    }
    if (r.error) fact("error", `${r.error}${r.willRetry ? " — another attempt follows" : ""}`);
    if (r.createdAt) fact("created", `${r.createdAt}`);
    if (isFinal(r) && r.createdAt) fact("took", duration(ms(r.updatedAt) - ms(r.createdAt)));

    const legs = (r.quote && r.quote.legs) || [];
    const legTable = legs.length
      ? h(
          "table",
          { class: "legs" },
          h("caption", { class: "visually-hidden", text: "route legs" }),
          h("thead", {}, h("tr", {}, ["venue", "leg", "in", "out", "share"].map((t) => h("th", { scope: "col", text: t })))),
          h(
            "tbody",
            {},
            legs.map((l) =>
              h("tr", {}, h("td", { text: l.dex }), h("td", { text: `${l.tokenIn}→${l.tokenOut}` }), h("td", { text: amount(l.inAmount) }), h("td", { text: amount(l.outAmount) }), h("td", { text: `${l.percent}%` })),
            ),
          ),
        )
      : null;

    const start = r.createdAt ? ms(r.createdAt) : events.length ? ms(events[0].timestamp) : NaN;
    const list = h(
      "ol",
      { class: "events", "aria-label": "events" },
      events.map((e) =>
        h(
          "li",
          { dataset: { status: e.status } },
          h("div", { class: "ev-head" }, h("span", { class: "ev-seq", text: `#${e.seq}` }), h("span", { class: "ev-status", text: e.status }), h("span", { class: "ev-time", text: `+${duration(ms(e.timestamp) - start) || "0 ms"}`, title: e.timestamp })),
          h("div", { class: "ev-what", text: eventSummary(e) }),
        ),
      ),
    );
    const parts = [
      h(
        "div",
        { class: "detail__id" },
        h("code", { class: "mono", text: r.id }),
        state.following.has(r.id) ? h("span", { class: "tag tag--follow", text: "following" }) : null,
        h("a", { href: `/admin/orders/order/${r.id}/change/`, text: "open in admin" }),
      ),
      steps,
      facts,
      legTable,
      h("h3", { class: "visually-hidden", text: "events" }),
      list,
    ];
    box.replaceChildren(...parts.filter(Boolean));
  }

  function eventSummary(e) {
    switch (e.status) {
      case "pending":
        return e.seq === 1 ? "accepted" : e.requeuedBy ? `requeued by ${e.requeuedBy}` : "waiting";
      case "routing": {
        const quotes = (e.quotes || []).map((q) => `${q.dex} ${amount(q.amountOut)}`).join(" · ");
        return `chose ${e.selectedDex || (e.quote || {}).dex}: ${quotes}${e.reason ? ` — ${e.reason}` : ""}`;
      }
      case "building": {
        const tx = e.transaction || {};
        const kinds = (tx.instructions || []).map(instructionName);
        return `${kinds.length} instructions (${kinds.join(", ")}) · CU limit ${tx.computeUnitLimit ?? "?"} · priority fee ${tx.priorityFee ?? "?"} µlamports/CU`;
      }
      case "submitted":
        return `sent ${shortSig(e.txHash)}`;
      case "confirmed":
        return `filled ${amount(e.amountOut)} at ${amount(e.executedPrice)}`;
      case "failed":
        return `${e.errorCode || "error"}: ${e.error || ""}${e.willRetry ? " — retrying" : ""}`;
      default:
        return e.reason || "";
    }
  }

  function instructionName(ix) {
    switch (ix.instruction) {
      case "swap":
        return `swap ${ix.dex}`;
      case "transfer":
        return ix.purpose === "wrap SOL" ? "wrap SOL" : "transfer";
      case "closeAccount":
        return "unwrap";
      case "createAssociatedTokenAccountIdempotent":
        return "create ATA";
      case "assertMinimumOut":
        return "min-out check";
      default:
        return ix.instruction || "instruction";
    }
  }

  function announce(r) {
    const el = $("#form-status");
    el.dataset.kind = r.status === "confirmed" ? "ok" : "error";
    el.textContent = `Order ${shortId(r.id)} ${r.status}${r.amountOut ? `: ${amount(r.amountOut)} ${r.tokenOut}` : ""}${r.error ? ` — ${r.error}` : ""}.`;
  }

  async function copySig(r) {
    if (!r.txHash) return;
    try {
      await navigator.clipboard.writeText(r.txHash);
      const el = $("#form-status");
      el.dataset.kind = "";
      el.textContent = `Copied signature ${shortSig(r.txHash)}.`;
    } catch (_) {
      window.prompt("Signature", r.txHash);
    }
  }

  // --- the socket -----------------------------------------------------------------------------

  function setConn(kind, text) {
    const el = $("#conn");
    el.dataset.state = kind;
    setText(el, text);
  }

  function connect() {
    clearTimeout(conn.timer);
    clearInterval(conn.countdown);
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (_) {
      return reconnectLater();
    }
    conn.ws = ws;
    setConn(conn.everOpen ? "reconnecting" : "connecting", conn.everOpen ? "reconnecting…" : "connecting…");
    ws.onopen = () => {
      conn.attempt = 0;
      conn.everOpen = true;
      conn.lastMessage = Date.now();
      setConn("live", "live");
      fillGap();
      clearInterval(conn.heartbeat);
      conn.heartbeat = setInterval(() => {
        if (Date.now() - conn.lastMessage > SILENCE_LIMIT_MS) ws.close(4000, "silent");
        else if (ws.readyState === WebSocket.OPEN) ws.send('{"action":"ping"}');
      }, HEARTBEAT_MS);
    };
    ws.onmessage = (message) => {
      conn.lastMessage = Date.now();
      let data;
      try {
        data = JSON.parse(message.data);
      } catch (_) {
        return;
      }
      if (data.type === "order.update") applyEvent(data);
    };
    ws.onclose = () => {
      clearInterval(conn.heartbeat);
      if (conn.ws === ws) reconnectLater();
    };
    ws.onerror = () => {
      /* onclose follows and schedules the reconnect */
    };
  }

  function reconnectLater() {
    clearTimeout(conn.timer);
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** conn.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    conn.attempt += 1;
    const due = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      setConn(navigator.onLine === false ? "offline" : "reconnecting", `disconnected · retrying in ${left} s (attempt ${conn.attempt})`);
    };
    tick();
    clearInterval(conn.countdown);
    conn.countdown = setInterval(tick, 1000);
    conn.timer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (conn.ws && (conn.ws.readyState === WebSocket.OPEN || conn.ws.readyState === WebSocket.CONNECTING)) return;
    conn.attempt = 0;
    connect();
  }

  // --- filling from the API -------------------------------------------------------------------

  async function fillGap() {
    try {
      const [latest, confirmed] = await Promise.all([api(`/api/orders?limit=${MAX_ROWS}`), api(`/api/orders?status=confirmed&limit=${MAX_ROWS}`)]);
      if (latest.ok) takeList(latest.body);
      if (confirmed.ok) for (const o of confirmed.body.results || []) chartFromOrder(o);
    } catch (_) {
      return; // the socket will drop too; the next open tries again
    }
    await Promise.all([...state.following].map((id) => refetchOrder(id)));
    if (state.selected && !state.following.has(state.selected)) refetchOrder(state.selected);
    schedule();
  }

  function takeList(body) {
    if (!body) return;
    if (body.metrics) takeMetrics(body.metrics);
    // oldest first, so that the table's order is built from the bottom up
    for (const o of [...(body.results || [])].reverse()) mergeOrder(o);
  }

  function takeMetrics(metrics) {
    state.metrics = metrics;
    for (const s of STATUSES) state.counts[s] = (metrics.orders || {})[s] ?? 0;
    state.countsDirty = true;
    renderMetrics();
    schedule();
  }

  let metricsTimer = 0;
  function scheduleMetrics(delay) {
    if (metricsTimer) return;
    metricsTimer = setTimeout(async () => {
      metricsTimer = 0;
      try {
        const { ok, body } = await api("/api/orders?limit=1");
        if (ok && body && body.metrics) takeMetrics(body.metrics);
      } catch (_) {
        /* offline */
      }
    }, delay);
  }

  let hydrateTimer = 0;
  function hydrateSoon() {
    if (!hydrateTimer) {
      hydrateTimer = setTimeout(() => {
        hydrateTimer = 0;
        hydrate();
      }, 150);
    }
  }

  let hydrating = false;
  async function hydrate() {
    const missing = [...state.needHydrate].filter((id) => state.rows.has(id));
    state.needHydrate = new Set(missing);
    if (hydrating || !missing.length) return;
    hydrating = true;
    try {
      const { ok, body } = await api(`/api/orders?limit=${Math.min(MAX_ROWS, missing.length + 20)}`);
      if (ok) takeList(body);
      // whatever the newest page did not cover (an older order that came back to life)
      for (const id of [...state.needHydrate].slice(0, 5)) await refetchOrder(id);
    } catch (_) {
      /* offline */
    } finally {
      hydrating = false;
    }
  }

  // --- the form -------------------------------------------------------------------------------

  function formBody(form) {
    const data = Object.fromEntries(new FormData(form).entries());
    const body = {
      walletAddress: data.walletAddress.trim(),
      tokenIn: data.tokenIn.trim(),
      tokenOut: data.tokenOut.trim(),
      amountIn: data.amountIn.trim(),
      orderType: data.orderType,
    };
    if (data.slippage && data.slippage.trim()) body.slippage = data.slippage.trim();
    if (data.orderType === "limit" && data.limitPrice && data.limitPrice.trim()) body.limitPrice = data.limitPrice.trim();
    return body;
  }

  function showErrors(form, details) {
    for (const el of form.querySelectorAll(".field__error")) el.textContent = "";
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    for (const [field, message] of Object.entries(details || {})) {
      const slot = form.querySelector(`#e-${CSS.escape(field)}`);
      const input = form.querySelector(`[name="${CSS.escape(field)}"]`);
      if (slot) slot.textContent = Array.isArray(message) ? message.join(" ") : String(message);
      if (input) input.setAttribute("aria-invalid", "true");
    }
  }

  async function submitOrder(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const button = $("#submit-btn");
    const status = $("#form-status");
    const body = formBody(form);
    showErrors(form, {});
    button.disabled = true;
    status.dataset.kind = "";
    status.textContent = "Submitting…";
    try {
      localStorage.setItem("oe.wallet", body.walletAddress);
    } catch (_) {
      /* not essential */
    }
    const key = form.dataset.idempotencyKey || (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2));
    form.dataset.idempotencyKey = key; // a retried click of the same submission is one order
    try {
      const { ok, status: code, body: answer, headers } = await api("/api/orders/execute", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf(), "Idempotency-Key": key },
        body: JSON.stringify(body),
      });
      if (ok && answer && answer.orderId) {
        delete form.dataset.idempotencyKey;
        follow(answer);
        status.dataset.kind = "ok";
        status.textContent = `Order ${shortId(answer.orderId)} accepted (${answer.status}). Following it below.`;
      } else {
        delete form.dataset.idempotencyKey;
        const err = answer || {};
        showErrors(form, err.details);
        status.dataset.kind = "error";
        const retry = code === 429 && headers.get("Retry-After") ? ` Try again in ${headers.get("Retry-After")} s.` : "";
        status.textContent = `${err.message || `The server answered ${code}.`}${retry}`;
      }
    } catch (_) {
      status.dataset.kind = "error";
      status.textContent = "The server cannot be reached; the order was not sent. Submit again when the status says live.";
    } finally {
      button.disabled = false;
    }
  }

  function follow(order) {
    const id = order.orderId;
    state.following.add(id);
    while (state.following.size > MAX_FOLLOWED) state.following.delete(state.following.values().next().value);
    saveFollowing();
    state.selected = id;
    if (!state.events.has(id)) state.events.set(id, []);
    mergeOrder(order);
    state.detailDirty = true;
    $("#detail-close").hidden = false;
    for (const r of state.rows.values()) if (r.el) touch(r.id);
    schedule();
  }

  let quoteTimer = 0;
  let quoteSeq = 0;
  function previewQuote() {
    clearTimeout(quoteTimer);
    quoteTimer = setTimeout(async () => {
      const form = $("#order-form");
      const body = formBody(form);
      const out = $("#quote-preview");
      if (!body.tokenIn || !body.tokenOut || !body.amountIn || body.orderType === "sniper") {
        out.textContent = "";
        return;
      }
      const mine = ++quoteSeq;
      const params = new URLSearchParams({ tokenIn: body.tokenIn, tokenOut: body.tokenOut, amountIn: body.amountIn });
      try {
        const { ok, body: q } = await api(`/api/quote?${params}`);
        if (mine !== quoteSeq) return;
        if (ok && q.best) {
          const legs = (q.best.legs || []).map((l) => `${l.dex} ${l.percent}%`).join(" + ");
          out.textContent = `Best now: ≈${amount(q.best.amountOut)} ${q.tokenOut} via ${q.best.dex}${legs && q.best.dex === "split" ? ` (${legs})` : ""}, impact ${q.best.priceImpact} %`;
        } else {
          out.textContent = q && q.message ? `No quote: ${q.message}` : "";
        }
      } catch (_) {
        out.textContent = "";
      }
    }, 350);
  }

  // --- start ----------------------------------------------------------------------------------
  const loadedAt = Date.now();

  function start() {
    const form = $("#order-form");
    try {
      const wallet = localStorage.getItem("oe.wallet");
      if (wallet) form.walletAddress.value = wallet;
    } catch (_) {
      /* not essential */
    }
    form.addEventListener("submit", submitOrder);
    form.addEventListener("input", previewQuote);
    form.orderType.addEventListener("change", () => {
      $("#limit-field").hidden = form.orderType.value !== "limit";
    });
    previewQuote();
    $("#detail-close").addEventListener("click", () => {
      state.selected = null;
      state.detailDirty = true;
      $("#detail-close").hidden = true;
      for (const r of state.rows.values()) if (r.el) r.el.classList.remove("is-selected");
      schedule();
    });
    for (const tile of document.querySelectorAll(".tile")) {
      tile.addEventListener("click", () => setFilter(state.filter === tile.dataset.status ? null : tile.dataset.status));
    }
    $("#clear-filter").addEventListener("click", () => setFilter(null));
    window.addEventListener("online", reconnectNow);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") reconnectNow();
    });
    const everySecond = () => {
      const now = Date.now();
      setText($("#clock"), `${clockUTC(now)} UTC`);
      while (state.rate.length && state.rate[0] < now - 5000) state.rate.shift();
      setText($("#kpi-rate"), (state.rate.length / 5).toFixed(state.rate.length < 50 ? 1 : 0));
      for (const id of state.ids) {
        const r = state.rows.get(id);
        if (r && !isFinal(r)) updateTime(r);
      }
      if (minuteOf(now) !== renderChart.minute) {
        renderChart.minute = minuteOf(now);
        state.chartDirty = true;
        schedule();
      }
      hydrate();
    };
    everySecond();
    setInterval(everySecond, 1000);
    setInterval(() => scheduleMetrics(0), METRICS_EVERY_MS);
    renderChart();
    renderDetail();
    connect();
    if (state.following.size) state.selected = [...state.following].pop();
  }

  function setFilter(status) {
    state.filter = status;
    for (const tile of document.querySelectorAll(".tile")) tile.setAttribute("aria-pressed", String(tile.dataset.status === status));
    $("#clear-filter").hidden = !status;
    setText($("#rows-note"), status ? `only ${status}, among the latest 200` : "newest first, the latest 200 kept");
    for (const id of state.ids) state.dirty.add(id);
    schedule();
  }

  // For a curious operator's console, and the browser tests (which feed it synthetic updates).
  window.oeDashboard = { state, ingest: applyEvent };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
