"""The special maintenance fund: the append-only ledger, accounts, emergency repair cases,
disclosure. Imports only the core (``estate``)."""
