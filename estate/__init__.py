"""smart-estate's shared core: settings, private services, database, registry, command line."""
