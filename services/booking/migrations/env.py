from alembic import context

from booking.models import metadata
from booking.settings import BookingSettings
from platform_runtime.migrations import run_env

run_env(context, metadata, BookingSettings().database_url)
