"""The programs a Windows command line runs: the outer program and those it
starts through cmd.exe /c, PowerShell -Command, schtasks /tr or at, each with
its arguments, so command-line indicators can name a tool wherever it sits.

A reading, not an interpreter: quoting follows cmd.exe's common cases (a
quoted first token; a quoted /c string), commands are cut at `&`, `&&`, `||`
and `|` outside quotes, and variables are left as written.
"""

from __future__ import annotations

import dataclasses
import re

# cmd.exe's switches before the command string; /c runs it, /k runs it and stays.
_CMD = re.compile(r"^(?:/[a-bd-jl-z](?::\S*)?\s+)*/[ck]\s*", re.IGNORECASE)
_POWERSHELL_COMMAND = re.compile(
    r"(?:^|\s)-(?:c|command|co|com|comm|comma|comman)\s+(.*)$",
    re.IGNORECASE | re.DOTALL,
)
_SCHTASKS_ACTION = re.compile(r"(?:^|\s)/tr\s+(\"[^\"]*\"|'[^']*'|\S+)", re.IGNORECASE)
# at [\\computer] time [/interactive] [/every:date[,...] | /next:date[,...]] "command"
_AT_COMMAND = re.compile(r"(\"[^\"]*\"|\S+)\s*$")
# A quoted run (to its end if unclosed), an escaped character, a separator, or
# a run of anything else.
_TOKENS = re.compile(r'"[^"]*"?|\^.|&&|\|\||[&|]|[^"^&|]+', re.DOTALL)
_SEPARATOR_TOKENS = frozenset({"&&", "||", "&", "|"})
_MAX_DEPTH = 4  # cmd /c cmd /c … is legal; a hostile record must not recurse forever


@dataclasses.dataclass(frozen=True)
class Command:
    """One program a command line runs."""

    program: str  # as written: path or name, quotes removed
    arguments: str
    via: tuple[str, ...] = ()  # the wrappers' file names, outermost first

    @property
    def name(self) -> str:
        """The program's file name: what indicators match."""
        return re.split(r"[\\/]", self.program)[-1]

    @property
    def text(self) -> str:
        return f"{self.program} {self.arguments}".strip()


def commands(command_line: str) -> list[Command]:
    """Every program the command line runs, the outer one first."""
    found: list[Command] = []
    _read(command_line, (), found, 0)
    return found


def _read(text: str, via: tuple[str, ...], found: list[Command], depth: int) -> None:
    for part in _split(text):
        command = _first(part, via)
        if command is None:
            continue
        found.append(command)
        if depth < _MAX_DEPTH:
            inner = _inner(command)
            if inner is not None:
                _read(inner, (*via, command.name.lower()), found, depth + 1)


def _split(text: str) -> list[str]:
    """Commands cut at &, &&, || and | outside double quotes (^ escapes)."""
    if "&" not in text and "|" not in text:
        return [text.strip()] if text.strip() else []
    parts, current = [], []
    for token in _TOKENS.findall(text):
        if token in _SEPARATOR_TOKENS:
            parts.append("".join(current))
            current = []
        else:
            current.append(token)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _first(text: str, via: tuple[str, ...]) -> Command | None:
    text = text.lstrip("@&. ")
    if text.startswith(("'", '"')):
        end = text.find(text[0], 1)
        if end < 0:
            return Command(text[1:].strip(), "", via)
        program, arguments = text[1:end], text[end + 1 :]
    else:
        program, _, arguments = text.partition(" ")
    program = program.strip()
    if not program:
        return None
    return Command(program, arguments.strip(), via)


def _inner(command: Command) -> str | None:
    """The command line a wrapper runs, if the command is one."""
    name = command.name.lower().removesuffix(".exe")
    arguments = command.arguments
    if name == "cmd":
        switches = _CMD.match(arguments)
        if not switches:
            return None
        inner = arguments[switches.end() :].strip()
        # cmd.exe drops the outer quotes of a /c string (cmd /? "/S" rules).
        if len(inner) >= 2 and inner[0] == inner[-1] == '"':
            inner = inner[1:-1]
        return inner
    if name in ("powershell", "pwsh"):
        found = _POWERSHELL_COMMAND.search(arguments)
        return _unquoted(found.group(1)).replace(";", "&") if found else None
    if name == "schtasks":
        found = _SCHTASKS_ACTION.search(arguments)
        return _unquoted(found.group(1)) if found else None
    if name == "at" and arguments:
        found = _AT_COMMAND.search(arguments)
        return _unquoted(found.group(1)) if found else None
    return None


def _unquoted(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text
