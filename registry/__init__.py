"""The Tanpu registry: versioned, reviewable storage of methodologies and results."""
