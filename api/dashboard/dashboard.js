// Meterhouse usage dashboard: plain browser JavaScript, no build step, no dependencies.
//
// It calls the endpoints the SDKs call, with the API key the user typed (kept in this tab's
// sessionStorage only): GET /v1/meters for the meter list, POST /v1/meter-usage/analytics for
// usage (one request per aggregation type, each meter with its own type) and
// POST /v1/events/analytics for cost. Decimals stay the exact strings the API returns; sums
// are done on scaled BigInts, never on floats. Floats are used only to size the bars.
"use strict";

const KEY_STORAGE = "meterhouse.apiKey";
const CUSTOMERS_STORAGE = "meterhouse.customers";
const PALETTE = ["#2f6fde", "#e07b39", "#3a9d5d", "#a555c9", "#cf4466", "#2aa3a3", "#8a6d3b",
  "#5b6ee1"];

const $ = (id) => document.getElementById(id);
const state = { key: "", meters: [] };

// -- exact decimals -------------------------------------------------------------------------
function toScaled(text) {
  const negative = text.startsWith("-");
  const body = negative || text.startsWith("+") ? text.slice(1) : text;
  const [whole, fraction = ""] = body.split(".");
  const value = BigInt((whole || "0") + fraction);
  return { value: negative ? -value : value, scale: fraction.length };
}

function fromScaled(value, scale) {
  const negative = value < 0n;
  const digits = (negative ? -value : value).toString().padStart(scale + 1, "0");
  const whole = digits.slice(0, digits.length - scale);
  const fraction = scale ? digits.slice(digits.length - scale).replace(/0+$/, "") : "";
  const sign = negative && (whole !== "0" || fraction) ? "-" : "";
  return sign + whole + (fraction ? "." + fraction : "");
}

function addDecimals(texts) {
  const parsed = texts.filter((t) => t !== null && t !== undefined && t !== "").map(toScaled);
  const scale = parsed.reduce((most, p) => Math.max(most, p.scale), 0);
  let sum = 0n;
  for (const p of parsed) sum += p.value * 10n ** BigInt(scale - p.scale);
  return fromScaled(sum, scale);
}

// Thousands separators on the whole part, every fractional digit kept.
function formatDecimal(text) {
  const negative = text.startsWith("-");
  const [whole, fraction] = (negative ? text.slice(1) : text).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (negative ? "-" : "") + grouped + (fraction ? "." + fraction : "");
}

function formatMoney(text, currency) {
  return currency ? `${formatDecimal(text)} ${currency.toUpperCase()}` : formatDecimal(text);
}

// -- time zones -----------------------------------------------------------------------------
function isTimezone(zone) {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch (error) {
    return false;
  }
}

function wallClock(ms, zone) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(new Date(ms));
  const get = (type) => parts.find((p) => p.type === type).value;
  return {
    year: get("year"), month: get("month"), day: get("day"), hour: get("hour"),
    minute: get("minute"), second: get("second"),
  };
}

function offsetMs(ms, zone) {
  const w = wallClock(ms, zone);
  const asUtc = Date.UTC(+w.year, +w.month - 1, +w.day, +w.hour, +w.minute, +w.second);
  return asUtc - Math.floor(ms / 1000) * 1000;
}

// "YYYY-MM-DDTHH:MM" on the wall clock of `zone` -> epoch milliseconds.
function localToUtcMs(text, zone) {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(text);
  if (!match) return NaN;
  const [, y, mo, d, h, mi] = match.map(Number);
  const wall = Date.UTC(y, mo - 1, d, h, mi);
  const first = wall - offsetMs(wall, zone);
  return wall - offsetMs(first, zone);
}

function utcMsToLocalInput(ms, zone) {
  const w = wallClock(ms, zone);
  return `${w.year}-${w.month}-${w.day}T${w.hour}:${w.minute}`;
}

function isoMinute(ms) {
  return new Date(ms).toISOString().replace(/:\d{2}\.\d{3}Z$/, ":00Z");
}

function formatInstant(iso, zone) {
  const w = wallClock(Date.parse(iso), zone);
  return `${w.year}-${w.month}-${w.day} ${w.hour}:${w.minute}`;
}

// -- API ------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, body) {
    const message = body && body.message ? body.message : `HTTP ${status}`;
    super(message);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { "x-api-key": state.key, accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let payload = null;
  try {
    payload = await response.json();
  } catch (error) {
    payload = null;
  }
  if (!response.ok) throw new ApiError(response.status, payload);
  return payload;
}

function explain(error) {
  if (!(error instanceof ApiError)) {
    return `Could not reach the API (${error.message}). Is \`meterhouse serve\` running?`;
  }
  if (error.status === 401) {
    return `${error.message}\nCheck the API key: it must be one whose sha256 is in the ` +
      "catalog's api_keys (the demo's keys are in demo_data/api_keys.txt).";
  }
  if (error.status === 404) return `${error.message}\nCheck the customer's external id.`;
  if (error.status === 503) return `${error.message}\nThe warehouse is busy or not built; retry.`;
  return error.message;
}

// -- page state -----------------------------------------------------------------------------
// `state` on <body> (idle, loading, ready, error) lets scripts and tests wait for a result.
function setStatus(text, phase) {
  $("status").textContent = text;
  if (phase) document.body.dataset.state = phase;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

function rememberCustomer(customer) {
  const known = JSON.parse(sessionStorage.getItem(CUSTOMERS_STORAGE) || "[]");
  const next = [customer, ...known.filter((c) => c !== customer)].slice(0, 20);
  sessionStorage.setItem(CUSTOMERS_STORAGE, JSON.stringify(next));
  fillCustomerList();
}

function fillCustomerList() {
  const list = $("customer-list");
  list.replaceChildren();
  for (const customer of JSON.parse(sessionStorage.getItem(CUSTOMERS_STORAGE) || "[]")) {
    const option = document.createElement("option");
    option.value = customer;
    list.append(option);
  }
}

function fillTimezones() {
  const zones = typeof Intl.supportedValuesOf === "function"
    ? Intl.supportedValuesOf("timeZone") : [];
  const list = $("timezone-list");
  for (const zone of ["UTC", ...zones.filter((z) => z !== "UTC")]) {
    const option = document.createElement("option");
    option.value = zone;
    list.append(option);
  }
}

function applyDefaults() {
  const params = new URLSearchParams(window.location.search);
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const zone = params.get("timezone") || browserZone;
  $("timezone").value = zone;
  if (params.get("customer")) $("customer").value = params.get("customer");
  if (params.get("window") !== null) $("window").value = params.get("window");
  const day = 24 * 3600 * 1000;
  const tomorrow = localToUtcMs(utcMsToLocalInput(Date.now() + day, zone).slice(0, 10) +
    "T00:00", zone);
  $("start").value = params.get("start") || utcMsToLocalInput(tomorrow - 90 * day, zone);
  $("end").value = params.get("end") || utcMsToLocalInput(tomorrow, zone);
}

function renderMeterChoices(meters) {
  const wanted = new URLSearchParams(window.location.search).get("meters");
  const chosen = wanted ? new Set(wanted.split(",")) : null;
  const container = $("meters");
  container.replaceChildren();
  meters.forEach((meter) => {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = meter.id;
    box.checked = chosen ? chosen.has(meter.id) : true;
    label.append(box, `${meter.name} (${meter.aggregation.type})`);
    label.title = `${meter.id}: event ${meter.event_name}`;
    container.append(label);
  });
}

async function connect() {
  state.key = $("api-key").value.trim();
  if (!state.key) {
    showError("Enter an API key.");
    document.body.dataset.state = "error";
    return false;
  }
  showError("");
  setStatus("Connecting…", "loading");
  try {
    const page = await api("GET", "/v1/meters?limit=1000");
    state.meters = page.items;
  } catch (error) {
    setStatus("Not connected.", "error");
    showError(explain(error));
    $("query-form").hidden = true;
    return false;
  }
  sessionStorage.setItem(KEY_STORAGE, state.key);
  renderMeterChoices(state.meters);
  $("query-form").hidden = false;
  const tenant = state.meters.length ? ` of tenant ${state.meters[0].tenant_id}` : "";
  setStatus(`Connected: ${state.meters.length} meters${tenant}. Pick a customer and a range.`,
    "connected");
  return true;
}

function forget() {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = "";
  state.meters = [];
  $("api-key").value = "";
  $("query-form").hidden = true;
  $("results").hidden = true;
  showError("");
  setStatus("Key forgotten. Enter an API key to start.", "idle");
}

// -- the query ------------------------------------------------------------------------------
function readQuery() {
  const customer = $("customer").value.trim();
  const zone = $("timezone").value.trim();
  const meterIds = [...$("meters").querySelectorAll("input:checked")].map((b) => b.value);
  const problems = [];
  if (!customer) problems.push("Enter the customer's external id.");
  if (!meterIds.length) problems.push("Pick at least one meter.");
  if (!isTimezone(zone)) problems.push(`Unknown timezone "${zone}"; use an IANA name such as UTC or America/New_York.`);
  const startMs = isTimezone(zone) ? localToUtcMs($("start").value, zone) : NaN;
  const endMs = isTimezone(zone) ? localToUtcMs($("end").value, zone) : NaN;
  if (isTimezone(zone) && (Number.isNaN(startMs) || Number.isNaN(endMs))) {
    problems.push("Enter both ends of the range.");
  } else if (startMs >= endMs) {
    problems.push("The range must end after it starts.");
  }
  return {
    customer, zone, meterIds, problems, window: $("window").value,
    start: Number.isNaN(startMs) ? "" : isoMinute(startMs),
    end: Number.isNaN(endMs) ? "" : isoMinute(endMs),
  };
}

async function fetchUsage(query) {
  const meters = query.meterIds.map((id) => state.meters.find((m) => m.id === id));
  const byType = new Map();
  for (const meter of meters) {
    const type = meter.aggregation.type;
    byType.set(type, [...(byType.get(type) || []), meter.id]);
  }
  const common = {
    external_customer_id: query.customer, start_time: query.start, end_time: query.end,
  };
  if (query.window) common.window_size = query.window;
  const usageCalls = [...byType].map(([type, ids]) => api("POST", "/v1/meter-usage/analytics",
    { ...common, meter_ids: ids, aggregation_type: type }));
  const costCall = api("POST", "/v1/events/analytics", common);
  const [usageAnswers, costs] = await Promise.all([Promise.all(usageCalls), costCall]);
  const usageItems = new Map();
  for (const answer of usageAnswers) {
    for (const item of answer.items) usageItems.set(item.meter_id, item);
  }
  return meters.map((meter, index) => {
    const usage = usageItems.get(meter.id);
    const costItems = costs.items.filter((item) => item.meter_id === meter.id);
    const pointCosts = new Map();
    for (const item of costItems) {
      for (const point of item.points || []) {
        pointCosts.set(point.timestamp,
          addDecimals([pointCosts.get(point.timestamp) || "0", point.cost || "0"]));
      }
    }
    const currency = costItems.map((i) => i.currency).find((c) => c) || costs.currency || "";
    return {
      meter, color: PALETTE[index % PALETTE.length], usage, currency,
      totalCost: addDecimals(["0", ...costItems.map((i) => i.total_cost || "0")]),
      pointCosts,
      unit: costItems.map((i) => i.unit_plural || i.unit).find((u) => u) || "",
    };
  });
}

async function runQuery() {
  showError("");
  const query = readQuery();
  if (query.problems.length) {
    showError(query.problems.join("\n"));
    document.body.dataset.state = "error";
    return;
  }
  $("run").disabled = true;
  setStatus(`Loading usage of ${query.customer}…`, "loading");
  try {
    const results = await fetchUsage(query);
    rememberCustomer(query.customer);
    render(query, results);
    setStatus(`Usage of ${query.customer}, ${formatInstant(query.start, query.zone)} to ` +
      `${formatInstant(query.end, query.zone)} (${query.zone}).`, "ready");
  } catch (error) {
    $("results").hidden = true;
    setStatus("No results.", "error");
    showError(explain(error));
  } finally {
    $("run").disabled = false;
  }
}

// -- rendering ------------------------------------------------------------------------------
function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function svgElement(tag, attributes = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

const WINDOW_MS = {
  MINUTE: 60e3, "15MIN": 900e3, "30MIN": 1800e3, HOUR: 3600e3, "3HOUR": 3 * 3600e3,
  "6HOUR": 6 * 3600e3, "12HOUR": 12 * 3600e3, DAY: 86400e3, WEEK: 7 * 86400e3,
  MONTH: 30.44 * 86400e3,
};

// Bars on a time axis from the range's start to its end (windows without events leave a gap),
// stacked when a bar has several series. `bars`: [{t: epoch ms, label, parts: [{value:
// number, text, color, name}]}]; `options.domain`: [start ms, end ms]; `options.windowMs`.
function barChart(bars, options = {}) {
  const width = 640;
  const height = 200;
  const left = 84;
  const right = 8;
  const bottom = 24;
  const top = 10;
  const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": options.label || "chart" });
  const totals = bars.map((bar) => bar.parts.reduce((s, p) => s + Math.max(p.value, 0), 0));
  const lows = bars.map((bar) => bar.parts.reduce((s, p) => s + Math.min(p.value, 0), 0));
  const high = Math.max(0, ...totals);
  const low = Math.min(0, ...lows);
  const span = high - low || 1;
  const plot = height - top - bottom;
  const y = (value) => top + ((high - value) / span) * plot;
  svg.append(svgElement("line", { x1: left, x2: width - right, y1: y(0), y2: y(0),
    stroke: "#98a2b3" }));
  const axis = [[high, options.highText]];
  if (low !== high) axis.push([low, options.lowText]);
  if (high !== 0 && low !== 0) axis.push([0, "0"]);
  for (const [value, text] of axis) {
    const label = svgElement("text", { x: left - 6, y: y(value) + 4, "text-anchor": "end" });
    label.textContent = text !== undefined && value !== 0 ? text : String(value);
    svg.append(label);
  }
  const [from, to] = options.domain;
  const plotWidth = width - left - right;
  const xAt = (ms) => left + ((ms - from) / Math.max(to - from, 1)) * plotWidth;
  const barWidth = Math.max(1, (options.windowMs / Math.max(to - from, 1)) * plotWidth * 0.85);
  for (const bar of bars) {
    const x = Math.min(Math.max(xAt(bar.t), left), width - right - barWidth);
    let up = 0;
    let down = 0;
    for (const part of bar.parts) {
      const base = part.value >= 0 ? up : down;
      const tip = base + part.value;
      if (part.value >= 0) up = tip; else down = tip;
      const rect = svgElement("rect", {
        x, width: barWidth, y: Math.min(y(base), y(tip)),
        height: Math.max(Math.abs(y(base) - y(tip)), part.value === 0 ? 0 : 1), fill: part.color,
      });
      const title = svgElement("title");
      title.textContent = `${bar.label}${part.name ? ` · ${part.name}` : ""}: ${part.text}`;
      rect.append(title);
      svg.append(rect);
    }
  }
  const first = svgElement("text", { x: left, y: height - 6 });
  first.textContent = options.fromLabel || "";
  const last = svgElement("text", { x: width - right, y: height - 6, "text-anchor": "end" });
  last.textContent = options.toLabel || "";
  svg.append(first, last);
  return svg;
}

function timeAxis(query) {
  return {
    domain: [Date.parse(query.start), Date.parse(query.end)],
    windowMs: WINDOW_MS[query.window] || 3600e3,
    fromLabel: formatInstant(query.start, query.zone),
    toLabel: formatInstant(query.end, query.zone),
  };
}

// Axis labels only: six significant digits are enough to read a scale (cells stay exact).
function axisText(text) {
  const value = Number(text);
  if (value !== 0 && (Math.abs(value) >= 1e9 || Math.abs(value) < 1e-4)) {
    return value.toExponential(2);
  }
  return formatDecimal(String(Number(value.toPrecision(6))));
}

function maxText(texts) {
  let best = null;
  for (const text of texts) {
    if (best === null || Number(text) > Number(best)) best = text;
  }
  return best;
}

function renderSummary(results) {
  const cards = results.map((r) => {
    const usage = r.usage;
    const card = element("article", { class: "card", "data-meter": r.meter.id,
      style: `--swatch: ${r.color}` });
    card.append(
      element("h3", {}, r.meter.name),
      element("div", { class: "meta" }, `${r.meter.id} · ${r.meter.aggregation.type}`),
      element("div", { class: `big total-usage${usage.total_value.length > 14 ? " long" : ""}`,
        "data-value": usage.total_value },
        formatDecimal(usage.total_value)),
      element("dl", {},
        element("dt", {}, "events"),
        element("dd", { class: "event-count" }, String(usage.event_count)),
        element("dt", {}, "cost"),
        element("dd", { class: "total-cost", "data-value": r.totalCost },
          formatMoney(r.totalCost, r.currency))),
    );
    return card;
  });
  $("summary").replaceChildren(...cards);
}

function renderCharts(query, results) {
  const charts = results.map((r) => {
    const box = element("figure", { class: "chart usage-chart", "data-meter": r.meter.id });
    box.append(element("h3", {}, `${r.meter.name} `,
      element("span", { class: "muted" }, r.unit || r.meter.aggregation.type)));
    const points = r.usage.points || [];
    if (!query.window) {
      box.append(element("div", { class: "empty" }, "Pick a window size to see usage over time."));
    } else if (!points.length) {
      box.append(element("div", { class: "empty" }, "No usage in this range."));
    } else {
      const values = points.map((p) => p.value);
      const lowest = values.reduce((low, v) => (Number(v) < Number(low) ? v : low), "0");
      box.append(barChart(points.map((p) => ({
        t: Date.parse(p.timestamp),
        label: formatInstant(p.timestamp, query.zone),
        parts: [{ value: Number(p.value), text: `${p.value} (${p.event_count} events)`,
          color: r.color }],
      })), { ...timeAxis(query), label: `usage of ${r.meter.name}`,
        highText: axisText(maxText(values)), lowText: axisText(lowest) }));
    }
    return box;
  });
  $("usage-charts").replaceChildren(...charts);

  const currency = results.map((r) => r.currency).find((c) => c) || "";
  const total = addDecimals(["0", ...results.map((r) => r.totalCost)]);
  $("cost-total").textContent = `total ${formatMoney(total, currency)}`;
  $("cost-total").dataset.value = total;
  const stamps = [...new Set(results.flatMap((r) => [...r.pointCosts.keys()]))].sort();
  const box = element("figure", { class: "chart cost-chart" });
  box.append(element("h3", {}, "Cost by meter ", element("span", { class: "muted" },
    currency.toUpperCase())));
  if (!query.window) {
    box.append(element("div", { class: "empty" }, "Pick a window size to see cost over time."));
  } else if (!stamps.length || stamps.every((s) => results.every((r) =>
    Number(r.pointCosts.get(s) || "0") === 0))) {
    box.append(element("div", { class: "empty" },
      "No cost in this range."));
  } else {
    const perStamp = stamps.map((s) => addDecimals(results.map((r) => r.pointCosts.get(s) || "0")));
    box.append(barChart(stamps.map((s) => ({
      t: Date.parse(s),
      label: formatInstant(s, query.zone),
      parts: results.map((r) => ({ value: Number(r.pointCosts.get(s) || "0"), color: r.color,
        name: r.meter.name, text: formatMoney(r.pointCosts.get(s) || "0", currency) })),
    })), { ...timeAxis(query), label: "cost by meter",
      highText: axisText(maxText(perStamp)) }));
    box.append(element("div", { class: "legend" }, ...results.map((r) =>
      element("span", { style: `--swatch: ${r.color}` }, r.meter.name))));
  }
  $("cost-chart").replaceChildren(box);
}

function renderTable(query, results) {
  const rows = [];
  for (const r of results) {
    const usageAt = new Map((r.usage.points || []).map((p) => [p.timestamp, p]));
    const stamps = [...new Set([...usageAt.keys(), ...r.pointCosts.keys()])].sort();
    for (const stamp of stamps) {
      const point = usageAt.get(stamp);
      const cost = r.pointCosts.get(stamp) || "0";
      rows.push(element("tr", { "data-meter": r.meter.id, "data-timestamp": stamp },
        element("td", { title: stamp }, formatInstant(stamp, query.zone)),
        element("td", {}, r.meter.name),
        element("td", { class: "num usage" }, point ? formatDecimal(point.value) : "—"),
        element("td", { class: "num events" }, point ? String(point.event_count) : "—"),
        element("td", { class: "num cost" }, formatMoney(cost, r.currency))));
    }
    rows.push(element("tr", { class: "total", "data-meter": r.meter.id, "data-timestamp": "" },
      element("td", {}, "whole range"),
      element("td", {}, r.meter.name),
      element("td", { class: "num usage" }, formatDecimal(r.usage.total_value)),
      element("td", { class: "num events" }, String(r.usage.event_count)),
      element("td", { class: "num cost" }, formatMoney(r.totalCost, r.currency))));
  }
  $("usage-table").tBodies[0].replaceChildren(...rows);
}

function render(query, results) {
  $("range-label").textContent =
    `${query.customer} · ${formatInstant(query.start, query.zone)} → ` +
    `${formatInstant(query.end, query.zone)} ${query.zone}` +
    (query.window ? ` · ${query.window} windows` : "");
  renderSummary(results);
  renderCharts(query, results);
  renderTable(query, results);
  $("results").hidden = false;
}

// -- start ----------------------------------------------------------------------------------
async function start() {
  document.body.dataset.state = "idle";
  fillTimezones();
  fillCustomerList();
  applyDefaults();
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    await connect();
  });
  $("forget").addEventListener("click", forget);
  $("query-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    await runQuery();
  });
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) {
    $("api-key").value = saved;
    if (await connect() && $("customer").value) await runQuery();
  }
}

start();
