"""When editions are due: pure functions of the settings and ``now`` (no clock, no I/O).

The weekly send happens on ``send_day`` at ``send_time`` in the list's time zone. With
``local_delivery``, each reader gets the edition at ``send_time`` on ``send_day`` in their own
time zone: the edition of a week then starts when that moment first arrives anywhere (UTC+14)
and is complete once it has arrived everywhere (UTC-12), a little over a day later.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from digest.config import WEEKDAYS, Settings

#: The first and last time zones on Earth: local-delivery weeks are bounded by them.
EARLIEST_ZONE = ZoneInfo("Etc/GMT-14")
LATEST_ZONE = ZoneInfo("Etc/GMT+12")


@dataclass(frozen=True, slots=True)
class Schedule:
    weekday: int  # 0 = Monday
    hour: int
    minute: int
    zone: ZoneInfo
    local_delivery: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Schedule:
        hour, minute = (int(part) for part in settings.send_time.split(":"))
        return cls(
            WEEKDAYS.index(settings.send_day), hour, minute, settings.zone, settings.local_delivery
        )

    @property
    def cron_fields(self) -> dict[str, str]:
        """Fields for APScheduler's CronTrigger (hourly with local delivery)."""
        if self.local_delivery:
            return {"minute": str(self.minute)}
        return {
            "day_of_week": WEEKDAYS[self.weekday],
            "hour": str(self.hour),
            "minute": str(self.minute),
        }


def week_of(key: str) -> tuple[int, int]:
    """``"2026-W48"`` -> ``(2026, 48)``."""
    year, _, week = key.partition("-W")
    return int(year), int(week)


def key_for(moment: dt.datetime, zone: dt.tzinfo) -> str:
    return key_of_day(moment.astimezone(zone).date())


def key_of_day(day: dt.date) -> str:
    """The edition of the ISO week holding ``day``: 30 November 2026 -> ``"2026-W49"``."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def first_day(key: str) -> dt.date:
    """The Monday that starts the edition's ISO week: ``"2026-W49"`` -> 30 November 2026."""
    year, week = week_of(key)
    return dt.date.fromisocalendar(year, week, 1)


def send_moment(key: str, schedule: Schedule, zone: dt.tzinfo | None = None) -> dt.datetime:
    """The UTC instant of the week's send in ``zone`` (default: the list's time zone).
    The wall-clock time is kept across daylight-saving changes."""
    year, week = week_of(key)
    day = dt.date.fromisocalendar(year, week, schedule.weekday + 1)
    local = dt.datetime.combine(
        day, dt.time(schedule.hour, schedule.minute), tzinfo=zone or schedule.zone
    )
    return local.astimezone(dt.UTC)


def current_key(now: dt.datetime, schedule: Schedule) -> str:
    """The edition a run at ``now`` works on."""
    return key_for(now, EARLIEST_ZONE if schedule.local_delivery else schedule.zone)


def next_key(key: str) -> str:
    """The period after ``key``: ``"2026-W52"`` -> ``"2026-W53"`` or ``"2027-W01"``."""
    year, week = week_of(key)
    year, week, _ = (dt.date.fromisocalendar(year, week, 1) + dt.timedelta(days=7)).isocalendar()
    return f"{year}-W{week:02d}"


def is_current(key: str, now: dt.datetime, schedule: Schedule) -> bool:
    """Whether ``key``'s period lasts at ``now``: late readers still join its edition."""
    return current_key(now, schedule) == key


def is_due(now: dt.datetime, schedule: Schedule) -> bool:
    """Whether the current week's send time has come (anywhere, with local delivery)."""
    key = current_key(now, schedule)
    zone = EARLIEST_ZONE if schedule.local_delivery else schedule.zone
    return now >= send_moment(key, schedule, zone)


def reader_due(key: str, schedule: Schedule, now: dt.datetime, reader_zone: str | None) -> bool:
    """With local delivery: whether the reader's own send moment of week ``key`` has come."""
    if not schedule.local_delivery:
        return True
    zone = _zone(reader_zone) or schedule.zone
    return now >= send_moment(key, schedule, zone)


def all_readers_due(key: str, schedule: Schedule, now: dt.datetime) -> bool:
    """Whether every reader's send moment has come (always, without local delivery)."""
    return not schedule.local_delivery or now >= send_moment(key, schedule, LATEST_ZONE)


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return None
