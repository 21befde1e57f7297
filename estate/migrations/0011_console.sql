-- The console: an operator acknowledges an alert on the board (seen, someone is on it),
-- which stops its sound and blink. It is not the work order's acknowledgement (that is
-- the responsible unit's) and does not change the alert's state.
ALTER TABLE alerts ADD COLUMN acknowledged_at timestamptz;
ALTER TABLE alerts ADD COLUMN acknowledged_by text;
