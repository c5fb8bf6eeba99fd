// Swagger UI start-up for /api/docs. A file, not an inline script, so the page's
// Content-Security-Policy can forbid inline scripts (script-src 'self').
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: document.body.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // The public validator badge would call validator.swagger.io: never leave the origin.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    persistAuthorization: false,
  });
});
