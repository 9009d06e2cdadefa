"""Observability: the audit log and metrics."""
