"""Shared pytest configuration. Lab helpers live in :mod:`tests.lablib`; import them from there."""
