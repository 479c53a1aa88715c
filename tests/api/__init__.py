"""The services' HTTP APIs from the outside: every service runs as a real process on the
shared broker, and its OpenAPI document is taken at its word (Schemathesis) and its bearer
authentication and ownership rules are probed endpoint by endpoint."""
