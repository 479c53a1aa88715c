"""The timeslots service."""
