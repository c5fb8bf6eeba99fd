"""The HTTP API: `create_app()` reads like a table of contents."""

from __future__ import annotations

from flask import Flask

from api.extensions.json import OrjsonProvider
from db.core.config import Settings, get_settings
from db.core.logs import configure_logging
from db.ops.tracing import configure_tracing, instrument_app


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    configure_logging(settings)
    configure_tracing("web")  # off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    configure(app, settings)
    register_extensions(app)
    register_blueprints(app)
    register_error_handlers(app)
    instrument_app(app)
    return app


def configure(app: Flask, settings: Settings) -> None:
    from api.docs import DESCRIPTION

    app.config.update(
        LEDGERQ_SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_content_length,
        API_TITLE="ledgerq",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="v1/openapi.json",
        # /api/docs is served by api/apidocs from the pinned swagger-ui-bundle package
        # (no CDN: it works offline, under a strict Content-Security-Policy).
        API_SPEC_OPTIONS={
            "info": {"description": DESCRIPTION},
            # Paths are absolute (/api/v1/..., /healthz), so a server is the origin only:
            # the one that served the document, or `ledgerq up`'s default.
            "servers": [
                {"url": "/", "description": "the server that serves this document"},
                {"url": "http://127.0.0.1:8000", "description": "`ledgerq up` on this machine"},
            ],
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
            },
        },
        JSON_SORT_KEYS=False,
    )


def register_extensions(app: Flask) -> None:
    from api.extensions import Api, cors, database, input_guard, rate_limit, request_context
    from api.transactions import long_poll

    settings = app.config["LEDGERQ_SETTINGS"]
    request_context.init_app(app)
    input_guard.init_app(app)
    database.init_app(app)
    cors.init_app(app, settings)
    rate_limit.init_app(app, settings)
    long_poll.init_app(app, settings)
    app.extensions["ledgerq_api"] = Api(app)


def register_blueprints(app: Flask) -> None:
    from api.accounts.routes import blp as accounts
    from api.analytics.routes import blp as analytics
    from api.apidocs.routes import blp as apidocs
    from api.audit_logs.routes import blp as audit_logs
    from api.auth.routes import blp as auth
    from api.balances.routes import blp as balances
    from api.batches.routes import blp as batches
    from api.dead_letters.routes import blp as dead_letters
    from api.events.routes import blp as events
    from api.fx.routes import blp as fx
    from api.ops.routes import blp as ops
    from api.queues.routes import blp as queues
    from api.schedules.routes import blp as schedules
    from api.transactions.routes import blp as transactions
    from api.users.routes import blp as users
    from api.webhooks.routes import blp as webhooks

    api = app.extensions["ledgerq_api"]
    for blueprint in (
        auth,
        users,
        accounts,
        transactions,
        fx,
        balances,
        batches,
        schedules,
        events,
        webhooks,
        dead_letters,
        queues,
        audit_logs,
        analytics,
    ):
        api.register_blueprint(blueprint, url_prefix=f"/api/v1{blueprint.url_prefix or ''}")
    api.register_blueprint(ops)  # documented too: the probes are part of the contract
    app.register_blueprint(apidocs)


def register_error_handlers(app: Flask) -> None:
    from api.extensions.errors import register_error_handlers as register

    register(app)
