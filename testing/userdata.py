"""user-data.sh and the copy the template carries: split, render, and rewrite the template's copy.

The template renders the script's CONFIGURATION block from its parameters (one ``Fn::Sub`` per
line, none of which contains a literal ``${``) and carries the rest of the file as plain strings
of an ``Fn::Join``, so no engine has to honour Sub's ``${!`` escape (LocalStack does not:
localstack/localstack#12031). ``python -m testing.userdata`` rewrites the template's copy from the
file after an edit; tests/infra/test_user_data.py fails while the two differ.
"""

from __future__ import annotations

import os
import re
import sys

from testing.helpers import ROOT

TEMPLATE = os.path.join(ROOT, "filejobs", "infra", "stack.yaml")
USER_DATA = os.path.join(ROOT, "user-data.sh")
BEGIN, END = "# ---- BEGIN CONFIGURATION ----\n", "# ---- END CONFIGURATION ----\n"
CONFIG_LINE = re.compile(r'^([A-Z][A-Z0-9_]*)="([^"$`\\]*)"$')

#: What the template puts in each configuration variable (Fn::Sub syntax; a constant where the
#: template has no parameter for it).
TEMPLATE_VALUES = {
    "BUCKET": "${Bucket}", "QUEUE": "${Queue}", "REGION": "${AWS::Region}", "INPUT_PREFIX": "${InputPrefix}",
    "OUTPUT_PREFIX": "${OutputPrefix}", "ERRORS_PREFIX": "errors/", "CODE_KEY": "${CodeKey}",
    "SETUP_SCRIPT_KEY": "${SetupScriptKey}", "PACKAGES": "${Packages}", "OUTPUT_EXTENSION": "${OutputExtension}",
    "COMMAND": "${Command}", "SLOTS": "${SlotsPerInstance}", "JOB_TIMEOUT": "${JobTimeout}",
    "GRACE_SECONDS": "${GraceSeconds}", "GROUP": "${AWS::StackName}-workers", "LIFECYCLE_HOOK": "filejobs-drain",
    "LOG_GROUP": "${WorkerLogGroup}", "S3_EVENTS": "${S3EventNotifications}",
}
_INDENT = " " * 16  # the items of the Fn::Join list under LaunchTemplateData.UserData


def read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def split_config(text: str) -> tuple[str, list[tuple[str, str]], str]:
    """(everything up to and including the BEGIN line, [(NAME, value)], the END line and after)."""
    head, rest = text.split(BEGIN, 1)
    block, tail = rest.split(END, 1)
    pairs = []
    for line in block.splitlines():
        m = CONFIG_LINE.match(line)
        if not m:
            raise ValueError(f"not a NAME=\"value\" line in the configuration block: {line!r}")
        pairs.append((m.group(1), m.group(2)))
    return head + BEGIN, pairs, END + tail


def _literal(text: str) -> list[str]:
    """A YAML literal block (``|``) holding ``text`` exactly; ``text`` ends with one newline."""
    if not text.endswith("\n") or text.endswith("\n\n"):
        raise ValueError("a literal block must end with exactly one newline")
    lines = [f"{_INDENT}- |"]
    for line in text[:-1].split("\n"):
        if line.rstrip() != line:
            raise ValueError(f"trailing whitespace would not survive YAML: {line!r}")
        lines.append(f"{_INDENT}  {line}" if line else "")
    return lines


def join_items(script: str) -> list[str]:
    """The template's ``Fn::Join`` list (YAML lines) for ``script``."""
    head, pairs, tail = split_config(script)
    lines = [" " * 14 + "-"] + _literal(head)
    for name, _ in pairs:
        if name not in TEMPLATE_VALUES:
            raise ValueError(f"the template has no value for {name}")
        value = TEMPLATE_VALUES[name]
        tag = "!Sub " if "${" in value else ""
        lines.append(f'{_INDENT}- {tag}"{name}=\\"{value}\\"\\n"')
    return lines + _literal(tail)


def sync(template_path: str = TEMPLATE, script_path: str = USER_DATA) -> bool:
    """Rewrite the template's copy of the script; True if it changed."""
    text = read(template_path)
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.strip() == "UserData:")
    join = next(i for i in range(start, len(lines)) if lines[i].strip() == "Fn::Join:")
    first = join + 2  # after `- ""`
    end = next(i for i in range(first, len(lines)) if re.match(r"^  [A-Za-z]", lines[i]))
    while end > first and not lines[end - 1].strip():
        end -= 1
    new = "\n".join(lines[:first] + join_items(read(script_path)) + lines[end:])
    if new == text:
        return False
    with open(template_path, "w", encoding="utf-8") as fh:
        fh.write(new)
    return True


if __name__ == "__main__":
    changed = sync()
    print("stack.yaml: user data rewritten from user-data.sh" if changed else "stack.yaml: user data already in sync",
          file=sys.stderr)
