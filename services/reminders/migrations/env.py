from alembic import context

from reminders.models import metadata
from reminders.settings import RemindersSettings
from shared.migrations import run_env

run_env(context, metadata, RemindersSettings().database_url)
