"""Workspaces: what a session changed in an operator's host directory, and writing it back."""
