// The column of upcoming images and the image on the stage. Thumbnail elements are kept
// per item and reused, so that moving down the column never reloads or re-decodes one.

import { safeImageUrl } from "./deck.js";

const $ = (id) => document.getElementById(id);
const thumbnails = new Map();

function thumbnail(item, onClick) {
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
  li.addEventListener("click", () => onClick(item));
  thumbnails.set(item.id, li);
  return li;
}

export function renderColumn(items, onClick) {
  const shown = items.map((item) => thumbnail(item, onClick));
  $("thumbs").replaceChildren(...shown);
  shown.forEach((li, index) => li.classList.toggle("focused", index === 0));
  const keep = new Set(items.map((item) => item.id));
  for (const id of thumbnails.keys()) if (!keep.has(id)) thumbnails.delete(id);
}

export function renderStage(item, refilling) {
  const current = $("current");
  current.dataset.empty = String(!item);
  current.dataset.itemId = item ? item.id : "";
  $("current-img").src = item ? safeImageUrl(item.thumbnail_url) : "";
  $("current-img").hidden = !item;
  $("empty").textContent = item ? "" : (refilling ? "Loading images…" : "No images to show right now; asking the server again shortly.");
}
