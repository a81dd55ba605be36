// The API docs: Swagger UI (npm swagger-ui-dist, served by the gateway under /vendor/)
// rendering the gateway's own OpenAPI document. Requests tried from here go out like the
// page's own: same-origin, with the session cookie and the CSRF header.

// What Swagger UI leaves out for assistive technology, added whenever it draws: its
// title is a second h1 (an h2 here), the parts above its <main> get region names, form
// fields the names of their parameters, each operation's responses a name of their own,
// and scrolling examples the focus a keyboard needs to scroll them.
const FIXES = [
  [".information-container .title", () => ({ role: "heading", "aria-level": "2" })],
  [".information-container", () => ({ role: "region", "aria-label": "About the API" })],
  [".schemes-server-container", () => ({ role: "region", "aria-label": "Server and sign-in" })],
  ["select#servers", () => ({ "aria-label": "Server" })],
  ["tr[data-param-name] select, tr[data-param-name] input, tr[data-param-name] textarea",
   (el) => ({ "aria-label": el.closest("tr").dataset.paramName })],
  [".body-param textarea, textarea.body-param__text", () => ({ "aria-label": "Request body" })],
  ["[id$='_responses'][role='region']", (el) => ({ "aria-label": `Responses: ${el.id.replace(/_responses$/, "").replaceAll("_", " ")}` })],
  [".highlight-code > pre, .highlight-code > .microlight", () => ({ tabindex: "0" })],
];

function fixAccessibility(root) {
  for (const [selector, attributesOf] of FIXES) {
    for (const element of root.querySelectorAll(selector)) {
      for (const [name, value] of Object.entries(attributesOf(element))) {
        if (element.getAttribute(name) !== value) element.setAttribute(name, value);
      }
    }
  }
}

function start() {
  const error = document.getElementById("docs-error");
  if (typeof window.SwaggerUIBundle !== "function") {
    error.textContent = "The API docs renderer is not installed on this gateway (run make install); "
      + "the document itself is at /api/openapi.json.";
    return;
  }
  const root = document.getElementById("swagger-ui");
  new MutationObserver(() => fixAccessibility(root)).observe(root, { childList: true, subtree: true });
  window.SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: false,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    syntaxHighlight: { activated: false },
    requestInterceptor: (request) => {
      request.headers["X-Requested-With"] = "hitl-docs";
      request.credentials = "same-origin";
      return request;
    },
  });
}

start();
