"""Services: the tools' rules (ownership, leases, quotas, paging, truncation) over any backend.

Services never import `mcp`; they import backends, never the other way round.
"""
