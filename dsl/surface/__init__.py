"""Surface syntax: grammar -> AST with positions."""
