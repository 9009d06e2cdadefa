"""Transports: stdio (one conversation per process) and streamable HTTP for teams."""
