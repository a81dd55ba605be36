// The annotation page: keyboard and buttons act on the first image at once; labels go
// through the outbox; the panel follows the gateway's live status stream.

import { api, deliver, newId, TASK } from "./api.js";
import { Deck, safeImageUrl } from "./deck.js";
import { closeGuide, guideOpen, toggleGuide } from "./guide.js";
import { bindKeys } from "./keys.js";
import { CheckNotice } from "./notice.js";
import { Outbox, queueKey } from "./outbox.js";
import { renderAgreement, renderStatus, setAnnotator } from "./panel.js";
import { showTasks } from "./picker.js";
import { bindUnsure, hideUnsure, showUnsure as openUnsure, unsureOpen } from "./unsure.js";
import { perHour, withArticle } from "./wording.js";
import { hideZoom as closeZoomView, showZoom as openZoomView, switchZoom } from "./zoom.js";

const $ = (id) => document.getElementById(id);
const REFILL_RETRY_MS = 3000;
const MAX_ERRORS = 4;

const state = {
  task: "the target",       // display name, from the status
  annotator: "",
  signedIn: false,          // the name comes from a sign-in (else it is chosen here)
  history: [],              // this page's annotations, newest last, for undo
  labelled: 0,
  startedAt: 0,
  shownAt: performance.now(),
  zoomed: false,
};

// --- errors ------------------------------------------------------------------------

function showError(message) {
  const box = $("errors");
  const line = document.createElement("p");
  line.className = "error";
  line.textContent = message;
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "×";
  close.title = "Dismiss";
  close.addEventListener("click", () => line.remove());
  line.append(close);
  box.append(line);
  while (box.children.length > MAX_ERRORS) box.firstElementChild.remove();
}

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

const deck = new Deck({ fetchItems, onChange: renderDeck });

// Thumbnail elements are kept per item and reused, so that moving down the column never
// reloads or re-decodes an image.
const thumbnails = new Map();

function thumbnail(item) {
  let li = thumbnails.get(item.id);
  if (li) return li;
  li = document.createElement("li");
  li.className = "thumb";
  li.dataset.itemId = item.id;
  const img = document.createElement("img");
  img.alt = "";
  img.loading = "eager";
  img.src = safeImageUrl(item.thumbnail_url);
  // No badge: nothing on the page may tell a check from any other image.
  li.append(img);
  li.addEventListener("click", () => { if (deck.current && deck.current.id === item.id) toggleZoom(); });
  thumbnails.set(item.id, li);
  return li;
}

function renderDeck() {
  const list = $("thumbs");
  const shown = deck.items.map(thumbnail);
  list.replaceChildren(...shown);
  shown.forEach((li, index) => li.classList.toggle("focused", index === 0));
  const keep = new Set(deck.items.map((item) => item.id));
  for (const id of thumbnails.keys()) if (!keep.has(id)) thumbnails.delete(id);
  const item = deck.current;
  const current = $("current");
  current.dataset.empty = String(!item);
  current.dataset.itemId = item ? item.id : "";
  $("current-img").src = item ? safeImageUrl(item.thumbnail_url) : "";
  $("current-img").hidden = !item;
  $("empty").textContent = item ? "" : (deck.refilling ? "Loading images…" : "No images to show right now; asking the server again shortly.");
  if (state.zoomed) showZoom();
}

// --- labelling ---------------------------------------------------------------------

const ANSWERS = new Set(["positive", "negative"]);

function said(value, note) {
  if (value === "skip") return "Skipped: someone else will answer it.";
  if (value === "unsure") return note ? `Marked unsure (${note}).` : "Marked unsure.";
  return `Labelled ${value === "positive" ? state.task : "not " + state.task}.`;
}

// Yes, no, skip or unsure for the image on screen; skips and unsure marks never train.
function label(value, note = "") {
  const item = deck.current;
  if (!item) return;
  hideUnsure();
  const now = performance.now();
  deck.take();
  const annotation = { id: newId(), item_id: item.id, label: value,
                       duration_ms: Math.max(0, Math.round(now - state.shownAt)) };
  if (note) annotation.note = note;
  state.shownAt = now;
  state.history.push({ annotation, item });
  if (ANSWERS.has(value)) {
    state.labelled += 1;
    state.startedAt ||= Date.now();
  }
  outbox.push({ kind: "add", body: annotation, item });
  $("last").textContent = said(value, note);
  renderRate();
}

function showUnsure() {
  if (deck.current) openUnsure();
}

bindUnsure((note) => label("unsure", note));

function undo() {
  const last = state.history.pop();
  if (!last) return;
  hideUnsure();
  if (!outbox.cancelAdd(last.annotation.id)) outbox.push({ kind: "undo", id: last.annotation.id });
  if (ANSWERS.has(last.annotation.label)) state.labelled = Math.max(0, state.labelled - 1);
  deck.putBack(last.item);
  state.shownAt = performance.now();
  $("last").textContent = "Undone: the image is back.";
  if (notice.about(last.annotation.id)) notice.hide();
  renderRate();
}

function renderRate() {
  $("rate").textContent = perHour(state.labelled, state.startedAt);
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

// --- gold check notice ---------------------------------------------------------------

const notice = new CheckNotice({
  push: (op) => outbox.push(op),
  replaced: (oldId, fixed) => {
    const entry = state.history.find((h) => h.annotation.id === oldId);
    if (entry) entry.annotation = fixed;
  },
});

// --- zoom --------------------------------------------------------------------------

function showZoom() {
  const item = deck.current;
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
bindKeys(KEYS, guideOpen);

$("btn-yes").addEventListener("click", () => label("positive"));
$("btn-no").addEventListener("click", () => label("negative"));
$("btn-skip").addEventListener("click", () => label("skip"));
$("btn-unsure").addEventListener("click", showUnsure);
$("btn-zoom").addEventListener("click", toggleZoom);
$("btn-undo").addEventListener("click", undo);
// On the picture a click switches between the detector's box and the whole image;
// anywhere else it closes the zoom.
$("zoom").addEventListener("click", (event) => {
  const item = deck.current;
  if (event.target.closest("#zoom-frame") && item && item.detector) switchZoom(); else hideZoom();
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
    // A trainer that is back takes the pending labels now rather than at the next retry.
    if (trainer === "up" && outbox.pending) outbox.retryNow();
    if (trainer === "up" && !deck.current) deck.refill();
  });
  source.addEventListener("error", () => renderStatus(null, "connecting"));
}

// --- start -------------------------------------------------------------------------

async function chooseName(current) {
  const dialog = $("name-dialog");
  $("name-input").value = current || "";
  dialog.showModal();
  await new Promise((resolve) => $("name-form").addEventListener("submit", resolve, { once: true }));
  return api.setAnnotator($("name-input").value.trim());
}

function showName(name) {
  state.annotator = name;
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
  while (!session.annotator && !state.signedIn) {
    try { session = await chooseName(""); } catch (err) { showError(err.message); }
  }
  const annotator = session.annotator;
  if (!annotator) { window.location.assign("/login"); return; }
  if (state.signedIn) outbox.useQueue(annotator);
  // Labels still queued from an earlier visit must not be shown (and answered) again.
  for (const op of outbox.ops) if (op.kind === "add") deck.seen.add(op.body.item_id);
  showName(annotator);
  $("export").hidden = !session.admin;
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
  setInterval(renderRate, 30000);
}

start();
