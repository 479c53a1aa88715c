from alembic import context

from platform_runtime.migrations import run_env
from timeslots.models import metadata
from timeslots.settings import TimeslotsSettings

run_env(context, metadata, TimeslotsSettings().database_url)
