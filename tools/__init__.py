"""Command-line tools that talk to the running services (not part of any service image)."""
