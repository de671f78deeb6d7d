// flexadr console: forms that call the admin API, and the live fleet charts.
"use strict";

// --- forms: <form data-api="/api/..." data-method="POST|PATCH" [data-next] [data-confirm]> ---
// Fields become a JSON body (data-type: int, number, bool, time; data-optional: left out
// when empty). The session cookie authenticates; the X-CSRF-Token header proves the page.
function formBody(form) {
  const body = {};
  for (const field of form.querySelectorAll("input[name], select[name]")) {
    const type = field.dataset.type;
    if (type === "bool") { if (field.checked) body[field.name] = true; continue; }
    const raw = field.value.trim();
    if (raw === "" && field.dataset.optional !== undefined) continue;
    if (type === "int") body[field.name] = parseInt(raw, 10);
    else if (type === "number") body[field.name] = Number(raw);
    else if (type === "time") body[field.name] = new Date(raw).toISOString();
    else body[field.name] = raw;
  }
  return body;
}

function problemText(answer) {
  // A dispatch-rule refusal (422) names each rule broken; other refusals give one error.
  if (!answer || typeof answer !== "object") return String(answer);
  if (Array.isArray(answer.violations)) {
    const rules = answer.violations.map((v) => `${v.rule}: ${v.message}`);
    return [...rules, answer.override].filter(Boolean).join(" · ");
  }
  return answer.error || "refused";
}

document.addEventListener("submit", async (submitted) => {
  const form = submitted.target;
  if (!form.dataset.api) return;
  submitted.preventDefault();
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
  const error = form.querySelector("[data-error]");
  if (error) { error.hidden = true; error.textContent = ""; }
  const response = await fetch(form.dataset.api, {
    method: form.dataset.method || "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": document.body.dataset.csrf},
    body: JSON.stringify(formBody(form)),
  });
  const answer = (response.headers.get("Content-Type") || "").includes("json")
    ? await response.json() : await response.text();
  if (!response.ok) {
    if (error) { error.textContent = `${response.status}: ${problemText(answer)}`; error.hidden = false; }
    return;
  }
  const next = form.dataset.next;
  if (next) window.location.assign(next.replace("{event_id}", answer.event_id || ""));
  else window.location.reload();
});

// --- live fleet figures ---------------------------------------------------------------
const charts = new Map();

function kw(value) {
  return value === null || value === undefined ? "—"
    : `${value.toLocaleString("en-US", {minimumFractionDigits: 1, maximumFractionDigits: 1})} kW`;
}

function chartData(e) {
  // The event's start and end are always on the x axis, so the target spans the event.
  const measured = new Map(e.series);
  const xs = [...new Set([...measured.keys(), e.start, e.end])].sort((a, b) => a - b);
  const inEvent = (x) => x >= e.start && x <= e.end;
  return [xs, xs.map((x) => (measured.has(x) ? measured.get(x) : null)),
          xs.map((x) => (inEvent(x) ? e.target_kw : null)), xs.map(() => e.baseline_kw)];
}

function drawChart(section, e) {
  const box = section.querySelector(".chart");
  if (!box || typeof uPlot === "undefined") return;
  const data = chartData(e);
  const existing = charts.get(e.event_id);
  if (existing) { existing.setData(data); return; }
  const width = Math.max(280, box.clientWidth || 600);
  charts.set(e.event_id, new uPlot({
    width, height: 240,
    series: [{}, {label: "delivered kW", stroke: "#0b63ce", width: 2, points: {show: true},
                  spanGaps: true},
             {label: "target kW", stroke: "#1b7f3b", dash: [6, 4]},
             {label: "baseline kW", stroke: "#8a5a00", dash: [2, 4]}],
    axes: [{}, {label: "kW"}],
  }, data, box));
}

function update(live, events) {
  const shown = [...live.querySelectorAll("[data-event]")].map((s) => s.dataset.event);
  const streamed = events.map((e) => e.event_id);
  if (live.dataset.stream && shown.join() !== streamed.join()) {
    window.location.reload();       // an event started, ended or appeared: lay the page out again
    return;
  }
  for (const e of events) {
    const section = live.querySelector(`[data-event="${CSS.escape(e.event_id)}"]`);
    if (!section) continue;
    for (const name of ["delivered_kw", "target_kw", "baseline_kw"]) {
      const cell = section.querySelector(`[data-field="${name}"]`);
      if (cell) cell.textContent = kw(e[name]);
    }
    const status = section.querySelector('[data-field="status"]');
    if (status) { status.textContent = e.status; status.className = `status status-${e.status}`; }
    for (const [name, count] of Object.entries(e.counts)) {
      const cell = section.querySelector(`[data-count="${name}"]`);
      if (cell) cell.textContent = count;
    }
    section.dataset.points = String(e.series.length);
    drawChart(section, e);
  }
  live.dataset.updates = String(Number(live.dataset.updates || 0) + 1);
}

window.addEventListener("resize", () => {
  for (const [eventId, chart] of charts) {
    const box = document.querySelector(`[data-event="${CSS.escape(eventId)}"] .chart`);
    if (box) chart.setSize({width: Math.max(280, box.clientWidth), height: 240});
  }
});

window.addEventListener("load", () => {      // after the stylesheet: charts get the box's width
  for (const box of document.querySelectorAll(".forecast-chart")) {
    const series = JSON.parse(box.dataset.series);
    new uPlot({width: Math.max(280, box.clientWidth), height: 220,
               series: [{}, {label: "load forecast MW", stroke: "#0b63ce", width: 2}],
               axes: [{}, {label: "MW"}]},
              [series.map((p) => p[0]), series.map((p) => p[1])], box);
  }
  const live = document.getElementById("live");
  if (!live) return;
  update(live, JSON.parse(live.dataset.initial || "[]"));
  if (live.dataset.stream) {
    const stream = new EventSource(live.dataset.stream);
    stream.onmessage = (message) => update(live, JSON.parse(message.data));
  }
});
