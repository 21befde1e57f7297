-- Life safety first (issue 14): no trapped passenger, fire alarm or flooding alert is ever
-- swallowed, muted or left with the wrong party.

-- One open alert per (device, alert type): the controller's trapped event and the trapped
-- pattern in telemetry are one alert; `rules` are the rules that see it now. Duplicates
-- left open by the old (device, rule) key are closed onto the oldest first.
UPDATE alerts a SET state = 'cleared', cleared_at = a.last_seen
 WHERE a.state = 'open' AND EXISTS (
       SELECT 1 FROM alerts b WHERE b.state = 'open' AND b.device_id = a.device_id
          AND b.alert_type = a.alert_type AND b.id < a.id);
DROP INDEX alerts_one_open;
CREATE UNIQUE INDEX alerts_one_open ON alerts (device_id, alert_type) WHERE state = 'open';
ALTER TABLE alerts ADD COLUMN rules text[] NOT NULL DEFAULT '{}';
UPDATE alerts SET rules = ARRAY[rule_id] WHERE state = 'open';
-- declared life-safety by the rules (trapped, fire alarm, flooding, ...)
ALTER TABLE alerts ADD COLUMN life_safety boolean NOT NULL DEFAULT false;
-- the device or the clock says normal, but only a person may close it (a fire alarm reset
-- before anyone decided it; a trapped alarm until the rescue is resolved)
ALTER TABLE alerts ADD COLUMN held_at timestamptz;
-- a false alarm's cause is a code from a fixed vocabulary; "other" says what in words
ALTER TABLE alerts ADD COLUMN false_alarm_note text;

-- A life-safety alert is an incident of its own (group_key = device/alert type), so a
-- warning already open in the building never hides its dispatch.
ALTER TABLE incidents ADD COLUMN group_key text NOT NULL DEFAULT '';
ALTER TABLE incidents ADD COLUMN life_safety boolean NOT NULL DEFAULT false;
DROP INDEX incidents_one_open;
CREATE UNIQUE INDEX incidents_one_open
    ON incidents (estate_code, coalesce(building_code, ''), category, group_key)
    WHERE state = 'open';

-- Deadlines count from the alarm (the first evidence, device time), not from dispatch.
ALTER TABLE work_orders ADD COLUMN alarm_at timestamptz;
UPDATE work_orders SET alarm_at = created_at;
-- the severity of the alert the order was dispatched for (breaches raise `severity`):
-- a more severe alert joining the incident re-dispatches the order
ALTER TABLE work_orders ADD COLUMN lead_severity text;
UPDATE work_orders SET lead_severity = severity;
-- every rule that sees the alert is an event rule: nothing in the device's stream can say
-- it is over, so a person closes it (resolving the order)
ALTER TABLE alerts ADD COLUMN latched boolean NOT NULL DEFAULT false;
