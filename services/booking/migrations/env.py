from alembic import context

from shared.migrations import run_env
from booking.models import metadata
from booking.settings import BookingSettings

run_env(context, metadata, BookingSettings().database_url)
