// Keyboard shortcuts: one key, one action, never while typing in a field or a dialog.
// While the guidelines are open only the keys that close them work, so nothing is
// labelled unseen.

const WHILE_READING = new Set(["h", "Escape"]);

export function bindKeys(actions, reading) {
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    if (event.target.closest && event.target.closest("input, textarea, dialog[open]")) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const action = actions[key];
    if (!action) return;
    event.preventDefault();
    if (reading() && !WHILE_READING.has(key)) return;
    action();
  });
  // Space also clicks a focused button when released: where space is one of the keys, it
  // is ours, not the button's.
  if (!(" " in actions)) return;
  document.addEventListener("keyup", (event) => {
    if (event.key === " " && event.target.closest && event.target.closest("button")) event.preventDefault();
  });
}
