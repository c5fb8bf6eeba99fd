from __future__ import annotations

from flask.views import MethodView

from api.analytics.schemas import AccountFiguresSchema, DailyArgsSchema, DailyFiguresSchema, RangeArgsSchema
from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session
from db.analytics import service as analytics

blp = Blueprint("analytics", __name__, url_prefix="/analytics", description="Analytics")


@blp.route("/daily")
class DailyAnalytics(MethodView):
    @blp.login_required("finance", "admin")
    @blp.arguments(DailyArgsSchema, location="query")
    @blp.response(200, DailyFiguresSchema)
    @blp.documents_errors(422)
    @blp.doc(operationId="getDailyAnalytics")
    def get(self, args):
        """Transactions per UTC day of creation and currency.

        For each day from `from` to `to` (inclusive, at most 366 days; default: the 30
        days up to today) on which a transaction was created, and each currency: `count`
        created, how many of them are `completed` and `failed` now (a transaction
        completed the next day still counts on the day it was created), and `volume`, the
        sum of the completed amounts. Days without a transaction are left out. An exchange counts in its source currency,
        with its source amount. Read from rollups the database keeps in the same
        transaction as every change: as fresh as the ledger, and fast on any history."""
        items = analytics.daily(get_session(), args["from_"], args["to"], args["currency"])
        return {"items": items}


@blp.route("/accounts/<uuid:account_id>")
class AccountAnalytics(MethodView):
    @blp.login_required()
    @blp.arguments(RangeArgsSchema, location="query")
    @blp.response(200, AccountFiguresSchema)
    @blp.documents_errors(404, 422)
    @blp.doc(operationId="getAccountAnalytics")
    def get(self, args, account_id):
        """Money into and out of one account over a range of UTC days.

        `incoming` and `outgoing` are the completed amounts the account's ledger entries
        credited and debited on the days from `from` to `to` (inclusive, at most 366
        days, default the 30 up to today; the day of an entry is the day its transaction
        completed), in the account's currency; `count` is how many completed
        transactions moved its money. For an exchange, the source account's outgoing is
        the source amount and the target account's incoming the amount it received. Owners see their accounts,
        finance and admin every account; anyone else gets 404."""
        return analytics.account_figures(
            get_session(), current_principal(), account_id, args["from_"], args["to"]
        )
