"""What tests of this project (and of code built on it) use: the in-memory backend, memory_backend.MemoryBackend."""
