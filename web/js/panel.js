// The live panel: model quality against the target, counts, the learning curve and
// the extraction ETA, redrawn from each status the gateway pushes.

import { eta, percent } from "./wording.js";

const $ = (id) => document.getElementById(id);

let uPlotModule = null;
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
  const validation = status.model && status.model.validation;
  const f1 = validation ? validation.f1 : null;
  text("f1", f1 === null ? "–" : percent(f1));
  text("target-text", f1 === null
    ? `target ${percent(target)}: no model yet`
    : f1 >= target ? `target ${percent(target)} reached` : `target ${percent(target)}: ${percent(target - f1)} to go`);
  $("f1-bar").style.width = `${Math.min(100, Math.max(0, (f1 || 0) * 100))}%`;
  $("f1-bar").dataset.reached = String(f1 !== null && f1 >= target);
  $("target-mark").style.left = `${Math.min(100, target * 100)}%`;
  text("precision", validation ? percent(validation.precision) : "–");
  text("recall", validation ? percent(validation.recall) : "–");
  text("auc", validation && validation.roc_auc ? percent(validation.roc_auc) : "–");
  text("model-version", status.model ? `${status.model.version} (${status.model.labels} labels)` : "none yet");

  const c = status.counts || {};
  text("count-pos", (c.labelled_positive || 0).toLocaleString("en"));
  text("count-neg", (c.labelled_negative || 0).toLocaleString("en"));
  text("gold", c.gold_checks ? `${c.gold_agreements} of ${c.gold_checks} agree` : "–");
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
  const points = curve.filter((p) => p.validation);
  const hint = $("chart-hint");
  if (points.length === 0) {
    hint.hidden = false;
    hint.textContent = `The learning curve appears once both answers have 5 labels (now ${counts.labelled_positive || 0} and ${counts.labelled_negative || 0}).`;
    return;
  }
  hint.hidden = true;
  const key = JSON.stringify(points.map((p) => [p.labels, p.validation.f1])) + target;
  if (key === chartKey) return;
  chartKey = key;
  // The curve starts at 0 labels so that the target line is drawn even with one model.
  const xs = [0, ...points.map((p) => p.labels)];
  const data = [xs, [null, ...points.map((p) => p.validation.f1)], xs.map(() => target)];
  loadChartLibrary().then((uPlot) => {
    const box = $("chart");
    const width = Math.max(200, box.clientWidth || 280);
    if (chart) { chart.setData(data); chart.setSize({ width, height: 180 }); return; }
    chart = new uPlot({
      width, height: 180,
      scales: { x: { time: false }, y: { range: [0, 1] } },
      axes: [{ label: "labels" }, { label: "F-score" }],
      legend: { show: false },
      series: [
        { label: "labels" },
        { label: "F", stroke: "#2563eb", width: 2, points: { show: true, size: 5 } },
        { label: "target", stroke: "#16a34a", width: 1, dash: [6, 4], points: { show: false } },
      ],
    }, data, box);
    box.dataset.ready = "true";
  }).catch(() => {
    hint.hidden = false;
    hint.textContent = "The chart library could not be loaded (run make install).";
  });
}
