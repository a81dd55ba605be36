import { api } from "./api.js";

// Where to go once signed in: the page that sent here (a path of this site only).
function nextPage() {
  const next = new URLSearchParams(window.location.search).get("next") || "/";
  return next.startsWith("/") && !next.startsWith("//") && !next.includes("\\") ? next : "/";
}

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  try {
    await api.login(document.getElementById("token").value);
    window.location.assign(nextPage());
  } catch (err) {
    error.textContent = err.message;
  }
});
