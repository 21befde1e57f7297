"""The special maintenance fund: ledger, emergency repair cases, disclosure."""
