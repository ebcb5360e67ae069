"""The digest command as a newcomer uses it, in an empty folder."""

from __future__ import annotations

import email
import email.policy
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from digest.cli.main import cli
from digest.render.renderer import builtin_templates_dir
from digest.sources.demo import load_demo
from digest.store.db import make_engine, session_factory, utcnow
from digest.store.models import Delivery


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith("DIGEST_")]:
        monkeypatch.delenv(name)
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def load_sample_data(folder: Path) -> None:
    factory = session_factory(make_engine(f"sqlite:///{folder / 'digest.sqlite3'}"))
    with factory.begin() as session:
        load_demo(session, now=utcnow())


def statuses(folder: Path) -> set[str]:
    factory = session_factory(make_engine(f"sqlite:///{folder / 'digest.sqlite3'}"))
    with factory() as session:
        return set(session.scalars(select(Delivery.status)))


def deliveries(folder: Path) -> int:
    factory = session_factory(make_engine(f"sqlite:///{folder / 'digest.sqlite3'}"))
    with factory() as session:
        return session.scalar(select(func.count()).select_from(Delivery)) or 0


def test_demo_sends_this_week_once_and_says_where_to_look(folder: Path) -> None:
    first = run("demo")
    assert first.exit_code == 0, first.output
    assert "Loaded sample data: 36 summaries, 24 subscribers." in first.output
    edition = next((folder / "outbox").iterdir())
    assert f"sent 24 via file into outbox/{edition.name}" in first.output
    assert f"Look at outbox/{edition.name}/" in first.output
    # not a terminal: progress as log lines, the last one once
    assert first.output.count("sending: 24/24 handled, 0 failed") == 1
    emls = sorted(edition.glob("*.eml"))
    pages = sorted(edition.glob("variant-*.html"))
    assert len(emls) == 24 and 1 < len(pages) < 24
    msg = email.message_from_bytes(emls[0].read_bytes(), policy=email.policy.default)
    assert msg["List-Unsubscribe"].startswith("<https://example.org/digest/u/")
    assert pages[0].read_text().lower().startswith("<!doctype html>")

    second = run("demo")
    assert second.exit_code == 0, second.output
    assert f"Nothing new to send for edition {edition.name}; 24 sent earlier." in second.output
    assert "Loaded sample data" not in second.output
    assert len(list(edition.glob("*.eml"))) == 24
    assert deliveries(folder) == 24


def test_preview_writes_what_a_reader_gets_and_touches_no_ledger_row(folder: Path) -> None:
    assert run("demo").exit_code == 0
    before = deliveries(folder)
    result = run("preview", "--categories", "pharmacology,Neurology", "--out", "look")
    assert result.exit_code == 0, result.output
    assert "new summaries in Neurology and Pharmacology" in result.output
    files = sorted(p.name for p in (folder / "look").iterdir())
    assert files == [
        "neurology-pharmacology.eml",
        "neurology-pharmacology.html",
        "neurology-pharmacology.txt",
    ]
    msg = email.message_from_bytes(
        (folder / "look" / files[0]).read_bytes(), policy=email.policy.default
    )
    assert (
        msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
        == (folder / "look" / files[2]).read_text()
    )
    assert deliveries(folder) == before


def test_preview_of_an_unknown_category_is_one_clear_line(folder: Path) -> None:
    assert run("demo").exit_code == 0
    result = CliRunner().invoke(cli, ["preview", "--categories", "astrology"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: unknown category 'astrology' (see `digest categories list`)"
    ]


def test_dry_run_reports_per_variant_and_sends_nothing(folder: Path) -> None:
    assert run("init").exit_code == 0
    load_sample_data(folder)
    result = run("send", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Dry run: would send 24 messages in " in result.output
    assert "Nothing was sent." in result.output
    assert not (folder / "outbox").exists()
    assert deliveries(folder) == 0


def test_categories_list_shows_counts(folder: Path) -> None:
    run("demo")
    result = run("categories", "list")
    assert result.exit_code == 0
    line = next(row for row in result.output.splitlines() if "pharmacology" in row)
    assert "Pharmacology" in line and line.split("│")[3].strip() == "7"


def test_missing_config_stops_with_one_line(folder: Path) -> None:
    result = CliRunner().invoke(cli, ["send"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: no digest.toml in {folder}: run `digest init` to create one there, "
        "or set DIGEST_CONFIG (or --config) to your digest.toml"
    ]


def test_uninitialised_database_says_run_init(folder: Path) -> None:
    from digest.config import STARTER_CONFIG

    (folder / "digest.toml").write_text(STARTER_CONFIG)
    result = CliRunner().invoke(cli, ["send"])
    assert result.exit_code == 1
    assert "run `digest init`" in result.output


def test_broken_template_stops_before_any_email_naming_file_and_line(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = folder / "templates"
    shutil.copytree(builtin_templates_dir(), own)
    mjml = own / "email" / "digest.mjml.j2"
    lines = mjml.read_text().splitlines()
    lines[30] = "{{ card.no_such_field }"
    mjml.write_text("\n".join(lines))
    # the demo only runs in a folder it set up itself: the templates come from the environment
    monkeypatch.setenv("DIGEST_TEMPLATES_DIR", str(own))
    result = CliRunner().invoke(cli, ["demo"])  # loads the data, then must stop before sending
    assert result.exit_code == 1
    assert "digest.mjml.j2:31" in result.output
    assert not list(folder.glob("outbox/*/*.eml"))
    assert statuses(folder) == {"queued"}


def test_editions_list_show_and_cancel(folder: Path) -> None:
    assert run("demo").exit_code == 0
    key = next((folder / "outbox").iterdir()).name
    listing = run("editions", "list")
    assert key in listing.output and "24 sent" in listing.output
    shown = run("editions", "show", key)
    assert f"Edition {key}: complete" in shown.output
    assert "deliveries: 24 sent" in shown.output
    assert "Clinical care" in shown.output  # a variant's categories
    refused = CliRunner().invoke(cli, ["editions", "cancel", key])
    assert refused.exit_code == 1
    assert f"Error: edition {key} is complete: every message has gone out" in refused.output
    unknown = CliRunner().invoke(cli, ["editions", "show", "1999-W01"])
    assert unknown.output.strip() == "Error: no edition 1999-W01 (see `digest editions list`)"


def test_send_due_is_safe_to_run_every_five_minutes(folder: Path) -> None:
    assert run("demo").exit_code == 0  # this week's edition is complete
    result = run("send", "--due")
    assert result.exit_code == 0
    assert result.output.startswith("Nothing to do: edition ")


def test_deliveries_shows_the_ledger_without_tokens(folder: Path) -> None:
    assert run("demo").exit_code == 0
    key = next((folder / "outbox").iterdir()).name
    result = run("deliveries", "--edition", key, "--status", "sent", "--limit", "100")
    assert result.exit_code == 0
    lines = [line for line in result.output.splitlines() if "@example.org" in line]
    assert len(lines) == 24 and all(" sent " in line for line in lines)
    emls = list((folder / "outbox" / key).glob("*.eml"))
    token = emls[0].read_text().split("/u/")[1][:43]
    assert token not in result.output
