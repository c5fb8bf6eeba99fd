"""Standing orders: /schedules. Runs are ordinary transactions (GET /schedules/{id}/runs)."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from api.extensions import Blueprint
from api.extensions.auth import current_principal
from api.extensions.database import get_session, get_uow
from api.extensions.schemas import PageArgsSchema
from api.schedules.schemas import (
    ScheduleCreateSchema,
    ScheduleListArgsSchema,
    SchedulePageSchema,
    ScheduleSchema,
)
from api.transactions.schemas import TransactionPageSchema
from db.schedules import service as schedules

blp = Blueprint(
    "schedules", __name__, url_prefix="/schedules", description="Standing orders (recurring transfers)"
)


@blp.route("")
class Schedules(MethodView):
    @blp.login_required()
    @blp.arguments(ScheduleCreateSchema)
    @blp.response(201, ScheduleSchema)
    @blp.documents_errors(400, 404, 413, 422)
    def post(self, data):
        """Create a standing order from one of your accounts (finance/admin: any account).

        Each run creates one ordinary transfer with `schedule_id`, at most once per run time.
        The template is checked like a transfer (accounts, currency, amount) when created;
        balances are checked by the worker at each run."""
        uow = get_uow()
        schedule = schedules.create(
            uow.session,
            current_principal(),
            schedules.StandingOrder(**data),
            settings=current_app.config["LEDGERQ_SETTINGS"],
        )
        uow.commit()
        return schedule

    @blp.login_required()
    @blp.arguments(ScheduleListArgsSchema, location="query")
    @blp.keyset_page(lambda schedule: schedule.seq)
    @blp.response(200, SchedulePageSchema)
    @blp.documents_errors(404, 422)
    def get(self, args, page):
        """List standing orders, newest first.

        Deleted schedules only with `?status=deleted`. Customers see the schedules they
        created or that draw on their accounts; finance/admin see all."""
        return schedules.list_visible(
            get_session(), current_principal(), page, status=args["status"], account_id=args["account_id"]
        )


@blp.route("/<uuid:schedule_id>")
class ScheduleById(MethodView):
    @blp.login_required()
    @blp.response(200, ScheduleSchema)
    @blp.documents_errors(404)
    def get(self, schedule_id):
        """One schedule (standing order), with `next_run_at`.

        `next_run_at` is null unless the schedule is active. Visible to whoever created it or
        owns its source account, and to finance/admin; 404 for anyone else."""
        return schedules.visible_schedule(get_session(), current_principal(), schedule_id)

    @blp.login_required()
    @blp.response(204)
    @blp.documents_errors(404)
    def delete(self, schedule_id):
        """Delete a schedule: stop it for good.

        Its status becomes `deleted` and no run is created any more; the runs already made stay
        in the transaction history."""
        uow = get_uow()
        schedules.delete(uow.session, current_principal(), schedule_id)
        uow.commit()


@blp.route("/<uuid:schedule_id>/pause")
class PauseSchedule(MethodView):
    @blp.login_required()
    @blp.response(200, ScheduleSchema)
    @blp.documents_errors(404, 409)
    def post(self, schedule_id):
        """Pause a schedule: stop creating runs until resumed.

        A no-op when already paused; 409 when ended or deleted. Runs already created are not
        affected."""
        uow = get_uow()
        schedule = schedules.pause(uow.session, current_principal(), schedule_id)
        uow.commit()
        return schedule


@blp.route("/<uuid:schedule_id>/resume")
class ResumeSchedule(MethodView):
    @blp.login_required()
    @blp.response(200, ScheduleSchema)
    @blp.documents_errors(404, 409)
    def post(self, schedule_id):
        """Resume a paused schedule.

        Runs continue with the next run time after now (the paused period is not caught
        up) and the failure streak is reset. No-op when active; 409 when ended or deleted."""
        uow = get_uow()
        schedule = schedules.resume(uow.session, current_principal(), schedule_id)
        uow.commit()
        return schedule


@blp.route("/<uuid:schedule_id>/runs")
class ScheduleRuns(MethodView):
    @blp.login_required()
    @blp.arguments(PageArgsSchema, location="query")
    @blp.keyset_page(lambda tx: tx.seq)
    @blp.response(200, TransactionPageSchema)
    @blp.documents_errors(404, 422)
    def get(self, args, schedule_id, page):
        """The schedule's runs, newest first.

        Each run is an ordinary transaction with `schedule_id` and `scheduled_run_at`;
        cursor-paginated."""
        return schedules.runs(get_session(), current_principal(), schedule_id, page)
