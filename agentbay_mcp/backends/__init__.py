"""Backends: where sessions live. `base.SandboxBackend` is the one contract they all implement."""
