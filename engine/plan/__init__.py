"""The evaluation plan: the typed IR lowered once for every backend (see ast.py)."""

from .ast import Plan
from .from_ir import from_ir
from .printer import plan_text

__all__ = ["Plan", "from_ir", "plan_text"]
