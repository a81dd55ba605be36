import { api } from "./api.js";

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  try {
    await api.login(document.getElementById("token").value);
    window.location.assign("/");
  } catch (err) {
    error.textContent = err.message;
  }
});
