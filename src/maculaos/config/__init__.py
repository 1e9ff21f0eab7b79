"""Node configuration: one schema for /var/lib/maculaos/config.yaml."""
