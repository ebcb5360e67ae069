"""Variants rendered while the plan runs (digest.edition.prerender): the same digests as a
render after the plan, every variant checked before anything goes out, and a failure on
the rendering thread stops the run before a message is sent."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.edition import prerender as prerender_module
from digest.edition import render_pool
from digest.edition import run as run_module
from digest.edition.build import problems_of
from digest.edition.passes import pending_variants, render_pending
from digest.edition.prerender import Prerender
from digest.edition.run import run_edition
from digest.edition.variants import Renders
from digest.errors import PreflightError, TemplateError
from digest.mail.transports import MemoryTransport
from digest.planning.plan import get_or_create_edition, plan_edition
from digest.render.renderer import Renderer, builtin_templates_dir
from tests.conftest import NOW, add_categories, add_reader, add_summary

DAYS = [NOW.replace(day=NOW.day - n) for n in range(1, 5)]


@pytest.fixture
def week(factory: sessionmaker[Session]) -> None:
    """Three topics, four summaries, readers of four different topic sets."""
    add_categories(factory, "Pharmacology", "Neurology", "Rehabilitation")
    add_summary(factory, "Riluzole after acute injury", ["pharmacology"], DAYS[0])
    both = ["pharmacology", "neurology"]
    add_summary(factory, 'Minocycline <and> "inflammation"', both, DAYS[1])
    add_summary(factory, "Nerve transfers for hand function", ["neurology"], DAYS[2])
    add_summary(factory, "Robotic gait training at home", ["rehabilitation"], DAYS[3])
    add_reader(factory, "a@example.org", ["pharmacology"])
    add_reader(factory, "b@example.org", ["pharmacology", "neurology"])
    add_reader(factory, "c@example.org", ["neurology"])
    add_reader(factory, "d@example.org", ["rehabilitation", "neurology"])


def _render_helpers() -> list[int]:
    """This process's render helpers, as ``ps`` would find them."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and b"digest.edition.render_pool" in command:
            found.append(int(stat.parent.name))
    return found


def _comparable(renders: Renders) -> dict[object, tuple[str, str, str, bytes]]:
    """Each variant's subject, HTML, text and message, its random placeholder token and
    MIME boundary made the same (every build draws its own)."""
    out = {}
    for key, (rendered, template) in renders.built.items():
        token = template.placeholder

        def same(text: str, token: str = token) -> str:
            return text.replace(token, "TOKEN")

        message = b"".join(template.parts).replace(token.encode(), b"TOKEN")
        message = re.sub(rb"=_digest_[0-9a-f]+", b"BOUNDARY", message)  # random too
        out[key] = (rendered.subject, same(rendered.html), same(rendered.text), message)
    return out


@pytest.mark.usefixtures("week")
def test_variants_rendered_during_the_plan_are_those_a_render_after_it_makes(
    db_settings: Settings, factory: sessionmaker[Session]
) -> None:
    edition, _ = get_or_create_edition(factory, "2026-W48", now=NOW)
    assert edition is not None
    renderer = Renderer(db_settings)
    cap = db_settings.card_cap
    early = Prerender(factory, renderer, cap, date=NOW, edition=edition.key)
    submitted: list[object] = []

    def submit(key: object, web_id: str) -> None:
        submitted.append(key)
        early.submit(key, web_id)  # type: ignore[arg-type]

    with closing(early):
        plan_edition(factory, db_settings, edition, now=NOW, on_variant=submit)
        pending = pending_variants(factory, edition)
        during = early.renders(pending)
    after = render_pending(factory, renderer, cap, pending, date=NOW, edition=edition.key)
    assert len(pending) == 4 and sorted(map(str, submitted)) == sorted(str(v.key) for v in pending)
    assert during.contents == after.contents
    assert _comparable(during) == _comparable(after)
    assert not during.failures and not after.failures
    web_ids = {v.key: v.web_id for v in pending}
    for key, (rendered, _) in during.built.items():
        assert f"/v/{web_ids[key]}" in rendered.html  # its own web version


@pytest.mark.usefixtures("week")
def test_a_variant_rendered_early_under_another_web_address_is_rendered_again(
    db_settings: Settings, factory: sessionmaker[Session]
) -> None:
    edition, _ = get_or_create_edition(factory, "2026-W48", now=NOW)
    assert edition is not None
    plan_edition(factory, db_settings, edition, now=NOW)
    pending = pending_variants(factory, edition)
    early = Prerender(factory, Renderer(db_settings), 10, date=NOW, edition=edition.key)
    with closing(early):
        early.submit(pending[0].key, "not-its-web-id")
        renders = early.renders(pending)
    assert set(renders.built) == {v.key for v in pending}
    html = renders.built[pending[0].key][0].html
    assert f"/v/{pending[0].web_id}" in html and "not-its-web-id" not in html


@pytest.mark.usefixtures("week")
def test_an_error_on_the_rendering_thread_stops_the_run_before_any_message(
    db_settings: Settings, engine, factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> Renders:
        raise RuntimeError("the renderer broke")

    monkeypatch.setattr(prerender_module, "render_each", broken)
    transport = MemoryTransport()
    with pytest.raises(RuntimeError, match="the renderer broke"):
        run_edition(db_settings, transport, now=NOW, engine=engine)
    assert transport.outbox == []


@pytest.mark.usefixtures("week")
def test_a_variant_failing_to_render_during_the_plan_fails_the_preflight(
    db_settings: Settings, engine, factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A digest that cannot be built (here: its subject) is found by the preflight, with
    the variant named, and nothing goes out, as when it was rendered after the plan."""
    real = Renderer.render_digest

    def render_digest(self: Renderer, content, links):  # type: ignore[no-untyped-def]
        if any(card.title.startswith("Robotic") for card in content.cards):
            raise TemplateError("the gait-training digest cannot be built")
        return real(self, content, links)

    monkeypatch.setattr(Renderer, "render_digest", render_digest)
    transport = MemoryTransport()
    with pytest.raises(PreflightError) as raised:
        run_edition(db_settings, transport, now=NOW, engine=engine)
    assert "gait-training digest cannot be built" in str(raised.value)
    assert transport.outbox == []


@pytest.mark.usefixtures("week")
def test_helper_processes_render_and_check_the_same_digests_as_this_process(
    db_settings: Settings, factory: sessionmaker[Session]
) -> None:
    """Variants handed to helper processes come back as this process renders them, each
    with the preflight's findings (none here), computed there on exactly that render."""
    edition, _ = get_or_create_edition(factory, "2026-W48", now=NOW)
    assert edition is not None
    renderer = Renderer(db_settings)
    cap = db_settings.card_cap
    early = Prerender(
        factory, renderer, cap, date=NOW, edition=edition.key, helpers=2, helpers_from=1
    )
    with closing(early):
        plan_edition(factory, db_settings, edition, now=NOW, on_variant=early.submit)
        pending = pending_variants(factory, edition)
        during = early.renders(pending)
    after = render_pending(factory, renderer, cap, pending, date=NOW, edition=edition.key)
    assert _comparable(during) == _comparable(after)
    assert during.contents == after.contents and not during.failures
    web_ids = {v.key: v.web_id for v in pending}
    assert set(during.problems) == {v.key for v in pending}
    for key, made in during.built.items():
        assert (
            during.problems[key]
            == problems_of(renderer.identity, during.contents[key], made, web_ids[key])
            == ()
        )


@pytest.mark.usefixtures("week")
def test_variants_of_a_helper_that_dies_are_rendered_after_the_plan(
    db_settings: Settings, factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    edition, _ = get_or_create_edition(factory, "2026-W48", now=NOW)
    assert edition is not None
    plan_edition(factory, db_settings, edition, now=NOW)
    pending = pending_variants(factory, edition)
    renderer = Renderer(db_settings)
    early = Prerender(
        factory, renderer, 10, date=NOW, edition=edition.key, helpers=1, helpers_from=1
    )
    with closing(early):
        for variant in pending:
            early.submit(variant.key, variant.web_id)
        deadline = time.monotonic() + 30
        while not (helpers := _render_helpers()) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert helpers
        for pid in helpers:
            os.kill(pid, signal.SIGKILL)  # still importing the renderer: it renders nothing
        renders = early.renders(pending)
    assert "a render helper stopped: 4 variants are rendered after the plan" in caplog.text
    assert set(renders.built) == {v.key for v in pending} and not renders.problems
    after = render_pending(factory, renderer, 10, pending, date=NOW, edition=edition.key)
    assert _comparable(renders) == _comparable(after)


@pytest.mark.usefixtures("week")
@pytest.mark.parametrize("where", ["this process", "helper processes"])
def test_a_bug_in_a_template_stops_the_run_before_any_message_wherever_it_renders(
    db_settings: Settings, engine, tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A template that fails with a plain Python error (not a problem the preflight can
    list) stops the run with that error, raised in the sending process, and nothing goes
    out, whether this process or a helper rendered it."""
    if where == "helper processes":
        monkeypatch.setattr(render_pool, "HELPERS_FROM", 1)
        monkeypatch.setattr(run_module, "helper_count", lambda: 2)
    own = tmp_path / "mine"
    shutil.copytree(builtin_templates_dir(), own)
    mjml = own / "email" / "digest.mjml.j2"
    mjml.write_text(
        mjml.read_text().replace(
            'lang="{{ site.language }}"', 'lang="{{ (site.language|length) // 0 }}"'
        )
    )
    transport = MemoryTransport()
    with pytest.raises(ZeroDivisionError):
        run_edition(replace(db_settings, templates_dir=own), transport, now=NOW, engine=engine)
    assert transport.outbox == []
