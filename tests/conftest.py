"""Shared pytest configuration for tornado_lite's own tests."""

# Sample Tornado apps for the migration tool's tests: they import tornado, which is not installed here;
# tests/test_migrate.py copies them, migrates them and runs their checks in a subprocess.
collect_ignore = ["migrate_samples"]
