// The name dialog of an open gateway: it stays open, with the reason under the field,
// until the gateway accepts a name (and the reason goes with the next valid one).

import { api } from "./api.js";

const $ = (id) => document.getElementById(id);

export async function chooseName(current = "") {
  const dialog = $("name-dialog");
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
