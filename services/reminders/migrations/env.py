from alembic import context

from platform_runtime.migrations import run_env
from reminders.models import metadata
from reminders.settings import RemindersSettings

run_env(context, metadata, RemindersSettings().database_url)
