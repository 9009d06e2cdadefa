"""Network: a session's egress policy (what its commands may reach) and links to its ports."""
