"""The Tanpu web UI: browse, review and audit methodologies and their results."""
