// The unsure box: `f` opens it under the image with the focus in a one-line note field;
// Enter records "unsure" with whatever was typed (nothing is fine), Esc closes it.

const $ = (id) => document.getElementById(id);
export const MAX_NOTE = 200;

export function unsureOpen() { return !$("unsure-form").hidden; }

export function showUnsure() {
  $("unsure-form").hidden = false;
  $("unsure-note").value = "";
  $("unsure-note").focus();
}

export function hideUnsure() {
  if (!unsureOpen()) return;
  $("unsure-form").hidden = true;
  if (document.activeElement === $("unsure-note")) $("unsure-note").blur();
}

// `record(note)` labels the image on screen unsure.
export function bindUnsure(record) {
  $("unsure-form").addEventListener("submit", (event) => {
    event.preventDefault();
    record($("unsure-note").value.trim().slice(0, MAX_NOTE));
  });
  $("unsure-cancel").addEventListener("click", hideUnsure);
  $("unsure-note").addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.preventDefault(); hideUnsure(); }
  });
}
