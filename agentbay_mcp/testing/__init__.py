"""Helpers for the tests and benchmarks: typed and importable, never used by the server itself.

memory_backend.MemoryBackend is the in-memory backend, the project's test double. Some modules here
need the dev extras (psutil for process and memory checks); the server never imports this package.
Fixtures stay in tests/conftest.py as thin wrappers around these helpers.
"""
