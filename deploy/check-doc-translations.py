#!/usr/bin/env python3
"""Fails when a translated page shows other commands than its English page.

Every `X.<lang>.md` in the repository (README.zh-CN.md, docs/reconciliation.zh-CN.md, ...) must
have its English page `X.md`, and its command blocks must be the English page's, in the same
order: the blocks fenced as sh, bash, shell, console, zsh, text (commands shown but not run) and
toml (configuration). Comments are left out of the comparison, whole-line and trailing (` # ...`
outside quotes), so a translation may explain a command in its own language; everything else must
be byte for byte the same. Code samples in other languages (js, python, json, ...) are not
compared: their comments are prose. deploy/check-docs.sh runs it, and its tests
(check-doc-translations.test.py), after the English pages' commands.

Usage: check-doc-translations.py [REPO]   (exit 1 when a page differs; every difference is listed)
"""

import difflib
import os
import re
import sys

# The fence languages whose blocks are commands or configuration a reader copies.
COMMAND_KINDS = {"sh", "bash", "shell", "console", "zsh", "text", "toml"}
# `name.zh-CN.md`, `name.en-US.md`: a page translated from `name.md`.
TRANSLATED = re.compile(r"^(?P<stem>.+)\.(?P<lang>[a-z]{2}-[A-Z]{2})\.md$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<kind>[A-Za-z0-9_+-]*)\s*$")
SKIPPED_DIRS = {".git", "target", "node_modules"}


def command_blocks(path):
    """The command blocks of a Markdown file, as (kind, first line number, lines)."""
    blocks = []
    with open(path, encoding="utf-8") as markdown:
        lines = markdown.read().split("\n")
    opened = None
    for number, line in enumerate(lines, start=1):
        fence = FENCE.match(line)
        if opened is None:
            if fence and fence.group("kind"):
                opened = (fence.group("kind"), number, fence.group("indent"), [])
            elif fence:
                opened = ("", number, fence.group("indent"), [])
        elif fence and not fence.group("kind"):
            kind, start, _, body = opened
            if kind in COMMAND_KINDS:
                blocks.append((kind, start, body))
            opened = None
        else:
            indent = opened[2]
            opened[3].append(line[len(indent):] if line.startswith(indent) else line)
    return blocks


def without_comment(line):
    """The line without its shell/TOML comment: a `#` that starts a word outside quotes."""
    single = double = False
    for index, char in enumerate(line):
        if char == "'" and not double:
            single = not single
        elif char == '"' and not single:
            double = not double
        elif char == "#" and not single and not double and (index == 0 or line[index - 1] in " \t"):
            if not line.startswith("#!"):
                return line[:index].rstrip()
    return line.rstrip()


def commands(body):
    """What must match between languages: the lines without comments, blank lines dropped."""
    return [kept for kept in (without_comment(line) for line in body) if kept.strip()]


def translated_pages(repo):
    """Every translated page under the repository, as paths relative to it, sorted."""
    pages = []
    for directory, subdirectories, files in os.walk(repo):
        subdirectories[:] = sorted(
            name for name in subdirectories if name not in SKIPPED_DIRS and not name.startswith(".")
        )
        for name in files:
            if TRANSLATED.match(name):
                pages.append(os.path.relpath(os.path.join(directory, name), repo))
    return sorted(pages)


def compare(repo, page):
    """The differences between a translated page's command blocks and its English page's."""
    match = TRANSLATED.match(os.path.basename(page))
    english = os.path.join(os.path.dirname(page), match.group("stem") + ".md")
    if not os.path.isfile(os.path.join(repo, english)):
        return [f"{page}: there is no English page {english} to translate"]
    ours = command_blocks(os.path.join(repo, page))
    theirs = command_blocks(os.path.join(repo, english))
    problems = []
    for number, (translated, original) in enumerate(zip(ours, theirs), start=1):
        kind, line, body = translated
        english_kind, english_line, english_body = original
        where = f"{page} block {number} (```{kind} at line {line})"
        if kind != english_kind:
            problems.append(
                f"{where} is fenced as ```{kind}; block {number} of {english} (line {english_line}) "
                f"is ```{english_kind}"
            )
        elif commands(body) != commands(english_body):
            diff = difflib.unified_diff(
                commands(english_body), commands(body), english, page, lineterm="", n=1
            )
            problems.append(
                f"{where} differs from block {number} of {english} (line {english_line}):\n"
                + "\n".join("       " + diff_line for diff_line in diff)
            )
    for number in range(len(ours) + 1, len(theirs) + 1):
        kind, line, _ = theirs[number - 1]
        problems.append(
            f"{page} has no block {number}: {english} has ```{kind} block {number} at line {line}"
        )
    for number in range(len(theirs) + 1, len(ours) + 1):
        kind, line, _ = ours[number - 1]
        problems.append(
            f"{page} block {number} (```{kind} at line {line}) is not in {english}, which has "
            f"{len(theirs)} command block(s)"
        )
    return problems


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    pages = translated_pages(repo)
    if not pages:
        print("--   no translated pages")
        return 0
    failed = 0
    for page in pages:
        problems = compare(repo, page)
        if problems:
            failed += 1
            for problem in problems:
                print(f"FAIL {problem}")
        else:
            blocks = len(command_blocks(os.path.join(repo, page)))
            print(f"ok   {page}: its {blocks} command block(s) are its English page's")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
