"""Plain hash lists: one hash a line, `#` comments, an optional name after the hash."""

from __future__ import annotations

from toolmarks.indicators.formats.common import ImportProblem, ToolBuilder, checked_hash
from toolmarks.indicators.model import IndicatorSet


def export(indicator_set: IndicatorSet) -> str:
    lines = [
        "# toolmarks hash list: <hash>  <tool>  <indicator id>",
        f"# indicator set {indicator_set.version}",
    ]
    for ind in indicator_set.indicators("hashes"):
        if ind.kind != "imphash":  # an imphash is not a file hash
            lines.append(f"{ind.value}  {ind.tool_id}  {ind.id}")
    return "\n".join(lines) + "\n"


def import_(
    text: str, source: str, tool_id: str, title: str, hash_type: str | None = None
) -> list[dict]:
    """Reads a hash list; every malformed line is an ImportProblem."""
    builder = ToolBuilder(tool_id, title, source)
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        value, _, note = line.partition(" ")
        try:
            found_type, value = checked_hash(hash_type, value, f"{source}:{number}")
        except ImportProblem as error:
            problems.append(str(error))
            continue
        builder.add_hash(
            found_type,
            value,
            source=f"{source} line {number}",
            note=note.strip() or None,
        )
    if problems:
        raise ImportProblem("\n".join(problems))
    if builder.empty():
        raise ImportProblem(f"{source}: no hashes found")
    return [builder.data]
