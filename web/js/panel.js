// The live panel: model quality against the target, counts, the learning curve and
// the extraction ETA, redrawn from each status the gateway pushes.

import {
  eta, f1Words, firstModelWords, forecastWords, percent, restsOn, targetWords, withInterval,
} from "./wording.js";

const $ = (id) => document.getElementById(id);

let uPlotModule = null;
let annotator = "";

// Whose agreement with the known answers the panel shows: the signed-in annotator's.
export function setAnnotator(name) { annotator = name; }
// Short enough for the chart, the ETA and the exports to show at 1280x800.
const CHART_HEIGHT = 150;
let chart = null;
let chartKey = "";

async function loadChartLibrary() {
  if (!uPlotModule) uPlotModule = import("/vendor/uplot/uPlot.esm.js").then((m) => m.default);
  return uPlotModule;
}

function text(id, value) { $(id).textContent = value; }

export function renderStatus(status, trainer) {
  const connection = $("connection");
  connection.dataset.state = trainer;
  connection.textContent = { up: "live", down: "server away", connecting: "connecting" }[trainer] || trainer;
  if (!status) return;

  const loading = status.loading || {};
  $("loading").hidden = loading.state !== "loading" && loading.state !== "failed";
  if (!$("loading").hidden) {
    text("loading-text", loading.state === "failed"
      ? `Loading stopped: ${loading.message || "unknown reason"} (${loading.items_loaded} items usable)`
      : `${loading.message || "Loading the dataset"}… ${loading.items_loaded.toLocaleString("en")} items`);
    const bar = $("loading-bar");
    if (loading.fraction >= 0) bar.value = loading.fraction; else bar.removeAttribute("value");
  }

  const target = status.target_f1 || 0.85;
  const estimate = status.model && status.model.estimate;
  text("f1", estimate ? percent(estimate.f1) : "–");
  text("f1-interval", estimate ? `90% interval ${percent(estimate.f1_low)}–${percent(estimate.f1_high)}` : "");
  text("target-text", status.model
    ? targetWords(estimate, target, status.forecast)
    : `target ${percent(target)}: ${firstModelWords(status.counts || {}, status.min_per_class)}`);
  text("f1-words", f1Words(estimate, (status.display_name || "the target").toLowerCase()));
  // The bar shows the interval, not only the point: where the model may really be.
  const bar = $("f1-bar");
  const low = estimate ? Math.max(0, Math.min(1, estimate.f1_low)) : 0;
  const high = estimate ? Math.max(0, Math.min(1, estimate.f1_high)) : 0;
  bar.style.marginLeft = `${low * 100}%`;
  bar.style.width = `${Math.max(0.5, (high - low) * 100)}%`;
  bar.dataset.reached = String(Boolean(estimate) && estimate.f1_low >= target);
  $("f1-point").style.left = `${estimate ? Math.min(100, estimate.f1 * 100) : 0}%`;
  $("f1-point").hidden = !estimate;
  $("target-mark").style.left = `${Math.min(100, target * 100)}%`;
  text("precision", estimate ? withInterval(estimate.precision, estimate.precision_low, estimate.precision_high) : "–");
  text("recall", estimate ? withInterval(estimate.recall, estimate.recall_low, estimate.recall_high) : "–");
  text("rests-on", restsOn(estimate));
  text("model-version", status.model ? `${status.model.version} (${status.model.labels} labels)` : "none yet");
  text("forecast", forecastWords(status.forecast));
  const pinned = Boolean(status.model && status.model.pinned);
  $("pinned-note").hidden = !pinned;
  if (pinned) text("pinned-note", `An admin pinned model ${status.model.version} in use: newer models are trained but not used until the pin is lifted.`);

  const c = status.counts || {};
  text("count-pos", (c.labelled_positive || 0).toLocaleString("en"));
  text("count-neg", (c.labelled_negative || 0).toLocaleString("en"));
  const own = (status.annotators || []).find((a) => a.annotator === annotator);
  text("gold", own && own.gold_checks ? `${own.gold_agreements} of ${own.gold_checks} agree` : "–");
  text("passes", `${(c.skipped || 0).toLocaleString("en")} / ${(c.unsure || 0).toLocaleString("en")}`);
  text("corrected", c.reviewed
    ? `${(c.corrected || 0).toLocaleString("en")} of ${c.reviewed.toLocaleString("en")} reviewed`
    : (c.corrected || 0).toLocaleString("en"));
  text("eta", eta(status.extraction));
  renderCurve(status.learning_curve || [], target, c);
}

// The annotator's own agreement: with their earlier answers on images shown again, and
// with the known answers of check images (Cohen's kappa once it is defined).
export function renderAgreement(status, annotator) {
  const mine = status && (status.annotators || []).find((a) => a.annotator === annotator);
  if (!mine || (!mine.rechecks && !mine.gold_checks)) { text("consistency", "–"); return; }
  const parts = [];
  if (mine.rechecks) {
    const kappa = mine.self_kappa === null ? "" : `, κ ${mine.self_kappa.toFixed(2)}`;
    parts.push(`${mine.recheck_agreements} of ${mine.rechecks} repeated${kappa}`);
  }
  if (mine.gold_checks && mine.gold_kappa !== null) parts.push(`checks κ ${mine.gold_kappa.toFixed(2)}`);
  text("consistency", parts.join("; ") || "–");
}

function renderCurve(curve, target, counts) {
  // Every model is scored again with every answer there is now: the curve is the live
  // estimate's, against every label given.
  const points = curve.filter((p) => p.estimate);
  const hint = $("chart-hint");
  if (points.length === 0) {
    hint.hidden = false;
    hint.textContent = `The learning curve appears once there is a model and the first check answers (labels now: ${counts.labelled_positive || 0} yes, ${counts.labelled_negative || 0} no).`;
    return;
  }
  hint.hidden = true;
  const x = (p) => p.labels_given || p.labels;
  const key = JSON.stringify(points.map((p) => [x(p), p.estimate.f1, p.estimate.f1_low])) + target;
  if (key === chartKey) return;
  chartKey = key;
  // The curve starts at 0 labels so that the target line is drawn even with one model.
  const xs = [0, ...points.map(x)];
  const data = [xs, [null, ...points.map((p) => p.estimate.f1)],
    [null, ...points.map((p) => p.estimate.f1_low)], [null, ...points.map((p) => p.estimate.f1_high)],
    xs.map(() => target)];
  loadChartLibrary().then((uPlot) => {
    const box = $("chart");
    const width = Math.max(200, box.clientWidth || 280);
    if (chart) { chart.setData(data); chart.setSize({ width, height: CHART_HEIGHT }); return; }
    chart = new uPlot({
      width, height: CHART_HEIGHT,
      scales: { x: { time: false }, y: { range: [0, 1] } },
      axes: [{ label: "labels given" }, { label: "F-score" }],
      legend: { show: false },
      series: [
        { label: "labels" },
        { label: "F", stroke: "#2563eb", width: 2, points: { show: true, size: 5 } },
        { label: "low", stroke: "#93c5fd", width: 1, points: { show: false } },
        { label: "high", stroke: "#93c5fd", width: 1, points: { show: false } },
        { label: "target", stroke: "#16a34a", width: 1, dash: [6, 4], points: { show: false } },
      ],
      bands: [{ series: [3, 2], fill: "rgba(37, 99, 235, 0.12)" }],
    }, data, box);
    box.dataset.ready = "true";
  }).catch(() => {
    hint.hidden = false;
    hint.textContent = "The chart library could not be loaded (run make install).";
  });
}

// The F-score in plain words: shown while the pointer is over its name, and toggled by a
// click or tap (or Enter) for those without a pointer.
function setHelp(open) {
  $("f1-words").hidden = !open;
  $("f1-help").setAttribute("aria-expanded", String(open));
}

$("f1-help").addEventListener("click", () => setHelp($("f1-words").hidden));
$("f1-help").addEventListener("mouseenter", () => setHelp(true));
$("f1-help").addEventListener("mouseleave", () => setHelp(false));
