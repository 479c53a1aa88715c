"""The HTTP kit every service is built with. Import from its modules, as the services do:
``app`` (the service app), ``auth`` (JWT, the current user, admin guard), ``context`` (the typed
request context), ``problems`` (RFC 9457 problem details), ``health``, ``metrics``, ``inputs``,
``pagination``, ``guards``, ``docs`` and ``server``."""
