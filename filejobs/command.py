"""Command lines as people write them: placeholders in COMMAND and its arguments.

Pure module. ``pandoc {input} -o {output}``, ``ffmpeg -i {input} -vf scale=640:-1 {output}`` or
``gdal_translate -of COG {input} {output}`` run without a wrapper script, in the spirit of GNU
parallel's ``{}`` and AWS Batch's ``Ref::`` parameters. Rules:

* a placeholder is ``{name}`` with one of the names below, substituted *inside* one argument
  (``--out={output}`` works); its value is never split, globbed or interpreted, because no shell is
  ever involved: the argument list goes to ``execve`` as it is;
* ``{{`` and ``}}`` stand for literal braces; any other brace is literal as well (``awk '{print $1}'``
  and ``find -exec ... {} +`` keep working), but ``{word}`` with an unknown word is refused at start-up
  so a typo never reaches a job;
* without any placeholder the command keeps the original form ``COMMAND [ARGS...] INPUT OUTPUT``
  byte for byte (``{{`` included: escapes only exist in a command that has placeholders, so a
  literal ``{word}`` is written ``{{word}}`` in a command that names ``{input}`` and ``{output}``);
* the program itself (the first word) cannot be a placeholder: a job never runs its input;
* ``{name}``, ``{stem}`` or ``{key}`` at the start of an argument, before any ``--``, would be read
  as an option when a file name begins with ``-`` (``-rf``): such a job fails with that reason
  instead of running (``CommandLine.option_like``); write ``--title={stem}`` or put it after ``--``.

Names: ``input``/``output`` (local paths), ``name`` (the input's file name), ``stem`` (the name
without its last extension), ``ext`` (that extension, with its dot, or empty), ``key`` (the input's
S3 key), ``outdir`` (a private empty directory; every file the command writes there is uploaded
under the output key). ``name``, ``stem`` and ``ext`` come from the key as they are, so they may
begin with ``-``: ``{input}`` and ``{output}`` are absolute paths and never look like options.

The command's environment also names the job (``JobContext.environ``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PLACEHOLDERS = ("input", "output", "name", "stem", "ext", "key", "outdir")
#: Placeholders whose value comes from a file name or key, and so may begin with "-".
FROM_NAMES = frozenset({"name", "stem", "key"})
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


class CommandError(ValueError):
    """A command line that cannot be used; ``str()`` is one line saying why."""


@dataclass(frozen=True)
class CommandLine:
    """A parsed COMMAND [ARGS...]: each argument as literal text and placeholder names."""

    argv: tuple[str, ...]
    parts: tuple[tuple[str | tuple[str], ...], ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p[0] for arg in self.parts for p in arg if isinstance(p, tuple))

    @property
    def templated(self) -> bool:
        return bool(self.names)

    @property
    def output_is_dir(self) -> bool:
        return "outdir" in self.names

    def render(self, values: dict[str, str]) -> list[str]:
        """The argument list of one job. In the original form, INPUT and OUTPUT are appended."""
        if not self.templated:
            return [*self.argv, values["input"], values["output"]]
        return ["".join(values[p[0]] if isinstance(p, tuple) else p for p in arg) for arg in self.parts]

    def option_like(self, values: dict[str, str]) -> str | None:
        """The value of a name placeholder that would start an argument with ``-`` before any
        ``--`` (the program would take the file name ``-rf`` for options), else None."""
        for arg, parts in zip(self.argv[1:], self.parts[1:]):
            if arg == "--":
                return None
            first = parts[0] if parts else ""
            if isinstance(first, tuple) and first[0] in FROM_NAMES and values[first[0]].startswith("-"):
                return values[first[0]]
        return None


def parse(argv: list[str] | tuple[str, ...]) -> CommandLine:
    if not argv:
        raise CommandError("empty command")
    parts = tuple(_parse_arg(arg) for arg in argv)
    line = CommandLine(argv=tuple(argv), parts=parts)
    if any(isinstance(p, tuple) for p in parts[0]):
        raise CommandError(f"the program name cannot contain a placeholder: {argv[0]!r}")
    if line.templated and not line.names & {"output", "outdir"}:
        raise CommandError("a command with placeholders must name {output} or {outdir} (where it writes)")
    if {"output", "outdir"} <= line.names:
        raise CommandError("use {output} (one file) or {outdir} (a directory), not both")
    return line


def _parse_arg(arg: str) -> tuple[str | tuple[str], ...]:
    pieces: list[str | tuple[str]] = []
    literal: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(arg):
        literal.append(arg[pos:m.start()])
        pos = m.end()
        token = m.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        name = m.group(1)
        if name not in PLACEHOLDERS:
            # {{ is only an escape in a templated command (the original form is kept byte for byte),
            # so the advice names what makes it one.
            raise CommandError(f"unknown placeholder {token} in {arg!r} (known: "
                               + ", ".join("{" + n + "}" for n in PLACEHOLDERS)
                               + "; for literal braces write {{ and }} in a command that names {input} and "
                                 "{output})")
        if "".join(literal):  # an empty piece would hide a placeholder that starts the argument
            pieces.append("".join(literal))
        literal = []
        pieces.append((name,))
    literal.append(arg[pos:])
    if "".join(literal):
        pieces.append("".join(literal))
    return tuple(pieces)


def values_for(*, input_path: str, output_path: str, key: str) -> dict[str, str]:
    """The placeholder values of one job (``output_path`` is the file or, for ``{outdir}``, the folder)."""
    name = key.rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    if not stem or not dot:  # "README", ".bashrc": no extension
        stem, ext = name, ""
    else:
        ext = "." + ext
    return {"input": input_path, "output": output_path, "outdir": output_path, "name": name, "stem": stem,
            "ext": ext, "key": key}


@dataclass(frozen=True)
class JobContext:
    """What a command is told about its job, in its environment (and ``{key}``)."""

    bucket: str
    input_key: str
    output_key: str
    batch_id: str | None
    attempt: int
    message_id: str

    def environ(self) -> dict[str, str]:
        """``FILEJOBS_*`` variables; an empty ``FILEJOBS_BATCH_ID`` when the message had none."""
        return {"FILEJOBS_BUCKET": self.bucket, "FILEJOBS_INPUT_KEY": self.input_key,
                "FILEJOBS_OUTPUT_KEY": self.output_key, "FILEJOBS_BATCH_ID": self.batch_id or "",
                "FILEJOBS_ATTEMPT": str(self.attempt), "FILEJOBS_MESSAGE_ID": self.message_id}
