// The annotation page: keyboard and buttons act on the first image at once; labels go
// through the outbox; the recent answers can be changed; the panel follows the gateway's
// live status stream.

import { Answers } from "./answers.js";
import { api, deliver, TASK } from "./api.js";
import { renderColumn, renderStage } from "./column.js";
import { Deck } from "./deck.js";
import { showError } from "./errors.js";
import { renderFinish, setFinishAdmin } from "./finish.js";
import { closeGuide, guideOpen, toggleGuide } from "./guide.js";
import { STRIP } from "./history.js";
import { bindKeys } from "./keys.js";
import { chooseName } from "./name.js";
import { CheckNotice } from "./notice.js";
import { Outbox, queueKey } from "./outbox.js";
import { renderAgreement, renderStatus, setAnnotator } from "./panel.js";
import { showTasks } from "./picker.js";
import { bindUnsure, hideUnsure, showUnsure as openUnsure, unsureOpen } from "./unsure.js";
import { withArticle } from "./wording.js";
import { hideZoom as closeZoomView, showZoom as openZoomView, switchZoom } from "./zoom.js";

const $ = (id) => document.getElementById(id);
const REFILL_RETRY_MS = 3000;

const state = {
  task: "the target",       // display name, from the status
  annotator: "",
  signedIn: false,          // the name comes from a sign-in (else it is chosen here)
  shownAt: performance.now(),
  zoomed: false,
};

window.addEventListener("hitl:unauthenticated", () => { window.location.assign("/login"); });

// --- items -------------------------------------------------------------------------

let refillTimer = null;

// On an open gateway the chosen name lives in a session cookie that a restart of the
// gateway or its expiry ends: name the session again and carry on, rather than dropping a
// queued label or going without images. (A signed-in page is sent to sign in again
// instead, and queued labels wait.)
async function withName(call) {
  try {
    return await call();
  } catch (err) {
    if (err.code !== "no_annotator" || !state.annotator || state.signedIn) throw err;
    await api.setAnnotator(state.annotator);
    return call();
  }
}

async function fetchItems(n, held) {
  try {
    const { items } = await withName(() => api.nextItems(n, held));
    if (items.length === 0 && deck.items.length === 0) scheduleRefill();
    return items;
  } catch (err) {
    // 429: asked too often; the refill below tries again shortly anyway.
    if (err.status !== 0 && err.status < 500 && err.status !== 429) showError(`Could not load images: ${err.message}`);
    scheduleRefill();
    return [];
  }
}

function scheduleRefill() {
  if (refillTimer) return;
  refillTimer = setTimeout(() => { refillTimer = null; deck.refill(); }, REFILL_RETRY_MS);
}

function renderDeck() {
  renderColumn(deck.items, (item) => { if (deck.current && deck.current.id === item.id) toggleZoom(); });
  if (answers.changing) return;  // the earlier image holds the stage until it is answered
  renderStage(deck.current, deck.refilling);
  if (state.zoomed) showZoom();
}

const deck = new Deck({ fetchItems, onChange: () => renderDeck() });

// --- labelling ---------------------------------------------------------------------

function said(value, note) {
  if (value === "skip") return "Skipped: someone else will answer it.";
  if (value === "unsure") return note ? `Marked unsure (${note}).` : "Marked unsure.";
  return `Labelled ${value === "positive" ? state.task : "not " + state.task}.`;
}

function send(op) {
  return withName(() => deliver(op));
}

function delivered(op, result) {
  if (op.kind !== "add" || !result || !result.gold_check || result.gold_check.agrees) return;
  notice.show(op, result.gold_check, state.task);
}

function failed(op, err) {
  const what = op.kind === "add" ? "A label" : "An undo";
  showError(`${what} was refused by the server and dropped: ${err.message}`);
}

function renderPending(box) {
  const pill = $("pending");
  pill.dataset.count = String(box.pending);
  pill.textContent = `${box.pending} pending`;
  pill.title = box.lastError ? `Waiting to deliver: ${box.lastError.message}` : "Labels waiting to be delivered";
}

const outbox = new Outbox({ send, onDelivered: delivered, onFailed: failed, onChange: renderPending,
                            key: queueKey(TASK) });
const answers = new Answers({ outbox, said, restage: renderDeck, task: () => withArticle(state.task) });
const notice = answers.notice = new CheckNotice({
  fix: (annotation, item) => {
    answers.replace(annotation, annotation.label === "positive" ? "negative" : "positive", "", item);
    $("last").textContent = "Fixed.";
  },
});

// Yes, no, skip or unsure for the image on screen (or the earlier one being changed);
// skips and unsure marks never train.
function label(value, note = "") {
  hideUnsure();
  if (answers.changing) { answers.change(value, note); return; }
  const item = deck.current;
  if (!item) return;
  const now = performance.now();
  deck.take();
  answers.give(item, value, note, Math.max(0, Math.round(now - state.shownAt)));
  state.shownAt = now;
}

function undo() {
  hideUnsure();
  if (answers.changing) { answers.stop(); return; }
  const item = answers.undo();
  if (!item) return;
  deck.putBack(item);
  state.shownAt = performance.now();
}

// Position 1 is the latest answer.
function startChanging(position) {
  hideZoom();
  hideUnsure();
  answers.start(position);
}
answers.onPick = startChanging;

function showUnsure() {
  if (deck.current || answers.changing) openUnsure();
}

bindUnsure((note) => label("unsure", note));

// --- zoom --------------------------------------------------------------------------

function zoomedItem() {
  return answers.changing ? answers.changing.item : deck.current;
}

function showZoom() {
  const item = zoomedItem();
  if (!item) { hideZoom(); return; }
  openZoomView(item);
}

function hideZoom() {
  state.zoomed = false;
  closeZoomView();
}

function toggleZoom() {
  if (state.zoomed) { hideZoom(); return; }
  state.zoomed = true;
  showZoom();
}

// --- input -------------------------------------------------------------------------

function escape() {
  if (guideOpen()) closeGuide();
  else if (state.zoomed) hideZoom();
  else if (unsureOpen()) hideUnsure();
  else if (answers.changing) answers.stop();
  else notice.hide();
}

const KEYS = {
  b: () => label("positive"),
  n: () => label("negative"),
  " ": () => label("skip"),
  f: showUnsure,
  z: toggleZoom,
  u: undo,
  h: toggleGuide,
  Backspace: undo,
  Escape: escape,
};
for (let position = 1; position <= STRIP; position += 1) KEYS[String(position)] = () => startChanging(position);
bindKeys(KEYS, guideOpen);

$("btn-yes").addEventListener("click", () => label("positive"));
$("btn-no").addEventListener("click", () => label("negative"));
$("btn-skip").addEventListener("click", () => label("skip"));
$("btn-unsure").addEventListener("click", showUnsure);
$("btn-zoom").addEventListener("click", toggleZoom);
$("btn-undo").addEventListener("click", undo);
// On the picture a click switches between the whole image and the detector's box (when
// it has one); anywhere else it closes the zoom.
$("zoom").addEventListener("click", (event) => {
  if (event.target.closest("#zoom-frame") && zoomedItem()) switchZoom(); else hideZoom();
});
window.addEventListener("online", () => outbox.retryNow());

// --- status ------------------------------------------------------------------------

function applyTask(status) {
  if (!status || !status.display_name) return;
  const name = status.display_name.toLowerCase();
  if (name === state.task) return;
  state.task = name;
  $("question").textContent = status.question || `Does this image show ${withArticle(name)}?`;
  $("yes-text").textContent = `Yes, ${name}`;
  $("no-text").textContent = `No ${name}`;
  $("pos-label").textContent = `Labelled ${name}`;
  $("neg-label").textContent = `Labelled not ${name}`;
  document.title = `Annotate: ${status.display_name}`;
}

function watchStatus() {
  const source = new EventSource("api/events");
  source.addEventListener("status", (event) => {
    const { trainer, status } = JSON.parse(event.data);
    applyTask(status);
    renderStatus(status, trainer);
    renderAgreement(status, state.annotator);
    renderFinish(status);
    // A trainer that is back takes the pending labels now rather than at the next retry.
    if (trainer === "up" && outbox.pending) outbox.retryNow();
    if (trainer === "up" && !deck.current) deck.refill();
  });
  source.addEventListener("error", () => renderStatus(null, "connecting"));
}

// --- start -------------------------------------------------------------------------

function showName(name) {
  state.annotator = name;
  answers.useAnnotator(name);
  setAnnotator(name);
  $("annotator").textContent = name;
  $("annotator").title = state.signedIn ? "Sign out (another annotator signs in)" : "Change your name";
}

async function start() {
  renderPending(outbox);
  let session;
  try {
    session = await api.session();
  } catch (err) {
    showError(`The gateway cannot be reached (${err.message}); labels will wait in this browser.`);
    session = { annotator: null };
  }
  // With sign-ins the name is the one the token belongs to; on an open (local) gateway
  // it is chosen here.
  state.signedIn = Boolean(session.auth_required);
  if (!session.annotator && !state.signedIn) session = await chooseName();
  const annotator = session.annotator;
  if (!annotator) { window.location.assign("/login"); return; }
  if (state.signedIn) outbox.useQueue(annotator);
  // Labels still queued from an earlier visit must not be shown (and answered) again.
  for (const op of outbox.ops) if (op.kind === "add") deck.seen.add(op.body.item_id);
  showName(annotator);
  for (const id of ["export", "nav-models"]) $(id).hidden = !session.admin;
  setFinishAdmin(Boolean(session.admin));
  $("annotator").addEventListener("click", async () => {
    try {
      if (state.signedIn) {
        // Another annotator signs in with their own token; queued labels stay queued.
        await api.logout();
        window.location.assign("/login");
        return;
      }
      showName((await chooseName(state.annotator)).annotator);
    } catch (err) { showError(err.message); }
  });
  watchStatus();
  showTasks($("task-picker"), TASK).catch(() => { $("task-pick").hidden = true; });
  outbox.kick();
  deck.refill();
  setInterval(() => answers.render(), 30000);
}

start();
