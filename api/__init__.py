"""HTTP API (FastAPI), authentication and scopes, the console and inspector views."""
