"""The alert pipeline only: rules, warn, judge, dispatch, supervise, notify, from readings
to closed work orders. Imports the core and ``ingest`` (the batch it evaluates)."""
