"""Helpers for developing catdog: throw-away workspaces for tests and benches, the change report,
status, the stage deps check."""
