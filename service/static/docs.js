// Starts Swagger UI from local assets (kept out of docs.html so the page needs no inline script).
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  if (typeof SwaggerUIBundle === "undefined") {
    document.getElementById("swagger-ui").textContent =
      "Swagger UI is not installed here (pip install 'tagindex[service]'); the schema is at /openapi.json.";
    return;
  }
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    presets: [SwaggerUIBundle.presets.apis],
  });
});
