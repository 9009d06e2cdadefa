"""Files: the file tools' rules."""
