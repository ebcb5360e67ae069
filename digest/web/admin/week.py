"""The "This week" page and its buttons: run the preflight, send or cancel the edition
(each after a confirmation page), each calling the library function the CLI calls:
:func:`digest.edition.checks.run_checks` and :func:`digest.notices.checks.notice_problems`
(``digest check``), :func:`digest.edition.run.run_edition` (``digest send``, here in a
background thread: :mod:`~digest.web.admin.sending`) and
:func:`digest.edition.manage.cancel_edition` (``digest editions cancel``).

GET pages change nothing; every button is a POST with the session's CSRF token. While a
send runs, the page reloads itself every few seconds (``<meta refresh>``: no script).
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from digest.edition.checks import run_checks
from digest.edition.manage import cancel_edition, edition_info
from digest.edition.report import EditionReport
from digest.edition.run import run_edition
from digest.errors import DigestError
from digest.notices.checks import NOTICES, notice_problems
from digest.planning.when import Schedule, current_key
from digest.store.db import transaction
from digest.web.admin.blueprint import bp
from digest.web.admin.sending import Progress
from digest.web.admin.state import PreflightRun, current_admin
from digest.web.admin.weekview import build_week
from digest.web.state import current_web

#: Seconds between reloads of the week page while a send runs.
RELOAD_SECONDS = 3


def this_key() -> str:
    web = current_web()
    return current_key(web.now(), Schedule.from_settings(web.settings))


@bp.get("/")
def week() -> str:
    web, admin = current_web(), current_admin()
    job = admin.sends.current
    running = job is not None and job.running
    plan = admin.week(fresh=False)
    with web.factory() as session:
        model = build_week(session, web.settings, plan, now=web.now(), job=job, cache=admin.checks)
    preflight = admin.preflight if admin.preflight and admin.preflight.edition == plan.key else None
    reload = RELOAD_SECONDS if running else 0
    return render_template(
        "admin/week.html",
        week=model,
        job=job,
        preflight=preflight,
        reload=reload,
        planned_at=admin.planned_at,
    )


@bp.post("/preflight")
def preflight() -> WerkzeugResponse:
    """``digest check``: every variant (or a sample), the MJML validator, the other emails."""
    web, admin = current_web(), current_admin()
    moment = web.now()
    names = " and ".join(name for name, _ in NOTICES)
    admin.checks.clear()  # the page checks its variants again too (templates may have changed)
    admin.forget_plan()
    try:
        report = run_checks(web.factory, web.settings, now=moment)
        notices = notice_problems(web.settings, now=moment)
    except DigestError as exc:
        admin.preflight = PreflightRun(moment, this_key(), None, (), names, error=str(exc))
    else:
        problems = (*report.problems, *notices)
        admin.preflight = PreflightRun(moment, report.plan.key, report, problems, names)
    return redirect(url_for("admin.week", _anchor="preflight"), code=303)


def _confirm(action: str) -> tuple[str, int] | str:
    web = current_web()
    key = this_key()
    with web.factory() as session:
        try:
            info = edition_info(session, key)
        except DigestError:
            info = None
    plan = current_admin().week(fresh=False)
    readers = sum(plan.recipients.values())
    return render_template("admin/confirm.html", action=action, key=key, info=info, readers=readers)


@bp.get("/send")
def send_confirm() -> tuple[str, int] | str:
    return _confirm("send")


@bp.get("/cancel")
def cancel_confirm() -> tuple[str, int] | str:
    return _confirm("cancel")


def _same_week() -> str | None:
    """The edition the confirmation page named, if it is still this week's."""
    key = this_key()
    if str(request.form.get("edition", "")) != key:
        flash(f"The week has changed since that page: it is now edition {key}.", "error")
        return None
    return key


@bp.post("/send")
def send() -> WerkzeugResponse:
    """Start ``digest send`` for this week's edition in a thread of the server."""
    web, admin = current_web(), current_admin()
    key = _same_week()
    if key is None:
        return redirect(url_for("admin.week"), code=303)

    def run(progress: Progress) -> EditionReport:
        transport = web.transport()
        try:
            return run_edition(
                web.settings,
                transport,
                now=web.now(),
                key=key,
                engine=admin.engine,
                progress=progress,
            )
        finally:
            transport.close()
            admin.forget_plan()

    try:
        admin.sends.start(key, run, now=web.now(), clock=web.now)
    except DigestError as exc:
        flash(f"Not started: {exc}.", "error")
    else:
        flash(f"Started sending edition {key}; this page shows its progress.", "sent")
    return redirect(url_for("admin.week"), code=303)


@bp.post("/cancel")
def cancel() -> WerkzeugResponse:
    """``digest editions cancel``: the readers still queued will not get it."""
    web, admin = current_web(), current_admin()
    key = _same_week()
    if key is None:
        return redirect(url_for("admin.week"), code=303)
    try:
        with transaction(web.factory) as session:
            dropped = cancel_edition(session, key)
    except DigestError as exc:
        flash(f"Not cancelled: {exc}.", "error")
    else:
        admin.forget_plan()
        flash(
            f"Cancelled edition {key}: {dropped} queued messages will not be sent; a send "
            "that is running stops after its current batch.",
            "sent",
        )
    return redirect(url_for("admin.week"), code=303)
