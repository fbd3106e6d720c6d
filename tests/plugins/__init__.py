"""Importable user checks for the HEARTBEAT_CHECKS tests."""
