"""The core: settings, the private services, the database (one connection type,
migrations), the registry and the one MQTT module. Imports nothing else of the project;
every other package may import it."""
