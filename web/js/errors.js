// The pages' error lines: newest last, at most MAX_ERRORS, each dismissable.

const MAX_ERRORS = 4;

export function showError(message) {
  const box = document.getElementById("errors");
  const line = document.createElement("p");
  line.className = "error";
  line.textContent = message;
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "×";
  close.setAttribute("aria-label", "Dismiss");
  close.addEventListener("click", () => line.remove());
  line.append(close);
  box.append(line);
  while (box.children.length > MAX_ERRORS) box.firstElementChild.remove();
}
