"""Helpers shared by test modules: starting things, waiting for them, racing a run."""
