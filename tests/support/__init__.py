"""Helpers for the tests, by what they help with: the servers (``stack``), data to load
(``data``), the pipeline (``pipeline``), the command line (``cli``), the API (``web``)."""
