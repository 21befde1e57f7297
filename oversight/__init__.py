"""What the authorities do with what the pipeline found: rectification notices (整改通知书)
with their evidence files, the problem ledger (问题台账) and the work-order ledger (台账) for
inspectors. Imports the core and ``alerts`` (read-only, and ``alerts.notify`` to tell)."""
