// The models page (admins): every kept model with its live estimate, labels and time,
// which one is in use and whether it is pinned; use (pin) one, unpin, download.

import { api, request } from "./api.js";
import { percent, withInterval } from "./wording.js";

const $ = (id) => document.getElementById(id);
let busy = false;

function showError(message) {
  const line = document.createElement("p");
  line.className = "error";
  line.textContent = message;
  $("errors").replaceChildren(line);
}

window.addEventListener("hitl:unauthenticated", () => { window.location.assign("/login"); });

function when(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
}

function f1Of(metrics) {
  if (!metrics || metrics.f1 === null) return "–";
  return `${percent(metrics.f1)} (${metrics.positives} yes, ${metrics.negatives} no)`;
}

function row(list, term, value) {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.textContent = value;
  list.append(dt, dd);
}

function badge(text, kind) {
  const span = document.createElement("span");
  span.className = `badge ${kind}`;
  span.textContent = text;
  return span;
}

function link(text, href, label) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  a.setAttribute("download", "");
  a.setAttribute("aria-label", label);
  return a;
}

function card(model, newest, pinned) {
  const li = document.createElement("li");
  li.className = "model-card";
  li.dataset.version = model.version;
  li.dataset.active = String(model.active);
  const title = document.createElement("h3");
  title.append(model.version);
  if (model.active) title.append(badge(pinned ? "in use, pinned" : "in use", pinned ? "pinned" : "in-use"));
  if (model.version === newest) title.append(badge("newest", ""));
  if (!model.compatible) title.append(badge("other features", "stale"));
  const facts = document.createElement("dl");
  const e = model.estimate;
  row(facts, "Trained", when(model.create_time));
  row(facts, "Labels", `${model.labels.total} (${model.labels.positive} yes, ${model.labels.negative} no)`);
  row(facts, "Live F-score", e ? withInterval(e.f1, e.f1_low, e.f1_high) : "not measured yet");
  row(facts, "Measured on", e ? `${e.labels} answers` : "–");
  row(facts, "Validation F1", f1Of(model.validation));
  row(facts, "Evaluation F1", f1Of(model.evaluation));
  const actions = document.createElement("div");
  actions.className = "model-actions";
  if (!model.active && model.compatible) {
    const use = document.createElement("button");
    use.type = "button";
    use.className = "use";
    use.textContent = model.version === newest ? "Use (unpins)" : "Use and pin";
    use.setAttribute("aria-label", `${use.textContent}: model ${model.version}`);
    use.addEventListener("click", () => act(() => request("POST", `api/models/${model.version}/activate`)));
    actions.append(use);
  }
  actions.append(link("Download .npz", `${model.download_url}?format=npz`, `Download .npz of model ${model.version}`),
                 link("Download .json", `${model.download_url}?format=json`, `Download .json of model ${model.version}`));
  li.append(title, facts, actions);
  return li;
}

function render(body) {
  const models = body.models || [];
  const active = models.find((m) => m.active);
  const newest = (models.find((m) => m.compatible) || {}).version;
  const box = document.querySelector(".pin-state");
  box.dataset.pinned = String(body.pinned);
  $("unpin").hidden = !body.pinned;
  if (!models.length) $("pin-text").textContent = "No model yet: the first one is trained once there are enough yes and no answers.";
  else if (body.pinned && active) $("pin-text").textContent = `${active.version} is pinned in use: newer models (newest ${newest}) are trained and kept but not used until the pin is lifted.`;
  else if (active) $("pin-text").textContent = `${active.version}, the newest model, is in use; each new model is used as soon as it is trained.`;
  else $("pin-text").textContent = "No kept model fits the features the feature service gives now.";
  $("model-list").replaceChildren(...models.map((m) => card(m, newest, body.pinned)));
  $("model-list").dataset.loaded = "true";
}

async function load() {
  try {
    render(await request("GET", "api/models"));
  } catch (err) {
    $("pin-text").textContent = err.status === 403
      ? "The models are for admins: ask one to give you the admin role."
      : "The models could not be loaded.";
    if (err.status !== 403) showError(`Could not load the models: ${err.message}`);
  }
}

async function act(call) {
  if (busy) return;
  busy = true;
  try {
    await call();
    $("errors").replaceChildren();
  } catch (err) {
    showError(err.message);
  } finally {
    busy = false;
  }
  await load();
}

$("unpin").addEventListener("click", () => act(() => request("DELETE", "api/models/pin")));

async function start() {
  try {
    const session = await api.session();
    if (!session.annotator && session.auth_required) { window.location.assign("/login"); return; }
  } catch (err) {
    showError(`The gateway cannot be reached (${err.message}).`);
  }
  await load();
  // A model trained while the page is open shows up without a reload.
  setInterval(() => { if (!busy && document.visibilityState === "visible") load(); }, 15000);
}

start();
