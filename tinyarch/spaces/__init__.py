"""Built-in search spaces as YAML package data."""
