"""The Tanpu engine: evaluates checked methodologies over activity data."""
