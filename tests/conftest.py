"""Shared pytest configuration for tornado_lite's own tests."""
