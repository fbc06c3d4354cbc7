"""The typed IR: its nodes (ast), its translation from the surface AST (from_surface)
and its printer (canonical JSON and content hash)."""
