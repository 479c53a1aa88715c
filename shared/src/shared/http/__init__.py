"""The HTTP kit every service is built with: auth, problem details, health, metrics."""

from shared.http.app import create_service_app
from shared.http.auth import (
    AdminUser,
    AuthenticationError,
    CurrentUser,
    JwtConfig,
    JwtVerifier,
    Principal,
    current_principal,
    install_auth,
    require_admin,
)
from shared.http.health import Check, database_check, health_router, kafka_check
from shared.http.metrics import Metrics, MetricsMiddleware, install_metrics, route_template
from shared.http.problems import (
    PROBLEM_MEDIA_TYPE,
    PROBLEM_RESPONSES,
    ProblemDetails,
    ProblemError,
    ValidationProblemDetails,
    install_problem_handlers,
    problem_response,
)
from shared.tokens import issue_token  # kept here for callers of the HTTP kit

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_RESPONSES",
    "AdminUser",
    "AuthenticationError",
    "Check",
    "CurrentUser",
    "JwtConfig",
    "JwtVerifier",
    "Metrics",
    "MetricsMiddleware",
    "Principal",
    "ProblemDetails",
    "ProblemError",
    "ValidationProblemDetails",
    "create_service_app",
    "current_principal",
    "database_check",
    "health_router",
    "install_auth",
    "install_metrics",
    "install_problem_handlers",
    "issue_token",
    "kafka_check",
    "problem_response",
    "require_admin",
    "route_template",
]
