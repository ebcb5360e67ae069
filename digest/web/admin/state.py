"""What the console's views share besides :class:`digest.web.state.WebApp`: the password's
hash, the sign-in lockout, the send started from the console, this week's plan (cached for
a minute, since planning reads every reader) and the last preflight run. Kept in
``current_app.extensions`` by ``create_admin_app`` and read through :func:`current_admin`."""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import Engine

from digest.edition.checks import CheckReport, WeekPlan, plan_week
from digest.planning.when import Schedule, current_key
from digest.web.admin.lockout import Lockout
from digest.web.admin.sending import SendJobs
from digest.web.admin.weekview import CheckCache
from digest.web.state import current_web

#: The key of the console's state in ``app.extensions``.
EXTENSION = "digest_admin"
#: Seconds a variant page and its frames reuse the plan the week page made.
PLAN_TTL = 60.0


@dataclass(frozen=True)
class PreflightRun:
    """The outcome of the "Run the preflight" button, shown on the week page."""

    at: dt.datetime
    edition: str
    report: CheckReport | None
    problems: tuple[str, ...]
    notices: str  # which other emails were checked too
    error: str = ""


@dataclass
class AdminState:
    engine: Engine
    password_hash: str | None
    lockout: Lockout = field(default_factory=Lockout)
    sends: SendJobs = field(default_factory=SendJobs)
    preflight: PreflightRun | None = None
    checks: CheckCache = field(default_factory=lambda: CheckCache(ttl=PLAN_TTL))
    _plan: tuple[float, WeekPlan, dt.datetime] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def local_only(self) -> bool:
        """Without a password the console answers loopback clients only."""
        return self.password_hash is None

    def week(self, *, fresh: bool) -> WeekPlan:
        """This week's plan as a dry run sees it; pages reuse the last one for a minute
        unless ``fresh`` (planning reads every reader: seconds for 100,000; the buttons
        plan again)."""
        web = current_web()
        moment = web.now()
        with self._lock:
            kept = self._plan
        if (
            not fresh
            and kept is not None
            and time.monotonic() - kept[0] < PLAN_TTL
            and kept[1].key == current_key(moment, Schedule.from_settings(web.settings))
        ):
            return kept[1]
        plan = plan_week(web.factory, web.settings, moment)
        with self._lock:
            self._plan = (time.monotonic(), plan, moment)
        return plan

    @property
    def planned_at(self) -> dt.datetime | None:
        """When the plan pages reuse was made (by the console's clock)."""
        with self._lock:
            return self._plan[2] if self._plan else None

    def forget_plan(self) -> None:
        with self._lock:
            self._plan = None


def current_admin() -> AdminState:
    """The console's state of the app handling the current request."""
    state = current_app.extensions[EXTENSION]
    assert isinstance(state, AdminState), "create_admin_app() installs the console's state"
    return state
