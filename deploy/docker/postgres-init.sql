-- One database per service on the shared PostgreSQL of docker-compose.yml. Run once by the
-- postgres image, on an empty data volume, as POSTGRES_USER (platform), who owns them.
CREATE DATABASE booking;
CREATE DATABASE timeslots;
CREATE DATABASE reminders;
