"""Preflight: one test per check, each seeding exactly that problem in an admin's own
templates (or data), as ``digest check`` reports it; and a send that stops before any message."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest.cli.main import cli
from digest.config import Settings
from digest.edition import render_pool
from digest.edition import run as run_module
from digest.edition.run import run_edition
from digest.errors import PreflightError
from digest.mail.transports import MemoryTransport
from digest.render import mjml_lint
from digest.render.renderer import builtin_templates_dir
from digest.store.db import make_engine, session_factory, utcnow
from digest.store.models import Delivery
from tests.conftest import NOW, add_categories, add_reader, add_summary

DAY = dt.timedelta(days=1)
POSTAL = "Example Foundation, 1 Example Street, Springfield 00000, Country"


def a_week(factory: sessionmaker[Session], now: dt.datetime) -> None:
    """Two variants: a reader of Pharmacology and Neurology (3 summaries), one of
    Rehabilitation (1 summary)."""
    add_categories(factory, "Pharmacology", "Neurology", "Rehabilitation")
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], now - 1 * DAY)
    add_summary(factory, "Minocycline and inflammation", ["pharmacology", "neurology"], now - DAY)
    add_summary(factory, "Nerve transfers for hand function", ["neurology"], now - 3 * DAY)
    add_summary(factory, "Robotic gait training at home", ["rehabilitation"], now - 4 * DAY)
    add_reader(factory, "zoe@example.org", ["pharmacology", "neurology"], joined=now - DAY)
    add_reader(factory, "rehab@example.org", ["rehabilitation"], joined=now - DAY)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("DIGEST_")]:
        monkeypatch.delenv(name)
    assert check_output("init").exit_code == 0
    a_week(factory_in(tmp_path), utcnow())
    return tmp_path


def factory_in(folder: Path) -> sessionmaker[Session]:
    return session_factory(make_engine(f"sqlite:///{folder / 'digest.sqlite3'}"))


def check_output(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args or ["check"]))


def own_templates(folder: Path, name: str, old: str, new: str) -> tuple[Path, int]:
    """Copy the built-in templates, replace ``old`` by ``new`` in ``email/name`` and point
    digest.toml at the copy; returns the file and the line where ``new`` starts."""
    own = folder / "mine"
    if not own.exists():
        shutil.copytree(builtin_templates_dir(), own)
        with (folder / "digest.toml").open("a") as config:
            config.write('templates_dir = "mine"\n')
    path = own / "email" / name
    source = path.read_text()
    assert source.count(old) == 1, f"{old!r} not found once in {name}"
    source = source.replace(old, new)
    path.write_text(source)
    return path, source[: source.index(new)].count("\n") + 1 if new else 0


def problems(result: Result) -> list[str]:
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Error: preflight found"))
    return [line.removeprefix("  - ") for line in lines[start + 1 :]]


def test_default_templates_pass_every_check(folder: Path) -> None:
    result = check_output()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Checked 2 variants of edition ")
    assert "(2 readers) with the templates in " in lines[0]
    assert lines[1].startswith("MJML validation: ")
    assert lines[-1] == "No problems found."


def test_with_nobody_left_to_send_to_a_sample_is_checked(folder: Path) -> None:
    assert check_output("send").exit_code == 0
    own_templates(folder, "digest.mjml.j2", ", {{ site.postal_address }}</p>", "</p>")
    result = check_output()
    assert result.output.splitlines()[0].startswith("Nobody is left to get a digest in edition")
    assert problems(result) == [
        f"variant 1 (Neurology, Pharmacology, Rehabilitation): HTML part does not show the "
        f"postal address {POSTAL!r}"
    ]


def test_a_template_error_in_one_variant_names_file_line_and_variant(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_CARD_CAP", "2")  # only the 3-summary variant shows "more"
    path, line = own_templates(
        folder,
        "digest.mjml.j2",
        "{{ links.topic(section.category.slug) }}",
        "{{ links.archive }}",
    )
    assert problems(check_output()) == [
        f"variant 1 (Neurology, Pharmacology): {path}:{line}: "
        "'digest.render.renderer.Links object' has no attribute 'archive'"
    ]


def test_html_over_the_clipping_threshold(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_CARD_CAP", "50")  # 49 cards with long titles are too many
    factory = factory_in(folder)
    long = "A long plain-language explanation of the study and what it means for people. " * 4
    for n in range(49):
        add_summary(
            factory,
            f"Study {n} of rehabilitation: " + "a long title, as some journals write them, " * 6,
            ["rehabilitation"],
            utcnow() - DAY,
            simple_explanation=long,
        )
    (found,) = problems(check_output())
    assert found.startswith("variant 2 (Rehabilitation): HTML is ")
    assert found.endswith(
        "bytes: Gmail clips messages over about 102 KB, keep it under 100,000 "
        "(lower card_cap or shorten the template)"
    )


def test_a_link_that_is_not_https(folder: Path) -> None:
    own_templates(
        folder,
        "digest.mjml.j2",
        "<p>{{ sender_name }},",
        '<p><a href="http://example.org/about">About us</a></p>\n          <p>{{ sender_name }},',
    )
    assert problems(check_output()) == [
        "HTML <a href='http://example.org/about'> is not https (all 2 variants)"
    ]


def test_an_image_without_alt_text(folder: Path) -> None:
    own_templates(
        folder,
        "_top.mjml.j2",
        '<mj-text color="#ffffff" font-size="18px"',
        '<mj-image src="https://example.org/logo.png" width="120px" />\n'
        '          <mj-text color="#ffffff" font-size="18px"',
    )
    email = folder / "mine" / "email"
    assert problems(check_output()) == [
        "HTML <img src='https://example.org/logo.png'> has no alt text (all 2 variants)",
        # the other emails include the same top of the page
        f"confirmation email: {email / 'confirm.mjml.j2'}: HTML <img "
        "src='https://example.org/logo.png'> has no alt text",
        f"links email: {email / 'links.mjml.j2'}: HTML <img "
        "src='https://example.org/logo.png'> has no alt text",
    ]


def test_a_footer_without_the_postal_address(folder: Path) -> None:
    own_templates(folder, "digest.mjml.j2", ", {{ site.postal_address }}</p>", "</p>")
    assert problems(check_output()) == [
        f"HTML part does not show the postal address {POSTAL!r} (all 2 variants)"
    ]


def test_a_text_part_without_the_unsubscribe_link(folder: Path) -> None:
    own_templates(folder, "digest.txt.j2", "Unsubscribe:\n{{ links.unsubscribe }}\n", "")
    assert problems(check_output()) == ["text part has no unsubscribe link (all 2 variants)"]


def test_a_text_part_without_the_not_medical_advice_line(folder: Path) -> None:
    own_templates(folder, "digest.txt.j2", "They are not medical advice: talk", "Talk")
    own_templates(folder, "digest.txt.j2", '{{ "Not medical advice: talk', '{{ "Talk')
    assert problems(check_output()) == [
        "text part lacks the line saying the summaries are not medical advice (all 2 variants)"
    ]


def test_a_text_part_without_the_summary_links(folder: Path) -> None:
    own_templates(folder, "digest.txt.j2", "Read the summary: {{ card.url }}\n", "")
    found = problems(check_output())
    assert len(found) == 4  # one per summary
    assert (
        "variant 2 (Rehabilitation): text part lacks the link "
        "https://example.org/research/robotic-gait-training-at-home"
    ) in found


def test_an_empty_category_section(folder: Path) -> None:
    add_categories(factory_in(folder), "Urology")
    add_reader(factory_in(folder), "uro@example.org", ["rehabilitation", "urology"])
    own_templates(
        folder,
        "digest.mjml.j2",
        "    {%- if digest.more_count %}",
        "    {%- for category in digest.reader_categories\n"
        "          if category.name not in digest.topics %}\n"
        '    <mj-section padding="20px 0 0"><mj-column><mj-text>\n'
        "      <h2>{{ category.name }}</h2><p>Nothing new this week.</p>\n"
        "    </mj-text></mj-column></mj-section>\n"
        "    {%- endfor %}\n"
        "    {%- if digest.more_count %}",
    )
    assert problems(check_output()) == [
        "variant 3 (Rehabilitation, Urology): HTML part shows an empty section 'Urology'"
    ]


def test_summaries_missing_fields_are_warnings_not_problems(folder: Path) -> None:
    add_summary(
        factory_in(folder),
        "A bare record",
        ["rehabilitation"],
        utcnow() - DAY,
        simple_explanation=None,
        key_findings=[],
        journal=None,
        year=None,
    )
    result = check_output()
    assert result.exit_code == 0, result.output
    assert "Warnings (1, not blocking):" in result.output
    assert (
        "  - summary 'A bare record' (https://example.org/research/a-bare-record): "
        "no simple explanation, no key findings, no journal, no year"
    ) in result.output.splitlines()
    assert result.output.splitlines()[-1] == "No problems found."


def test_invalid_mjml_names_the_template_file_and_line(folder: Path) -> None:
    path, line = own_templates(
        folder,
        "digest.mjml.j2",
        "<p>These summaries explain",
        "<p>Doses < 5 mg are common.</p>\n          <p>These summaries explain",
    )
    assert problems(check_output()) == [
        f"{path}:{line}: invalid MJML: unable to parse next template in root template "
        "(all 2 variants)"
    ]


def test_mjml_rules_checked_by_the_official_validator(folder: Path) -> None:
    if mjml_lint.find_validator()[0] is None:
        pytest.skip(f"MJML's validator is not available: {mjml_lint.find_validator()[1]}")
    path, line = own_templates(
        folder,
        "digest.mjml.j2",
        '    <mj-section padding="28px 0 8px">',
        "    <mj-section><mj-text>Welcome</mj-text></mj-section>\n"
        '    <mj-section padding="28px 0 8px">',
    )
    result = check_output()
    assert "MJML validation: failed." in result.output
    assert problems(result) == [
        f"{path}:{line}: mj-text: mj-text cannot be used inside mj-section, only inside: "
        "mj-attributes, mj-column, mj-hero"
    ]


def test_mjml_validation_says_it_was_skipped_without_node(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(folder / "no-tools"))
    monkeypatch.delenv("DIGEST_MJML_VALIDATOR", raising=False)
    result = check_output()
    assert result.exit_code == 0, result.output
    assert "MJML validation: skipped (Node.js is not installed)." in result.output.splitlines()


@pytest.mark.parametrize("where", ["this process", "helper processes"])
def test_send_stops_before_any_message_and_lists_every_problem(
    db_settings: Settings,
    engine,
    factory: sessionmaker[Session],
    tmp_path: Path,
    where: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whether the variants were checked here or by the helper processes that render a
    large edition (forced here for two variants), the same problems stop the send."""
    if where == "helper processes":
        monkeypatch.setattr(render_pool, "HELPERS_FROM", 1)
        monkeypatch.setattr(run_module, "helper_count", lambda: 2)
    a_week(factory, NOW)
    own = tmp_path / "mine"
    shutil.copytree(builtin_templates_dir(), own)
    mjml = own / "email" / "digest.mjml.j2"
    mjml.write_text(mjml.read_text().replace(", {{ site.postal_address }}</p>", "</p>"))
    text = own / "email" / "digest.txt.j2"
    text.write_text(text.read_text().replace("Unsubscribe:\n{{ links.unsubscribe }}\n", ""))
    from dataclasses import replace

    memory = MemoryTransport()
    with pytest.raises(PreflightError) as stopped:
        run_edition(replace(db_settings, templates_dir=own), memory, now=NOW, engine=engine)
    assert str(stopped.value).splitlines() == [
        "preflight found 2 problems; nothing was sent:",
        "  - text part has no unsubscribe link (all 2 variants)",
        f"  - HTML part does not show the postal address {POSTAL!r} (all 2 variants)",
    ]
    assert memory.outbox == []
    with factory() as session:
        assert set(session.scalars(select(Delivery.status))) == {"queued"}
