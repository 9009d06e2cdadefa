"""Sessions: the service, the per-conversation registry, paging and labels."""
