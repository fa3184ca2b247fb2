"""Collapse metrics, linear probes, rank scores and surprise — the health checks of a world model."""
