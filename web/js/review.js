// The review view: the dataset's unlabelled images by predicted probability (the most
// likely positives, or the borderline), answered with the annotation page's keys, with
// each card's buttons, or on a phone by swiping a card (right yes, left no). An answer
// that agrees with the prediction confirms it, one that does not corrects it; both are
// ordinary annotations, delivered through the same outbox.

import { api, deliver, newId, request, TASK } from "./api.js";
import { safeImageUrl } from "./deck.js";
import { showError } from "./errors.js";
import { bindKeys } from "./keys.js";
import { chooseName } from "./name.js";
import { Outbox, queueKey } from "./outbox.js";
import { swipeable } from "./swipe.js";

const $ = (id) => document.getElementById(id);
const PAGE = 60;
const LOAD_AHEAD = 12;

const state = {
  order: "most_likely",
  cards: [],            // {item, li, answer, verdict, annotationId}
  token: null,
  loading: null,
  exhausted: false,
  focus: 0,
  modelVersion: "",
  task: "the target",
  history: [],          // answered cards, newest last, for undo
  shownAt: performance.now(),
  annotator: "",
  noModel: false,
};

window.addEventListener("hitl:unauthenticated", () => { window.location.assign("/login"); });

// --- delivery ----------------------------------------------------------------------

async function send(op) {
  try {
    return await deliver(op);
  } catch (err) {
    if (err.code !== "no_annotator" || !state.annotator) throw err;
    await api.setAnnotator(state.annotator);
    return deliver(op);
  }
}

function renderPending(box) {
  $("pending").dataset.count = String(box.pending);
  $("pending").textContent = `${box.pending} pending`;
}

const outbox = new Outbox({
  send,
  onDelivered: () => {},
  onFailed: (op, err) => showError(`An answer was refused by the server and dropped: ${err.message}`),
  onChange: renderPending,
  key: queueKey(TASK),
});

// --- the list ----------------------------------------------------------------------

function card(item) {
  const li = document.createElement("li");
  li.className = "card";
  li.dataset.itemId = item.id;
  li.dataset.probability = String(item.probability);
  const img = document.createElement("img");
  img.alt = "";
  img.loading = "lazy";
  img.src = safeImageUrl(item.thumbnail_url);
  const verdict = document.createElement("span");
  verdict.className = "verdict";
  const meta = document.createElement("div");
  meta.className = "meta";
  const p = document.createElement("span");
  p.className = "probability";
  p.textContent = item.probability.toFixed(3);
  const predicted = document.createElement("span");
  predicted.className = "predicted";
  predicted.dataset.decision = item.decision;
  predicted.textContent = item.decision === "positive" ? "yes" : "no";
  predicted.title = "the model's decision";
  meta.append(p, predicted);
  const buttons = document.createElement("div");
  buttons.className = "card-answers";
  const entry = { item, li, answer: null, verdict: null, annotationId: null };
  const index = () => state.cards.indexOf(entry);
  for (const [value, text] of [["positive", "Yes"], ["negative", "No"]]) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = value === "positive" ? "yes" : "no";
    button.dataset.answer = value;
    button.textContent = text;
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      focusOn(index(), false);
      answer(value);
    });
    buttons.append(button);
  }
  li.tabIndex = 0;
  li.setAttribute("aria-label", `Image predicted ${predicted.textContent}, probability ${p.textContent}`);
  li.append(img, verdict, meta, buttons);
  li.addEventListener("click", () => focusOn(index(), false));
  li.addEventListener("focus", () => { if (state.cards[state.focus] !== entry) focusOn(index(), false); });
  swipeable(li, (value) => { focusOn(index(), false); answer(value); });
  return entry;
}

async function loadMore() {
  if (state.loading || state.exhausted) return state.loading;
  const token = state.token ? `&page_token=${encodeURIComponent(state.token)}` : "";
  state.loading = request("GET", `api/predictions/review?order=${state.order}&limit=${PAGE}${token}`)
    .then((page) => {
      state.noModel = false;
      state.modelVersion ||= page.model_version;
      $("model-line").textContent = `Model ${page.model_version}: ${page.total.toLocaleString("en")} unlabelled images, decision at ${page.threshold}.`;
      const known = new Set(state.cards.map((c) => c.item.id));
      for (const item of page.items) {
        if (known.has(item.id)) continue;
        const entry = card(item);
        state.cards.push(entry);
        $("cards").append(entry.li);
      }
      state.token = page.next_page_token;
      state.exhausted = !page.next_page_token;
      $("list-end").textContent = state.exhausted ? (state.cards.length ? "End of the list." : "Nothing to review.") : "";
      $("cards").dataset.loaded = "true";
      if (state.cards.length && !$("cards").querySelector(".focused")) focusOn(0);
    })
    .catch((err) => {
      state.noModel = err.status === 409;
      $("model-line").textContent = state.noModel ? `No model yet: ${err.message}` : "";
      if (err.status !== 409) showError(`Could not load the list: ${err.message}`);
    })
    .finally(() => { state.loading = null; });
  return state.loading;
}

function reset(order) {
  state.order = order;
  state.cards = [];
  state.token = null;
  state.exhausted = false;
  state.focus = 0;
  state.modelVersion = "";
  $("cards").replaceChildren();
  $("cards").dataset.loaded = "false";
  $("newer").hidden = true;
  for (const tab of document.querySelectorAll(".tab")) tab.setAttribute("aria-pressed", String(tab.dataset.order === order));
  loadMore();
}

// `moveFocus`: also move the keyboard focus (keys and answers do; a click or tap has
// put it there already).
function focusOn(index, moveFocus = true) {
  if (index < 0 || index >= state.cards.length) return;
  state.cards[state.focus]?.li.classList.remove("focused");
  state.focus = index;
  const { li } = state.cards[index];
  li.classList.add("focused");
  if (moveFocus && document.activeElement && document.activeElement.closest(".cards")) li.focus({ preventScroll: true });
  li.scrollIntoView({ block: "nearest" });
  state.shownAt = performance.now();
  if (state.cards.length - index < LOAD_AHEAD) loadMore();
}

// --- answers -----------------------------------------------------------------------

function setVerdict(entry, label) {
  entry.answer = label;
  entry.verdict = label ? (label === entry.item.decision ? "confirmed" : "corrected") : null;
  if (label) {
    entry.li.dataset.answer = label;
    entry.li.dataset.verdict = entry.verdict;
  } else {
    delete entry.li.dataset.answer;
    delete entry.li.dataset.verdict;
  }
  entry.li.querySelector(".verdict").textContent = entry.verdict || "";
  renderTally();
}

function withdraw(entry) {
  if (!entry.annotationId) return;
  if (!outbox.cancelAdd(entry.annotationId)) outbox.push({ kind: "undo", id: entry.annotationId });
  entry.annotationId = null;
}

function answer(label) {
  const entry = state.cards[state.focus];
  if (!entry) return;
  withdraw(entry);  // answering again replaces the earlier answer
  const body = { id: newId(), item_id: entry.item.id, label,
                 duration_ms: Math.max(0, Math.round(performance.now() - state.shownAt)) };
  entry.annotationId = body.id;
  outbox.push({ kind: "add", body, item: entry.item });
  setVerdict(entry, label);
  state.history = state.history.filter((h) => h !== entry);
  state.history.push(entry);
  const next = state.cards.findIndex((c, i) => i > state.focus && !c.answer);
  focusOn(next >= 0 ? next : Math.min(state.focus + 1, state.cards.length - 1));
}

function undo() {
  const entry = state.history.pop();
  if (!entry) return;
  withdraw(entry);
  setVerdict(entry, null);
  focusOn(state.cards.indexOf(entry));
}

function renderTally() {
  const answered = state.cards.filter((c) => c.answer);
  if (!answered.length) { $("tally").textContent = "Nothing reviewed yet."; return; }
  const confirmed = answered.filter((c) => c.verdict === "confirmed").length;
  const predictedYes = answered.filter((c) => c.item.decision === "positive");
  const right = predictedYes.filter((c) => c.answer === "positive").length;
  const precision = predictedYes.length
    ? ` Of the predicted yes, ${right} of ${predictedYes.length} are right (precision ${(right / predictedYes.length).toFixed(2)}).`
    : "";
  $("tally").textContent = `Reviewed ${answered.length}: ${confirmed} confirmed, ${answered.length - confirmed} corrected.${precision}`;
}

// --- the live status: newer models and the scoring job -------------------------------

function duration(seconds) {
  if (!(seconds >= 0)) return "working out how long that takes";
  if (seconds < 60) return "less than a minute left";
  if (seconds < 3600) return `about ${Math.round(seconds / 60)} min left`;
  return `about ${(seconds / 3600).toFixed(1)} h left`;
}

function renderScoring(scoring) {
  const box = $("scoring");
  box.hidden = !scoring;
  if (!scoring) return;
  const done = scoring.embedded + scoring.failed;
  const running = scoring.state === "running";
  $("score-all").disabled = running;
  $("scoring-bar").value = scoring.total ? done / scoring.total : (running ? 0 : 1);
  box.dataset.state = scoring.state;
  $("scoring-text").textContent = running
    ? `Embedding ${done.toLocaleString("en")} of ${scoring.total.toLocaleString("en")} images: ${duration(scoring.eta_seconds)}.`
    : (scoring.state === "done" ? `Done: ${scoring.message}.` : `Stopped: ${scoring.message}`);
}

function watchStatus() {
  const source = new EventSource("api/events");
  source.addEventListener("status", (event) => {
    const { trainer, status } = JSON.parse(event.data);
    $("connection").dataset.state = trainer;
    $("connection").textContent = { up: "live", down: "server away" }[trainer] || trainer;
    if (trainer === "up" && outbox.pending) outbox.retryNow();
    if (!status) return;
    if (status.display_name) {
      state.task = status.display_name.toLowerCase();
      $("question").textContent = `Review predictions: ${state.task}`;
    }
    const version = status.model && status.model.version;
    $("newer").hidden = !version || !state.modelVersion || version === state.modelVersion;
    if (version && state.noModel && !state.loading) reset(state.order);
    renderScoring(status.scoring);
  });
}

async function scoreAll() {
  try {
    const { scoring } = await request("POST", "api/predictions/job");
    renderScoring(scoring);
  } catch (err) {
    showError(`The scoring job did not start: ${err.message}`);
  }
}

// --- input and start -----------------------------------------------------------------

const KEYS = {
  b: () => answer("positive"),
  n: () => answer("negative"),
  u: undo,
  Backspace: undo,
  j: () => focusOn(state.focus + 1),
  k: () => focusOn(state.focus - 1),
  ArrowRight: () => focusOn(state.focus + 1),
  ArrowDown: () => focusOn(state.focus + 1),
  ArrowLeft: () => focusOn(state.focus - 1),
  ArrowUp: () => focusOn(state.focus - 1),
};

bindKeys(KEYS, () => false);

for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => reset(tab.dataset.order));
$("reload").addEventListener("click", () => reset(state.order));
$("score-all").addEventListener("click", scoreAll);
$("review-undo").addEventListener("click", undo);
window.addEventListener("online", () => outbox.retryNow());

async function start() {
  renderPending(outbox);
  let session = { annotator: null };
  try { session = await api.session(); } catch (err) { showError(`The gateway cannot be reached (${err.message}).`); }
  let annotator = session.annotator;
  if (!annotator && session.auth_required) { window.location.assign("/login"); return; }
  if (!annotator) annotator = (await chooseName()).annotator;
  state.annotator = annotator;
  $("annotator").textContent = annotator;
  watchStatus();
  outbox.kick();
  reset(state.order);
}

start();
