"""Contexts: named storage that outlives sessions, per principal (service, models, mount checks)."""
