"""Commands: execute_command and background processes, and how their output reads as text."""
