"""The reminders service."""
