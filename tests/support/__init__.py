"""Shared fixtures and helpers of the tests; test files import only from here."""
