// Swagger UI for /openapi.json (a file, not an inline script: the pages' policy allows none).
"use strict";
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
