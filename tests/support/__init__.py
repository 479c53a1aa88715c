"""Test support shared by every package's tests (not part of any service)."""
