"""Builders the tests and the benchmarks share: synthetic flower folders, throw-away copies of the project
as git+DVC repos, and the helpers that run commands in them. Not part of the pipeline (no stage imports it)."""
