// The guidelines panel: the task's instructions and example images from the gateway's
// configuration, and the keys. The text is plain (never parsed as HTML): a blank line
// starts a paragraph and lines starting with "- " make a list.

import { request } from "./api.js";
import { safeImageUrl } from "./deck.js";

const $ = (id) => document.getElementById(id);
let loaded = null;
let returnFocus = null;

export function renderText(text, box) {
  box.replaceChildren();
  if (!text) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "No guidelines were given for this task: answer the question at the top for each image.";
    box.append(p);
    return;
  }
  for (const block of text.split(/\n\s*\n/)) {
    const lines = block.split("\n").map((line) => line.trim()).filter(Boolean);
    if (lines.length === 0) continue;
    if (lines.every((line) => line.startsWith("- "))) {
      const list = document.createElement("ul");
      for (const line of lines) {
        const li = document.createElement("li");
        li.textContent = line.slice(2);
        list.append(li);
      }
      box.append(list);
    } else {
      const p = document.createElement("p");
      p.textContent = lines.join(" ");
      box.append(p);
    }
  }
}

function renderExamples(examples) {
  const list = $("guide-examples");
  list.replaceChildren();
  for (const example of examples) {
    const url = safeImageUrl(example.url) || (example.url.startsWith("/api/guidelines/") ? example.url : "");
    if (!url) continue;
    const li = document.createElement("li");
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = url;
    // The caption beside it says what it shows; alt text repeating it would be read twice.
    img.alt = example.caption ? "" : "Example image";
    img.loading = "lazy";
    const caption = document.createElement("figcaption");
    caption.textContent = example.caption;
    figure.append(img, caption);
    li.append(figure);
    list.append(li);
  }
}

async function load() {
  try {
    const body = await request("GET", "api/guidelines");
    renderText(body.text, $("guide-text"));
    renderExamples(body.examples || []);
  } catch (err) {
    loaded = null; // try again next time
    $("guide-text").textContent = `The guidelines could not be loaded: ${err.message}`;
  }
}

export function guideOpen() { return !$("guide").hidden; }

export function openGuide() {
  if (!loaded) loaded = load();
  returnFocus = document.activeElement;
  $("guide").hidden = false;
  $("guide-close").focus();
}

export function closeGuide() {
  $("guide").hidden = true;
  if (returnFocus && returnFocus.focus) returnFocus.focus();
  returnFocus = null;
}

export function toggleGuide() {
  if (guideOpen()) closeGuide(); else openGuide();
}

$("guide-close").addEventListener("click", closeGuide);
$("btn-guide").addEventListener("click", toggleGuide);
