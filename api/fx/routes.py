"""Exchange rates: finance/admin set them (PUT, audited, every version kept); anyone
signed in reads them. Exchanges themselves are POST /transactions/exchange."""

from __future__ import annotations

from flask import g
from flask.views import MethodView

from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session, get_uow
from api.fx.schemas import RateHistoryArgsSchema, RateListSchema, RatePageSchema, RateSchema, RateUpdateSchema
from db.fx import service

blp = Blueprint("fx", __name__, url_prefix="/fx", description="Exchange rates")

_PAIR_422 = "`validation_error`: an unknown currency, base equal to quote, or a bad `rate` / `fee_bps`"


@blp.route("/rates")
class Rates(MethodView):
    @blp.login_required()
    @blp.response(200, RateListSchema)
    def get(self):
        """Every pair's current rate and fee.

        One item per pair that has a rate (its newest version), with `version`, when
        (`updated_at`) and by whom (`updated_by`) it was set; by base, then quote."""
        return {"items": service.list_rates(get_session())}


@blp.route("/rates/<string:base>/<string:quote>")
class Rate(MethodView):
    @blp.login_required()
    @blp.response(200, RateSchema)
    @blp.documents_errors(404, 422, codes={422: _PAIR_422})
    def get(self, base, quote):
        """The pair's current rate.

        1 `base` buys `rate` `quote`, less `fee_bps` basis points of the amount. 404 when
        no rate was ever set for the pair (pairs are directional: EUR/USD is not USD/EUR)."""
        return service.get_rate(get_session(), base, quote)

    @blp.login_required("finance", "admin")
    @blp.arguments(RateUpdateSchema)
    @blp.response(200, RateSchema)
    @blp.documents_errors(400, 413, 422, 503, codes={422: _PAIR_422})
    def put(self, data, base, quote):
        """Set the pair's rate and fee (finance/admin).

        A new version when either changed, audited (`fx.rate_set`, with the previous
        figures); the same figures again change nothing. Exchanges already requested keep
        the version they were quoted; new ones get this one. `fee_bps` defaults to 0."""
        uow = get_uow()
        version = service.set_rate(
            uow.session,
            current_principal(),
            base,
            quote,
            rate=data["rate"],
            fee_bps=data["fee_bps"],
            request_id=g.request_id,
        )
        uow.commit()
        return version


@blp.route("/rates/<string:base>/<string:quote>/history")
class RateHistory(MethodView):
    @blp.login_required()
    @blp.arguments(RateHistoryArgsSchema, location="query")
    @blp.keyset_page(lambda version: version.id)
    @blp.response(200, RatePageSchema)
    @blp.documents_errors(422, codes={422: _PAIR_422})
    def get(self, args, base, quote, page):
        """Every version the pair had, newest first.

        The history that says which rate applied to which exchange (a transaction's
        `rate_version` is one of these `version`s). Cursor-paginated."""
        return service.rate_history(get_session(), base, quote, page)
