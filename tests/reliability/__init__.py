"""Fault-injection tests on the single-leaf lab; each records figures for docs/reliability.md."""
