"""What the authorities do with what the pipeline found: rectification notices (整改通知书)
and the work-order ledger (台账) for inspectors. Imports the core and ``alerts`` (read-only)."""
