"""The checker's passes over the surface AST: names, types, units, tables, rules,
examples. dsl/ir/from_surface.py runs them in order and builds the IR."""
