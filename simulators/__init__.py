"""Device simulators and scenarios that speak the same MQTT contract as real devices.
Imports the core (registry, MQTT module) and the device contract (``ingest.contract``)."""
