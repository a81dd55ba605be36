// The task picker in the page's header: every task that serves, this page's selected;
// choosing another goes to that task's own page (/t/<task>/), whose address can be shared.

import { api } from "./api.js";

export async function showTasks(select, current) {
  const { tasks, default: fallback } = await api.tasks();
  const mine = current || fallback;
  select.replaceChildren(...tasks.map((task) => {
    const option = document.createElement("option");
    option.value = task.name;
    option.textContent = task.display_name === task.name ? task.name : `${task.display_name} (${task.name})`;
    option.selected = task.name === mine;
    return option;
  }));
  select.addEventListener("change", () => {
    window.location.assign(`/t/${encodeURIComponent(select.value)}/`);
  });
}
