"""Each toolset's results rendered as text for a model, with the fields that travel only as text."""
