"""MQTT to TimescaleDB: the device contract, the subscriber, batching, the writer, dead
letters, rollups and retention. Imports only the core (``estate``)."""
