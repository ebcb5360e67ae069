"""Where MJML goes wrong: point at the template line, and run MJML's official validator.

mjml-python (MRML) reports errors without a position, and the official validator (the npm
package ``mjml``) reports lines of the *rendered* MJML. Both are mapped back to a line of the
Jinja2 template by matching the template's literal text (what is outside ``{{ }}``,
``{% %}`` and ``{# #}``) against the rendered line.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

#: Where `.ci/run` installs the validator in a checkout (npm install --prefix .ci/node mjml@4).
CI_PREFIX = Path(__file__).resolve().parents[2] / ".ci" / "node"
#: Where a pip user can install it without root: npm install --prefix USER_PREFIX mjml@4.
USER_PREFIX = Path("~/.local/share/digest/node")
INSTALL_HINT = (
    "the npm package mjml is not installed: npm install -g mjml@4, or "
    f"npm install --prefix {USER_PREFIX} mjml@4, or set DIGEST_MJML_VALIDATOR "
    "to the path of its bin/mjml"
)
VALIDATOR_TIMEOUT = 60.0

_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_MJ_TAG = re.compile(r"<(/?)(mjml|mj-[a-z-]+)\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*?(/?)>")
_STRAY_LT = re.compile(r"<(?![A-Za-z/!?])")
_VALIDATOR_LINE = re.compile(r"Line (\d+) of .*? \(([\w-]+)\) [—-] (.*)")


@dataclass(frozen=True)
class Validation:
    """The official validator's verdict on one rendered template."""

    status: str  # "passed", "failed" or "skipped"
    detail: str = ""  # why it was skipped, or which validator ran
    problems: tuple[str, ...] = field(default=())


def _blank(match: re.Match[str]) -> str:
    """A Jinja construct replaced by NULs, keeping its line breaks."""
    return "".join("\n" if char == "\n" else "\x00" for char in match.group())


def template_line(template: str, rendered_line: str) -> int | None:
    """The 1-based line of ``template`` that most likely produced ``rendered_line``."""
    target = " ".join(rendered_line.split())
    if not target:
        return None
    literal_lines = _JINJA.sub(_blank, template).splitlines()
    best: tuple[float, int] | None = None
    for number, line in enumerate(literal_lines, start=1):
        fragments = [" ".join(f.split()) for f in line.split("\x00") if f.strip()]
        if not fragments:
            continue
        position, whole = 0, True
        for fragment in fragments:
            found = target.find(fragment, position)
            if found < 0:
                whole = False
                break
            position = found + len(fragment)
        literal = " ".join(fragments)
        if whole:
            score = 1.0 + len(literal) / max(len(target), 1)
        else:
            score = difflib.SequenceMatcher(None, literal, target, autojunk=False).ratio()
        if best is None or score > best[0]:
            best = (score, number)
    if best is None or best[0] < 0.6:
        return None
    return best[1]


def first_fault(source: str) -> int | None:
    """The 1-based line of rendered MJML where parsing goes wrong: a stray ``<``, a closing
    tag that does not match, or a tag never closed. None if nothing obvious is found."""
    faults: list[int] = []
    stray = _STRAY_LT.search(source)
    if stray:
        faults.append(stray.start())
    stack: list[tuple[str, int]] = []
    for match in _MJ_TAG.finditer(source):
        closing, name, self_closing = match.group(1), match.group(2), match.group(3)
        if self_closing:
            continue
        if not closing:
            stack.append((name, match.start()))
            continue
        if not stack or stack[-1][0] != name:
            faults.append(match.start())
            break
        stack.pop()
    else:
        if stack:
            faults.append(stack[-1][1])
    if not faults:
        return None
    return source.count("\n", 0, min(faults)) + 1


def locate(source: str, template: str, rendered_line: int | None = None) -> int | None:
    """The template line behind ``rendered_line`` of ``source`` (default: the first fault)."""
    number = rendered_line or first_fault(source)
    lines = source.splitlines()
    if number is None or not 1 <= number <= len(lines):
        return None
    return template_line(template, lines[number - 1])


def find_validator() -> tuple[list[str] | None, str]:
    """The command running MJML's validator, or None and why it is missing."""
    node = shutil.which("node")
    if node is None:
        return None, "Node.js is not installed"
    candidates = [
        os.environ.get("DIGEST_MJML_VALIDATOR"),
        str(CI_PREFIX / "node_modules" / "mjml" / "bin" / "mjml"),
        str(USER_PREFIX.expanduser() / "node_modules" / "mjml" / "bin" / "mjml"),
        shutil.which("mjml"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_file():
            return [node, str(Path(candidate).expanduser().resolve())], candidate
    return None, INSTALL_HINT


def validate(source: str, template_path: Path, template: str) -> Validation:
    """Run ``mjml --validate`` on rendered MJML; problems name the template file and line."""
    command, detail = find_validator()
    if command is None:
        return Validation("skipped", detail)
    with tempfile.TemporaryDirectory(prefix="digest-mjml-") as folder:
        path = Path(folder) / "digest.mjml"
        path.write_text(source, encoding="utf-8")
        try:
            done = subprocess.run(  # noqa: S603 (our own command line, no shell)
                [*command, "--validate", str(path)],
                capture_output=True,
                text=True,
                timeout=VALIDATOR_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Validation("skipped", f"the validator did not run: {exc}")
    if done.returncode == 0:
        return Validation("passed", detail)
    lines = source.splitlines()
    problems: list[str] = []
    for raw in (done.stderr + "\n" + done.stdout).splitlines():
        match = _VALIDATOR_LINE.search(raw)
        if match:
            rendered = int(match.group(1))
            text = lines[rendered - 1] if 0 < rendered <= len(lines) else ""
            where = template_line(template, text)
            place = f"{template_path}:{where}" if where else f"{template_path}"
            problems.append(f"{place}: {match.group(2)}: {match.group(3).strip()}")
        elif raw.strip() and raw.strip() not in ("Command line error:", "Validation failed"):
            problems.append(f"{template_path}: {raw.strip()}")
    if not problems:
        problems.append(f"{template_path}: the MJML validator failed (exit {done.returncode})")
    return Validation("failed", detail, tuple(problems))
