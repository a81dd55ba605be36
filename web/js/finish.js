// The finish line: once the trainer says the target is reached (the live interval above
// it, resting on enough answers), a banner says so and offers the labels and the model;
// "Keep improving" puts it away for this task and target, in this browser.

import { percent, restsOn } from "./wording.js";

const $ = (id) => document.getElementById(id);
const KEY = "hitl.finish.kept-going.v1";
let admin = false;

function keyOf(status) {
  return `${status.label_id}|${status.target_f1}`;
}

function keptGoing(status) {
  try { return window.localStorage.getItem(KEY) === keyOf(status); } catch { return false; }
}

export function setFinishAdmin(isAdmin) { admin = isAdmin; }

export function renderFinish(status) {
  const banner = $("finish");
  const reached = Boolean(status && status.forecast && status.forecast.reached && status.model);
  // A model just trained has no estimate for a moment: the banner stays as it was.
  if (reached && !status.model.estimate && !banner.hidden) return;
  if (!reached || !status.model.estimate || keptGoing(status)) {
    banner.hidden = true;
    return;
  }
  const { model } = status;
  const e = model.estimate;
  banner.dataset.key = keyOf(status);
  banner.dataset.version = model.version;
  $("finish-text").textContent = `The model's F-score is ${percent(e.f1)} (90% interval ${percent(e.f1_low)}–${percent(e.f1_high)}), `
    + `all of it above the target ${percent(status.target_f1)}, measured on ${restsOn(e)} that never trained it. `
    + (admin ? "You can stop here: export the labels and download the model." : "You can stop here; an admin can export the labels and the model.");
  $("finish-model").href = `api/models/${encodeURIComponent(model.version)}?format=npz`;
  $("finish-model").textContent = `Download model ${model.version}`;
  for (const id of ["finish-export", "finish-model"]) $(id).hidden = !admin;
  banner.hidden = false;
}

$("finish-keep").addEventListener("click", () => {
  try { window.localStorage.setItem(KEY, $("finish").dataset.key || ""); } catch { /* shown again later */ }
  $("finish").hidden = true;
});
