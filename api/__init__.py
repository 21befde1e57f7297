"""The HTTP API (FastAPI): routes per resource, authentication and scopes, problem
details, the live stream, the console's assets. An entry point: imports any package but
``cli``; nothing imports it but ``cli``."""
