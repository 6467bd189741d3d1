"""toolmarks' parsers as plaso parsers, for `toolmarks log2timeline`.

One plaso FileObjectParser per file parser of the registry
(toolmarks.parsers.manager), found by the same signatures, around the same
detection core the scanner runs: the same stream gives the same event data
whichever front read it. Registered with plaso's ParsersManager on import.
"""

from __future__ import annotations

import os
from typing import Any

import pyfsntfs
from dfvfs.lib import definitions as dfvfs_definitions
from plaso.lib import errors, specification
from plaso.parsers import interface, ntfs, presets
from plaso.parsers import manager as plaso_manager

from toolmarks.evidence import fsntfs
from toolmarks.output import plaso_storage
from toolmarks.parsers import manager
from toolmarks.plugins import indicator_set

# The NTFS change journal's stream, as the registry's paths name it.
JOURNAL = "/$Extend/$UsnJrnl:$J"


class ToolmarksParser(interface.FileObjectParser):
    """Runs one registry parser on a file object plaso hands it."""

    DEFINITION: manager.ParserDefinition
    NAME = "toolmarks"
    DATA_FORMAT = ""

    @classmethod
    def GetFormatSpecification(cls) -> specification.FormatSpecification:
        format_specification = specification.FormatSpecification(cls.NAME)
        for offset, signature in cls.DEFINITION.signatures:
            format_specification.AddNewSignature(signature, offset=offset)
        return format_specification

    def ParseFileObject(self, parser_mediator: Any, file_object: Any) -> None:
        definition = self.DEFINITION
        # plaso picked the file by its signature, as it does for its own
        # parsers; the scanner picks by path (see the README's table).
        file_entry = parser_mediator.GetFileEntry()
        location = source_of(file_entry.path_spec)
        if not definition.signatures and not definition.takes(location):
            # Without a signature plaso offers every file: take ours by path.
            raise errors.WrongParser(f"not a {definition.name} file by its path")
        produce(
            parser_mediator,
            definition,
            file_object,
            location,
            parser_mediator.GetFilename() or "",
            file_entry.IsAllocated(),
        )


def produce(
    parser_mediator: Any,
    definition: manager.ParserDefinition,
    file_object: Any,
    location: str,
    name: str,
    allocated: bool,
) -> None:
    """Runs one registry parser and hands its traces to plaso as event data."""
    compiled = indicator_set.compiled()
    parsed = definition.parse(file_object, location, compiled, name)
    for warning in parsed.warnings:
        parser_mediator.ProduceWarning(warning.removeprefix(f"{location}: "))
    version = compiled.indicator_set.version
    for trace in parsed.traces:
        trace.attributes.setdefault("allocated", allocated)
        event_data = plaso_storage.event_data_of(trace, compiled.tools, version)
        event_data._parser_chain = None  # the mediator sets plaso's own chain
        parser_mediator.ProduceEventData(event_data)


class ToolmarksUsnJrnlParser(ntfs.NTFSUsnJrnlParser):
    """plaso's usnjrnl parser, then toolmarks' parsers of the same journal.

    plaso's extractor hands `$UsnJrnl:$J` to the parser named usnjrnl alone,
    as the volume's file object (so that it can skip the sparse ranges); this
    one replaces it, keeps its events, and gives the `$J` stream, read through
    libfsntfs, to every registry parser that takes the journal.
    """

    DEFINITIONS = tuple(d for d in manager.file_parsers() if d.takes(JOURNAL))

    def ParseFileObject(self, parser_mediator: Any, file_object: Any) -> None:
        super().ParseFileObject(parser_mediator, file_object)
        volume = pyfsntfs.volume()
        try:
            volume.open_file_object(file_object)
        except OSError:
            return  # plaso's parser has said so
        try:
            entry = volume.get_file_entry_by_path(
                JOURNAL.split(":")[0].replace("/", "\\")
            )
            stream = entry and entry.get_alternate_data_stream_by_name("$J")
            for definition in self.DEFINITIONS if stream is not None else ():
                stream.seek(0)
                journal = Journal(stream)
                parser_mediator.AppendToParserChain(definition.parser_name)
                try:
                    produce(parser_mediator, definition, journal, JOURNAL, "$J", True)
                finally:
                    parser_mediator.PopFromParserChain()
        finally:
            volume.close()


class Journal:
    """libfsntfs' `$J` stream, telling its sparse extents (as plaso's usnjrnl
    parser skips them) so that the parsers never read them."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._stream.seek(offset, whence)
        return self._stream.get_offset()

    def tell(self) -> int:
        return self._stream.get_offset()

    def get_size(self) -> int:
        return self._stream.get_size()

    def data_ranges(self) -> list[tuple[int, int]]:
        return fsntfs.data_ranges(self._stream)


def source_of(path_spec: Any) -> str:
    """The path the scanner would name: dfVFS's NTFS back end spells it with
    backslashes, TSK and the others with slashes; an ADS after a colon."""
    location = getattr(path_spec, "location", None) or ""
    if path_spec.type_indicator == dfvfs_definitions.TYPE_INDICATOR_NTFS:
        location = location.replace("\\", "/")
    stream = getattr(path_spec, "data_stream", None)
    return f"{location}:{stream}" if stream else location


def _parser_class(definition: manager.ParserDefinition) -> type[ToolmarksParser]:
    return type(
        f"Toolmarks{definition.name.title()}Parser",
        (ToolmarksParser,),
        {
            "DEFINITION": definition,
            "NAME": definition.parser_name,
            "DATA_FORMAT": f"toolmarks: {definition.description}",
            "__doc__": f"toolmarks {definition.name} parser.",
        },
    )


PARSER_CLASSES = [_parser_class(d) for d in manager.file_parsers()]

for _parser_class_ in PARSER_CLASSES:
    if _parser_class_.NAME not in plaso_manager.ParsersManager._parser_classes:
        plaso_manager.ParsersManager.RegisterParser(_parser_class_)
_usnjrnl = plaso_manager.ParsersManager._parser_classes.get(ntfs.NTFSUsnJrnlParser.NAME)
if ToolmarksUsnJrnlParser.DEFINITIONS and _usnjrnl is not ToolmarksUsnJrnlParser:
    plaso_manager.ParsersManager.DeregisterParser(ntfs.NTFSUsnJrnlParser)
    plaso_manager.ParsersManager.RegisterParser(ToolmarksUsnJrnlParser)


# The `toolmarks` preset (--parsers toolmarks, or win7,toolmarks): plaso's
# presets come from its presets.yaml only, so the manager is extended to add
# ours after reading it; filestat gives the file events hashes and YARA
# matches are tagged on, usnjrnl hands us the change journal.
PRESET = "toolmarks"
_read_presets = presets.ParserPresetsManager.ReadFromFile


def _ReadFromFile(self: Any, path: str) -> None:
    _read_presets(self, path)
    names = ["filestat", *(parser_class.NAME for parser_class in PARSER_CLASSES)]
    if ToolmarksUsnJrnlParser.DEFINITIONS:
        names.append(ToolmarksUsnJrnlParser.NAME)
    self._definitions[PRESET] = presets.ParserPreset(PRESET, names)


presets.ParserPresetsManager.ReadFromFile = _ReadFromFile
