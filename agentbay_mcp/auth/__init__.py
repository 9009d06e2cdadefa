"""Authentication and authorisation for HTTP: token file, JWT, scopes, and the SDK wiring."""
