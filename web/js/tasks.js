// The tasks page: every task, each linked to its own annotation page (/t/<task>/); admins
// also see archived tasks, add a task and archive or restore the ones added here.

import { api, request } from "./api.js";
import { withArticle } from "./wording.js";

const $ = (id) => document.getElementById(id);
let admin = false;

function showError(message) {
  const line = document.createElement("p");
  line.className = "error";
  line.textContent = message;
  $("errors").replaceChildren(line);
}

window.addEventListener("hitl:unauthenticated", () => { window.location.assign("/login?next=/tasks"); });

function facts(task) {
  const parts = [task.question || `Does this image show ${withArticle(task.display_name.toLowerCase())}?`];
  parts.push(task.positive_class ? `known labels: ${task.positive_class}` : "the dataset's own labels");
  if (task.detector_class && task.detector_class !== "auto") parts.push(`detector: ${task.detector_class}`);
  parts.push(`target ${task.target_f1.toFixed(2)}`);
  if (task.default) parts.push("the default task");
  if (task.state !== "serving") parts.push(task.state);
  return parts.join(" · ");
}

function actionButton(text, path) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = text;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await request("POST", path);
      await load();
    } catch (err) {
      showError(err.message);
      button.disabled = false;
    }
  });
  return button;
}

function entry(task) {
  const li = document.createElement("li");
  li.className = "task";
  li.dataset.task = task.name;
  li.dataset.archived = String(task.archived);
  const name = document.createElement(task.archived ? "span" : "a");
  name.className = "task-name";
  name.textContent = task.display_name;
  if (!task.archived) name.href = task.url;
  const actions = document.createElement("div");
  actions.className = "task-actions";
  const address = document.createElement("code");
  address.className = "small";
  address.textContent = task.url;
  actions.append(address);
  if (admin && task.source === "api") {
    const path = `/api/tasks/${encodeURIComponent(task.name)}/${task.archived ? "restore" : "archive"}`;
    actions.append(actionButton(task.archived ? `Restore ${task.name}` : `Archive ${task.name}`, path));
  }
  const about = document.createElement("p");
  about.className = "task-facts";
  about.textContent = facts(task);
  li.append(name, actions, about);
  return li;
}

async function load() {
  const { tasks } = await api.tasks();
  $("task-list").replaceChildren(...tasks.map(entry));
}

$("add-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = Object.fromEntries(form.entries());
  body.target_f1 = Number(body.target_f1);
  $("add-status").textContent = "Adding the task…";
  try {
    const { task } = await request("POST", "/api/tasks", body);
    $("add-status").textContent = `Added: annotate it at ${task.url}`;
    event.target.reset();
    await load();
  } catch (err) {
    $("add-status").textContent = "";
    showError(`The task was not added: ${err.message}`);
  }
});

async function start() {
  try {
    const session = await api.session();
    admin = Boolean(session.admin);
    $("annotator").textContent = session.annotator || "";
    $("add").hidden = !admin;
    if (!session.auth_required && !session.annotator) {
      $("annotator").textContent = "Choose your name on a task's page to add tasks here.";
    }
    await load();
  } catch (err) {
    showError(`The tasks cannot be listed: ${err.message}`);
  }
}

start();
