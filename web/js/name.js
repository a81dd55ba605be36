// The name dialog of an open gateway: it stays open, with the reason under the field,
// until the gateway accepts a name (and the reason goes with the next valid one).

import { api } from "./api.js";

const $ = (id) => document.getElementById(id);

// The dialog's markup, the same on every page that asks for a name.
const DIALOG = `
  <form id="name-form" method="dialog">
    <label for="name-input">Your name (shown with your labels)</label>
    <input id="name-input" name="annotator" maxlength="40" required autocomplete="nickname"
      aria-describedby="name-error">
    <p id="name-error" class="error-text" role="alert"></p>
    <button type="submit" class="primary">Start</button>
  </form>`;

function nameDialog() {
  let dialog = $("name-dialog");
  if (!dialog) {
    dialog = document.createElement("dialog");
    dialog.id = "name-dialog";
    dialog.innerHTML = DIALOG;
    document.body.append(dialog);
  }
  return dialog;
}

export async function chooseName(current = "") {
  const dialog = nameDialog();
  $("name-input").value = current;
  $("name-error").textContent = "";
  dialog.showModal();
  for (;;) {
    await new Promise((resolve) => $("name-form").addEventListener("submit", resolve, { once: true }));
    try {
      const session = await api.setAnnotator($("name-input").value.trim());
      $("name-error").textContent = "";
      return session;
    } catch (err) {
      $("name-error").textContent = err.message;
      if (!dialog.open) dialog.showModal();
      $("name-input").focus();
    }
  }
}
