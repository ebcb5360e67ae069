"""What every `digest` command shares, as a user sees it: help with examples, one way to
name an edition, validated options, exit statuses, output that survives a pipe, a demo that
never touches a real list, and hints a pip user can follow."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from digest.cli.main import cli
from digest.render import mjml_lint
from digest.render.renderer import builtin_templates_dir
from digest.sources.demo import DEMO_MARKER, demo_data, load_demo
from digest.store.db import make_engine, session_factory, utcnow
from digest.store.models import Edition, Summary
from subscribers.models import Subscriber
from tests.conftest import SmtpServer

ROOT = Path(__file__).resolve().parents[1]
# 120 characters: the kind of address a 80-column table used to split
CATEGORY = "Neurology"
LONG = "reader." + "a" * 56 + "@" + "department-of-spinal-cord-rehabilitation." + "b" * 11 + ".org"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("DIGEST_")]:
        monkeypatch.delenv(name)
    return tmp_path


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input)


def count(folder: Path, what: type) -> int:
    factory = session_factory(make_engine(f"sqlite:///{folder / 'digest.sqlite3'}"))
    with factory() as session:
        return session.scalar(select(func.count()).select_from(what)) or 0


def commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


def test_every_group_and_command_has_an_example_in_its_help() -> None:
    listed = commands(cli)
    assert ("editions",) in listed and ("categories",) in listed and ("bounces",) in listed
    for path in listed:
        result = run(*path, "--help")
        assert result.exit_code == 0, path
        assert "Example" in result.output, f"digest {' '.join(path)} --help has no example"


def test_the_edition_key_is_one_validated_argument_everywhere(folder: Path) -> None:
    for args in (
        ("send", "2026-49"),
        ("editions", "show", "W49"),
        ("editions", "cancel", "2026-W54", "--yes"),
        ("send", "2025-W53"),  # 2025 has 52 weeks
        ("deliveries", "2026-W0"),
        ("deliverability", "next week"),
        ("bounces", "resume", "2026-w4x"),
    ):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "is not an edition key: give a week such as 2026-W49" in result.output, args
    assert run("editions", "cancel", "--help").output.count("KEY") >= 2
    assert "[KEY]" in run("deliveries", "--help").output


def test_limit_below_one_is_a_usage_error(folder: Path) -> None:
    for args in (("editions", "list"), ("deliveries",), ("subscribers", "list")):
        result = run(*args, "--limit", "0")
        assert result.exit_code == 2, args
        assert "0 is not in the range x>=1" in result.output


def test_demo_in_a_configured_folder_refuses_and_changes_nothing(folder: Path) -> None:
    assert run("init").exit_code == 0
    imported = run("summaries", "import", str(ROOT / "examples" / "summaries.json"))
    assert imported.exit_code == 0, imported.output
    added = run("subscribers", "add", "real@example.com", "-c", CATEGORY, "--confirmed")
    assert added.exit_code == 0, added.output
    summaries = count(folder, Summary)
    config = (folder / "digest.toml").read_bytes()
    result = run("demo")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: this folder has a digest.toml that digest demo did not create: run the demo "
        "in an empty folder, e.g. mkdir try && cd try && digest demo"
    ]
    assert (folder / "digest.toml").read_bytes() == config
    assert count(folder, Subscriber) == 1
    assert count(folder, Summary) == summaries
    assert count(folder, Edition) == 0
    assert not (folder / "outbox").exists()


def test_demo_refuses_a_database_it_did_not_fill(folder: Path) -> None:
    first = run("demo")
    assert first.exit_code == 0, first.output
    assert (folder / "digest.toml").read_text().splitlines()[0] == DEMO_MARKER
    again = run("demo")
    assert again.exit_code == 0 and "24 sent earlier" in again.output
    added = run("subscribers", "add", "real@example.com", "-c", "Neurology", "--confirmed")
    assert added.exit_code == 0
    refused = run("demo")
    assert refused.exit_code == 1
    assert refused.output.strip() == (
        "Error: this folder has a database that digest demo did not create (subscribers that "
        "are not sample data): run the demo in an empty folder, e.g. mkdir try && cd try && "
        "digest demo"
    )
    assert count(folder, Subscriber) == 25


def test_tables_keep_long_values_whole_when_piped_and_csv_json_are_offered(
    folder: Path,
) -> None:
    assert len(LONG) == 120
    assert run("demo").exit_code == 0
    added = run("subscribers", "add", LONG, "-c", "Neurology", "--confirmed", "--name", "Zoë")
    assert added.exit_code == 0, added.output
    table = run("subscribers", "list", "--search", "department-of")
    assert table.exit_code == 0
    line = next(row for row in table.output.splitlines() if "reader." in row)
    assert LONG in line and "Zoë" in line and "active" in line
    as_csv = run("subscribers", "list", "--format", "csv", "--search", "department-of")
    assert list(csv.reader(io.StringIO(as_csv.output))) == [
        ["email", "name", "status", "categories", "added"],
        [LONG, "Zoë", "active", "Neurology", as_csv.output.split(",")[-1].strip()],
    ]
    as_json = json.loads(run("subscribers", "list", "--format", "json", "--limit", "500").output)
    assert len(as_json) == 25 and {"email": LONG}.items() <= as_json[-1].items()
    # a name typed into the sign-up form never runs as a spreadsheet formula
    formula = run("subscribers", "add", "f@example.org", "-c", "Neurology", "--name", "=1+2")
    assert formula.exit_code == 0, formula.output
    exported = run("subscribers", "list", "--format", "csv", "--search", "f@example.org")
    assert list(csv.reader(io.StringIO(exported.output)))[1][1] == "'=1+2"

    ledger = run("deliveries", "--format", "json", "--limit", "1000")
    rows = json.loads(ledger.output)
    assert len(rows) == 24 and {r["status"] for r in rows} == {"sent"}
    key = rows[0]["edition"]
    for args in (("deliveries", key), ("deliveries", "--edition", key)):
        lines = [row for row in run(*args, "--limit", "100").output.splitlines() if "@" in row]
        assert len(lines) == 24
    flat = run("deliveries", key, "--format", "csv", "--status", "sent", "--limit", "100")
    parsed = list(csv.DictReader(io.StringIO(flat.output)))
    assert len(parsed) == 24 and parsed[0]["edition"] == key


def test_cancel_asks_first_unless_yes(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("init").exit_code == 0
    factory = session_factory(make_engine(f"sqlite:///{folder / 'digest.sqlite3'}"))
    with factory.begin() as session:
        load_demo(session, now=utcnow())
    # a broken template stops the send after planning: the edition stays queued
    own = folder / "templates"
    shutil.copytree(builtin_templates_dir(), own)
    (own / "email" / "digest.mjml.j2").write_text("{{ broken }")
    monkeypatch.setenv("DIGEST_TEMPLATES_DIR", str(own))
    assert run("send").exit_code == 1
    with factory() as session:
        key = session.scalars(select(Edition.key)).one()
    declined = run("editions", "cancel", key, input="n\n")
    assert declined.exit_code == 1
    assert f"Cancel edition {key} (" in declined.output and "Aborted!" in declined.output
    assert f"Edition {key}: cancelled" not in run("editions", "show", key).output
    done = run("editions", "cancel", key, "--yes")
    assert done.exit_code == 0, done.output
    assert done.output.startswith(f"Cancelled edition {key}: 24 queued messages")
    assert f"Edition {key}: cancelled" in run("editions", "show", key).output


def test_mjml_hint_works_for_a_pip_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mjml_lint, "CI_PREFIX", tmp_path / "no-ci")
    monkeypatch.setattr(mjml_lint, "USER_PREFIX", tmp_path / "no-user")
    monkeypatch.delenv("DIGEST_MJML_VALIDATOR", raising=False)
    monkeypatch.setattr(
        mjml_lint.shutil, "which", lambda name: "/usr/bin/node" if name == "node" else None
    )
    command, detail = mjml_lint.find_validator()
    assert command is None
    assert "npm install -g mjml@4" in detail and "DIGEST_MJML_VALIDATOR" in detail
    assert "site-packages" not in detail and ".ci" not in detail


def test_the_wheel_installs_no_top_level_scheduler_module() -> None:
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    included = wheel["targets"]["wheel"]["only-include"]
    assert "scheduler.py" not in included and "digest" in included
    assert len((ROOT / "scheduler.py").read_text().splitlines()) < 15


def test_demo_refuses_a_real_database_named_by_the_environment(
    folder: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path_factory.mktemp("real")
    monkeypatch.chdir(real)
    assert run("init").exit_code == 0
    assert run("summaries", "import", str(ROOT / "examples" / "summaries.json")).exit_code == 0
    monkeypatch.chdir(folder)
    monkeypatch.setenv("DIGEST_DATABASE_URL", f"sqlite:///{real / 'digest.sqlite3'}")
    result = run("demo")
    assert result.exit_code == 1
    assert "database that digest demo did not create (summaries that are not sample data)" in (
        result.output
    )
    assert list(folder.iterdir()) == []
    assert count(real, Edition) == 0


def test_a_send_where_every_message_fails_exits_1(
    folder: Path, monkeypatch: pytest.MonkeyPatch, smtp_server: SmtpServer
) -> None:
    assert run("init").exit_code == 0
    factory = session_factory(make_engine(f"sqlite:///{folder / 'digest.sqlite3'}"))
    with factory.begin() as session:
        load_demo(session, now=utcnow())
    for person in demo_data()["subscribers"]:
        smtp_server.handler.refuse[person["email"]] = "550 5.1.1 no such mailbox"
    monkeypatch.setenv("DIGEST_SMTP_URL", smtp_server.url)
    result = run("send", "--transport", "smtp")
    assert result.exit_code == 1, result.output
    assert "24 failed for good: 24 x " in result.output
    assert smtp_server.handler.messages == []
