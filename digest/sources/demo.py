"""``digest demo``: the shipped sample data, loaded with dates relative to now, and the check
that the demo only ever runs on a folder and a database it created itself."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session

from digest.sources.store import SummaryRecord, ensure_category, upsert_summary
from digest.store.models import Summary
from subscribers import service

#: First line of the digest.toml that ``digest demo`` writes: the mark of a demo folder.
DEMO_MARKER = "# created by digest demo"
REFUSAL = "run the demo in an empty folder, e.g. mkdir try && cd try && digest demo"

#: Demo readers joined a day before the demo runs, so their first digest covers this week.
DEMO_JOINED = dt.timedelta(days=1)


@dataclass
class DemoLoad:
    summaries_added: int = 0
    subscribers_added: int = 0


def demo_data() -> dict[str, Any]:
    text = resources.files("digest").joinpath("data/demo.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def load_demo(session: Session, *, now: dt.datetime) -> DemoLoad:
    """Load the sample categories, summaries and subscribers; already loaded ones are kept."""
    data = demo_data()
    result = DemoLoad()
    for category in data["categories"]:
        ensure_category(session, category["slug"], category["name"])
    for item in data["summaries"]:
        published = now - dt.timedelta(days=float(item["published_days_ago"]))
        fields = {
            k: v
            for k, v in item.items()
            if k not in ("title", "url", "categories", "published_days_ago")
        }
        record = SummaryRecord(
            title=item["title"],
            url=item["url"],
            published_at=published,
            categories=tuple(item["categories"]),
            fields=fields,
        )
        if session.scalar(select(Summary.id).where(Summary.url == record.url)) is None:
            upsert_summary(session, record, now=now)
            result.summaries_added += 1
    for person in data["subscribers"]:
        if service.find_by_email(session, person["email"]) is None:
            service.add_subscriber(
                session,
                person["email"],
                person["categories"],
                name=person.get("name"),
                confirmed=True,
                now=now - DEMO_JOINED,
            )
            result.subscribers_added += 1
    return result


def config_is_demo(path: Path) -> bool:
    """Whether the config file at ``path`` is one ``digest demo`` wrote."""
    try:
        with path.open(encoding="utf-8") as f:
            return f.readline().strip() == DEMO_MARKER
    except (OSError, UnicodeDecodeError):
        return False


def foreign_data(engine: Engine) -> str | None:
    """What in the database the demo did not put there (a subscriber or a summary that is
    not sample data), or None when it is empty or holds only the demo's sample data."""
    from subscribers.models import Subscriber

    tables = set(inspect(engine).get_table_names())
    data = demo_data()
    with Session(engine) as session:
        if "subscribers" in tables:
            sample = {person["email"].lower() for person in data["subscribers"]}
            for address in session.scalars(select(Subscriber.email)):
                if address is not None and address.lower() not in sample:
                    return "subscribers that are not sample data"
        if "summaries" in tables:
            urls = {item["url"] for item in data["summaries"]}
            for url in session.scalars(select(Summary.url)):
                if url not in urls:
                    return "summaries that are not sample data"
    return None
