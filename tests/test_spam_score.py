"""What spam filters think of every kind of email digest sends, scored by real SpamAssassin.

The demo's digests (one per reader), a double opt-in confirmation and a "your links" email
are written by the product itself into its file outbox, then scored with SpamAssassin's
local rules (no network tests), all in one Perl process so that the rules load once.

No rule may add to any message's score (a hidden preheader in white on a light page once
added HTML_FONT_LOW_CONTRAST, +0.7, to every message), and every digest scores at or below
-1.0. The confirmation and links emails score 0: they are one-to-one messages, so they
rightly carry none of the list headers that earn a digest its -1.0 (MAILING_LIST_MULTI).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.outbox_support import is_digest, write_every_email

pytestmark = pytest.mark.skipif(
    shutil.which("spamassassin") is None,
    reason="SpamAssassin is not installed (apt-get install spamassassin; .ci/run does)",
)

#: Scores every file named on the command line; prints "path<TAB>score<TAB>rules".
SCORER = r"""
use strict;
use Mail::SpamAssassin;
my $sa = Mail::SpamAssassin->new({ local_tests_only => 1, dont_copy_prefs => 1,
                                   userprefs_filename => undef });
for my $path (@ARGV) {
    open(my $fh, '<', $path) or die "$path: $!";
    my $raw = do { local $/; <$fh> };
    my $msg = $sa->parse($raw);
    my $status = $sa->check($msg);
    my $hits = $status->get_names_of_tests_hit_with_scores_hash();
    my $rules = join(",", map { "$_=$hits->{$_}" } sort keys %$hits);
    printf "%s\t%.1f\t%s\n", $path, $status->get_score(), $rules;
    $status->finish();
    $msg->finish();
}
"""
MOST_FOR_A_DIGEST = -1.0
INFORMATIONAL = 0.01  # rules such as HTML_MESSAGE (0.001) only say what a message is


def scores(paths: list[Path]) -> dict[str, tuple[float, dict[str, float]]]:
    done = subprocess.run(
        ["perl", "-e", SCORER, *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    found: dict[str, tuple[float, dict[str, float]]] = {}
    for line in done.stdout.splitlines():
        path, score, rules = line.split("\t")
        hits = {
            rule: float(points) for rule, _, points in (r.partition("=") for r in rules.split(","))
        }
        found[Path(path).relative_to(paths[0].parents[2]).as_posix()] = (float(score), hits)
    return found


@pytest.fixture(scope="module")
def every_email(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_every_email(tmp_path_factory.mktemp("outbox"))


def test_no_spam_rule_adds_to_any_email_and_every_digest_scores_at_most_minus_one(
    every_email: list[Path],
) -> None:
    found = scores(every_email)
    assert len(found) == len(every_email) >= 20
    penalised = {
        name: {rule: points for rule, points in hits.items() if points >= INFORMATIONAL}
        for name, (_, hits) in found.items()
    }
    assert not {name: rules for name, rules in penalised.items() if rules}
    digests = {name: found[name][0] for name in found if is_digest(Path(name))}
    assert len(digests) >= 20
    assert all(score <= MOST_FOR_A_DIGEST for score in digests.values()), digests
    assert all(score <= 0 for score, _ in found.values())
