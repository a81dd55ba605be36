// The strip of recent answers under the image, and the change mode it opens: the earlier
// image takes the stage, and the next answer key replaces that answer.

import { safeImageUrl } from "./deck.js";

const $ = (id) => document.getElementById(id);
const WORDS = { positive: "yes", negative: "no", skip: "skipped", unsure: "unsure" };

export function answerWord(label) { return WORDS[label] || label; }

// `entries`: newest first; `changingId`: the annotation being changed, if any.
export function renderStrip(entries, changingId, pick) {
  const items = entries.map((entry, index) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "past";
    button.dataset.annotationId = entry.annotation.id;
    button.dataset.itemId = entry.item.id;
    button.dataset.label = entry.annotation.label;
    button.setAttribute("aria-pressed", String(entry.annotation.id === changingId));
    const word = answerWord(entry.annotation.label);
    button.setAttribute("aria-label", `Change answer ${index + 1}: ${word}${entry.changed ? ", changed" : ""}`);
    const img = document.createElement("img");
    img.alt = "";
    img.src = safeImageUrl(entry.item.thumbnail_url);
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.textContent = `${index + 1} ${word}${entry.changed ? " *" : ""}`;
    button.append(img, chip);
    button.addEventListener("click", () => pick(index + 1));
    li.append(button);
    return li;
  });
  $("history").replaceChildren(...items);
  $("history-hint").hidden = entries.length === 0;
}

// The earlier image on the stage, with what is being changed.
export function showChanging(entry, task) {
  const current = $("current");
  current.dataset.changing = "true";
  current.dataset.itemId = entry.item.id;
  current.dataset.empty = "false";
  $("current-img").src = safeImageUrl(entry.item.thumbnail_url);
  $("current-img").hidden = false;
  $("empty").textContent = "";
  $("changing").hidden = false;
  $("changing").textContent = `Changing your answer "${answerWord(entry.annotation.label)}" on this earlier image `
    + `(${task}): b yes, n no, space skip, f unsure; Esc keeps it.`;
}

export function hideChanging() {
  $("current").dataset.changing = "false";
  $("changing").hidden = true;
}
