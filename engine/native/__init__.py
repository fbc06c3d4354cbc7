"""The engine's fixed C: the numeric contract in C (numeric.h), included by every
generated kernel."""
