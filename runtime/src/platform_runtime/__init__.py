"""Shared kernel of the booking platform."""
