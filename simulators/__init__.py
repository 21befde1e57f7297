"""Device simulators and scenarios that speak the same MQTT contract as real devices."""
