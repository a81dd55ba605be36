// Calls to the gateway's JSON API. Errors carry the HTTP status and whether a retry
// may succeed, so the outbox can tell "try again later" from "give up".

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
    // 0 is a network failure (gateway down); 401 keeps the label until signed in again.
    this.retryable = status === 0 || status === 401 || status === 408 || status === 429 || status >= 500;
  }
}

// The task this page is on: <task> in its /t/<task>/ address; "" for the default task's
// page at the root. The page's calls are relative ("api/..."), so they go to its task.
export const TASK = (/^\/t\/([a-z0-9][a-z0-9-]{0,39})\//.exec(window.location.pathname) || [])[1] || "";

export async function request(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") init.headers["X-Requested-With"] = "hitl";
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "network", "the gateway cannot be reached");
  }
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) {
    const error = (data && data.error) || {};
    if (response.status === 401) window.dispatchEvent(new Event("hitl:unauthenticated"));
    throw new ApiError(response.status, error.code || "http_" + response.status,
                       error.message || response.statusText || "request failed");
  }
  return data;
}

export const api = {
  session: () => request("GET", "api/session"),
  setAnnotator: (annotator) => request("POST", "api/session", { annotator }),
  nextItems: (n, held) => request("GET", `api/items/next?n=${n}${held.map((id) => "&held=" + encodeURIComponent(id)).join("")}`),
  addAnnotation: (body) => request("POST", "api/annotations", body),
  undoAnnotation: (id) => request("DELETE", `api/annotations/${encodeURIComponent(id)}`),
  login: (token) => request("POST", "api/login", { token }),
  logout: () => request("POST", "api/logout"),
  tasks: () => request("GET", "/api/tasks"),
};

// One queued operation of an outbox, delivered once: an annotation, or the undo of one.
export async function deliver(op) {
  if (op.kind === "add") return api.addAnnotation(op.body);
  try {
    return await api.undoAnnotation(op.id);
  } catch (err) {
    // Already withdrawn or never recorded: the undo has nothing left to do.
    if (err.status === 404 || (err.status === 409 && err.code !== "no_annotator")) return null;
    throw err;
  }
}

// crypto.randomUUID needs a secure context; tablets on a plain-http LAN have none.
export function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
