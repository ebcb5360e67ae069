"""``digest check`` checks every template that can be sent, not only the digest's: each is
broken in a copied templates folder and the one line a user sees names file and line."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from digest.render import mjml_lint
from tests.test_preflight import check_output, own_templates, problems
from tests.test_preflight import folder as folder


def test_every_template_is_checked_when_all_is_well(folder: Path) -> None:
    result = check_output()
    assert result.exit_code == 0, result.output
    assert "Checked the confirmation email and links email too." in result.output


@pytest.mark.parametrize(
    ("name", "old", "new", "message"),
    [
        ("confirm.mjml.j2", "{{ expires }}", "{{ expiry }}", "'expiry' is undefined"),
        ("confirm.txt.j2", "{{ link }}", "{{ link.url }}", "'str object' has no attribute 'url'"),
        (
            "confirm_subject.txt.j2",
            "{{ site.name }}",
            "{{ site.name }",
            "unexpected '}'",
        ),
        ("links.mjml.j2", "{{ preferences }}</a>", "{{ prefs }}</a>", "'prefs' is undefined"),
        ("links.txt.j2", "{{ unsubscribe }}", "{% if %}", "Expected an expression"),
        ("links_subject.txt.j2", "{{ site.name }}", "{{ site.nam }}", "has no attribute 'nam'"),
    ],
)
def test_a_broken_notice_template_names_file_and_line(
    folder: Path, name: str, old: str, new: str, message: str
) -> None:
    path, line = own_templates(folder, name, old, new)
    (problem,) = problems(check_output())
    email = "confirmation email" if name.startswith("confirm") else "links email"
    assert problem.startswith(f"{email}: {path}:{line}: "), problem
    assert message in problem


def test_invalid_mjml_in_a_notice_names_that_notice_file(folder: Path) -> None:
    section = '    <mj-section padding="28px 0 8px">\n'
    path, _ = own_templates(folder, "links.mjml.j2", section, "    <mj-section>\n<mj-text>\n")
    (problem,) = problems(check_output())
    assert re.fullmatch(rf"links email: {re.escape(str(path))}:\d+: invalid MJML: .+", problem)


def test_a_notice_link_that_is_not_https(folder: Path) -> None:
    path, _ = own_templates(
        folder,
        "confirm.mjml.j2",
        "<p>The link works until",
        '<p><a href="http://example.org/help">Help</a>. The link works until',
    )
    assert problems(check_output()) == [
        f"confirmation email: {path}: HTML <a href='http://example.org/help'> is not https"
    ]


def test_a_text_part_without_the_confirmation_link(folder: Path) -> None:
    path, _ = own_templates(folder, "confirm.txt.j2", "To confirm, open this link:\n{{ link }}", "")
    assert problems(check_output()) == [
        f"confirmation email: {path}: the text part has no confirmation link"
    ]


def test_with_no_summaries_the_notices_are_still_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("DIGEST_")]:
        monkeypatch.delenv(name)
    assert check_output("init").exit_code == 0
    path, line = own_templates(tmp_path, "confirm.mjml.j2", "{{ expires }}", "{{ expiry }}")
    result = check_output()
    assert "No digest to check: there are no summaries yet." in result.output
    assert problems(result) == [f"confirmation email: {path}:{line}: 'expiry' is undefined"]


def test_mjml_rules_of_a_notice_checked_by_the_official_validator(folder: Path) -> None:
    if mjml_lint.find_validator()[0] is None:
        pytest.skip(f"MJML's validator is not available: {mjml_lint.find_validator()[1]}")
    path, line = own_templates(
        folder,
        "links.mjml.j2",
        '    <mj-section padding="28px 0 8px">',
        "    <mj-section><mj-text>Welcome</mj-text></mj-section>\n"
        '    <mj-section padding="28px 0 8px">',
    )
    assert problems(check_output()) == [
        f"links email: {path}:{line}: mj-text: mj-text cannot be used inside mj-section, "
        "only inside: mj-attributes, mj-column, mj-hero"
    ]
