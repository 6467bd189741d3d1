"""Exports and imports: YARA compiles with yara(1), plaso loads its tagging file
and tags the real Sysmon logs' tool command lines, the shipped set round-trips
through STIX 2.1 and MISP, and foreign STIX, MISP and hash lists import into
valid indicator files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import yaml
from plaso.engine import tagging_file

from toolmarks.cli.main import main
from toolmarks.indicators import loader
from toolmarks.indicators.formats.plaso_tagging import path_regex


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_yara_export_compiles_with_yara_cli(tmp_path: Path, capsys) -> None:
    rules = tmp_path / "toolmarks.yar"
    assert (
        run(["indicators", "export", "--format", "yara", "-o", str(rules)], capsys)[0]
        == 0
    )
    sample = tmp_path / "sample.bin"
    sample.write_bytes(b"\x00junk Lu's Crazy Profile (democode) junk")
    result = subprocess.run(
        ["yara", "-s", str(rules), str(sample)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "toolmarks_getmail__string__crazy_profile" in result.stdout


def test_plaso_tagging_export_loads_in_plaso(tmp_path: Path, capsys) -> None:
    path = tmp_path / "tags.txt"
    assert (
        run(
            ["indicators", "export", "--format", "plaso-tagging", "-o", str(path)],
            capsys,
        )[0]
        == 0
    )
    rules = tagging_file.TaggingFile(str(path)).GetEventTaggingRules()
    indicator_set = loader.load()
    for tool in indicator_set.tools.values():
        if any(
            i.section in ("hashes", "strings", "filenames") for i in tool.indicators
        ):
            assert f"tool_{tool.id}" in rules
    assert "ioc_md5" in rules and "ioc_filename" in rules


def test_path_regex_accepts_both_separators() -> None:
    import re

    regex = re.compile(path_regex(r"\\\d{3,}-attach\.doc$"), re.IGNORECASE)
    assert regex.search("/Users/a/123-attach.doc")
    assert regex.search(r"\Users\a\123-attach.doc")
    assert not regex.search("/Users/a/12-attach.doc")
    in_class = re.compile(path_regex(r"\\temp\\[^\\]+\.exe$"))
    assert in_class.search("/temp/x.exe") and not in_class.search("/temp/a/x.exe")


# The sections every exchange format carries; registry, prefetch and event-log
# indicators have no STIX or MISP form.
EXCHANGED = ("hashes", "strings", "filenames", "commandline")


def facts(indicator_set) -> dict[str, set[tuple]]:
    """Per tool: every exchanged indicator with its id, what it matches and its
    provenance, as the examiner reads it in `indicators show`."""
    found: dict[str, set[tuple]] = {}
    for ind in indicator_set.indicators():
        if ind.section not in EXCHANGED:
            continue
        f = ind.fields
        if ind.section == "strings":
            matches = (
                f["value"],
                tuple(f["encodings"]),
                bool(f.get("nocase")),
                bool(f.get("fullword")),
            )
        elif ind.section == "filenames":
            matches = (f["regex"], bool(f.get("case_sensitive")))
        elif ind.section == "commandline":
            matches = (f["program"], f.get("arguments"))
        else:
            matches = (f["value"],)
        provenance = (ind.source, ind.confidence, ind.weak, f.get("note"))
        found.setdefault(ind.tool_id, set()).add(
            (ind.id, ind.kind, matches, provenance, f.get("checked"))
        )
    return found


def tool_facts(indicator_set) -> dict[str, tuple]:
    return {
        t.id: (t.title, t.data["description"], tuple(t.stages), t.dual_use)
        for t in indicator_set.tools.values()
        if any(i.section in EXCHANGED for i in t.indicators)
    }


def assert_same_exchanged(back, original) -> None:
    want, got = facts(original), facts(back)
    assert set(got) == set(want)
    for tool_id in want:
        assert got[tool_id] == want[tool_id], tool_id
    assert tool_facts(back) == tool_facts(original)


def test_stix_round_trip_keeps_every_exchanged_indicator(
    tmp_path: Path, capsys
) -> None:
    bundle = tmp_path / "bundle.json"
    code, _, err = run(
        ["indicators", "export", "--format", "stix2", "-o", str(bundle)], capsys
    )
    assert code == 0
    assert "left out: " in err and "eventlog" in err  # said, not silent
    objects = json.loads(bundle.read_text())["objects"]
    patterns = [o["pattern"] for o in objects if o["type"] == "indicator"]
    assert any("windows-pebinary-ext'.imphash" in p for p in patterns)
    assert any(p.startswith("rule toolmarks_wce__") for p in patterns)
    assert any("process:command_line MATCHES" in p for p in patterns)
    folder = tmp_path / "imported"
    code, _, err = run(
        ["indicators", "import", "--format", "stix2", str(bundle), "-o", str(folder)],
        capsys,
    )
    assert code == 0, err
    original = loader.load()
    back = loader.load([folder], shipped=False)
    assert_same_exchanged(back, original)
    # The measure: WCE's 17 hashes (8 came back before), imphashes too.
    wce = [i for i in back.tools["wce"].indicators if i.section == "hashes"]
    assert len(wce) == 17 and any(i.kind == "imphash" for i in wce)


def test_misp_round_trip_keeps_every_exchanged_indicator(
    tmp_path: Path, capsys
) -> None:
    from toolmarks.indicators.formats import misp

    original = loader.load()
    exported = tmp_path / "events.json"
    exported.write_text(misp.export(original))
    assert "no MISP form" in capsys.readouterr().err
    events = json.loads(exported.read_text())["response"]
    types = {a["type"] for e in events for a in e["Event"]["Attribute"]}
    # MISP's own types (describeTypes.json): nothing invented.
    assert types <= {
        "md5",
        "sha1",
        "sha256",
        "imphash",
        "filename",
        "filename-pattern",
        "yara",
        "stix2-pattern",
        "text",
    }
    assert {"imphash", "filename-pattern", "yara", "stix2-pattern"} <= types
    folder = tmp_path / "imported"
    code, _, err = run(
        ["indicators", "import", "--format", "misp", str(exported), "-o", str(folder)],
        capsys,
    )
    assert code == 0, err
    assert_same_exchanged(loader.load([folder], shipped=False), original)


# A bundle as another team's tooling writes it: no toolmarks properties.
FOREIGN_BUNDLE = {
    "type": "bundle",
    "id": "bundle--6f1e4d3a-0000-4000-8000-000000000001",
    "objects": [
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--6f1e4d3a-0000-4000-8000-000000000002",
            "pattern_type": "stix",
            "pattern": "[process:command_line MATCHES 'wce(\\\\.exe)?\\\\s+-w']",
        },
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--6f1e4d3a-0000-4000-8000-000000000003",
            "pattern_type": "stix",
            "pattern": "[process:image_ref.name = 'gsecdump.exe' AND "
            "process:command_line MATCHES '-a']",
        },
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--6f1e4d3a-0000-4000-8000-000000000004",
            "pattern_type": "stix",
            "pattern": "[file:extensions.'windows-pebinary-ext'.imphash = "
            "'0123456789ABCDEF0123456789ABCDEF' OR file:size = 1024]",
        },
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--6f1e4d3a-0000-4000-8000-000000000005",
            "pattern_type": "yara",
            "pattern": 'rule two { strings: $a = "first string" wide '
            "$b = { 73 00 65 00 63 00 6f 00 6e 00 64 00 } "
            "$c = /re+gex/ condition: all of them }",
        },
    ],
}


def test_stix_import_of_foreign_patterns(tmp_path: Path, capsys) -> None:
    from toolmarks.indicators.compiler import compile_set

    source = tmp_path / "foreign.json"
    source.write_text(json.dumps(FOREIGN_BUNDLE))
    out = tmp_path / "foreign.yaml"
    code, _, err = run(
        ["indicators", "import", "--format", "stix2", str(source), "-o", str(out)],
        capsys,
    )
    assert code == 0, err
    # What has no toolmarks form is named, not dropped in silence.
    assert "file:size =" in err and "YARA rule two string $c: a regex string" in err
    imported = loader.load([out], shipped=False)
    (tool,) = imported.tools.values()
    hashes = [(i.kind, i.value) for i in tool.indicators if i.section == "hashes"]
    assert hashes == [("imphash", "0123456789abcdef0123456789abcdef")]
    strings = {
        i.fields["value"]: (i.fields["encodings"], i.weak)
        for i in tool.indicators
        if i.section == "strings"
    }
    # `all of them`: neither string names the rule alone.
    assert strings == {"first string": (["wide"], True), "second": (["wide"], True)}
    compiled = compile_set(imported)

    def tools_of(command_line: str) -> set[str]:
        return {h.indicator.id for h in compiled.match_commandline(command_line)}

    # The ART record's form (MANIFEST: record 544 is cmd.exe /c "wce -o …").
    assert tools_of('"C:\\Windows\\system32\\cmd.exe" /c "wce -w"')
    assert not tools_of('"C:\\Windows\\system32\\cmd.exe" /c "wce -o x"')
    assert tools_of("C:\\t\\GSECDUMP.EXE -a")
    assert not tools_of("C:\\t\\gsecdump2.exe -a")


def test_stix_import_names_bad_patterns(tmp_path: Path, capsys) -> None:
    bundle = json.loads(json.dumps(FOREIGN_BUNDLE))
    bundle["objects"][0]["pattern"] = "[process:command_line MATCHES ]"
    bundle["objects"][3]["pattern"] = "rule broken { condition: $nope }"
    source = tmp_path / "bad.json"
    source.write_text(json.dumps(bundle))
    code, _, err = run(
        ["indicators", "import", "--format", "stix2", str(source)], capsys
    )
    assert code == 2
    assert "indicator--6f1e4d3a-0000-4000-8000-000000000002: invalid STIX" in err
    assert "indicator--6f1e4d3a-0000-4000-8000-000000000005: invalid YARA" in err


def event_data_field(xml_string: str | None, name: str) -> str | None:
    """One EventData field of a record's XML, read with an XML parser."""
    if not xml_string:
        return None
    namespace = "{http://schemas.microsoft.com/win/2004/08/events/event}"
    for data in ElementTree.fromstring(xml_string).iter(f"{namespace}Data"):
        if data.get("Name") == name:
            return data.text or ""
    return None


def sysmon_store(real_data: Path, tmp_path: Path, name: str) -> list[dict]:
    """Plain plaso's events of a real Sysmon log, as an examiner has them."""
    from plaso_support import log2timeline, read_store, script

    store = tmp_path / f"{Path(name).stem}.plaso"
    log2timeline(
        script("log2timeline"), store, str(real_data / name), "--parsers", "winevtx"
    )
    return read_store(store)


def test_plaso_tagging_commandline_on_real_sysmon_logs(
    real_data: Path, tmp_path: Path, capsys
) -> None:
    from plaso.filters import event_filter

    from toolmarks.indicators.compiler import compile_set
    from toolmarks.indicators.formats.plaso_tagging import rule

    path = tmp_path / "tags.txt"
    args = ["indicators", "export", "--format", "plaso-tagging", "-o", str(path)]
    assert run(args, capsys)[0] == 0
    rules = tagging_file.TaggingFile(str(path)).GetEventTaggingRules()
    assert "ioc_commandline" in rules
    art = sysmon_store(
        real_data, tmp_path, "evtx/gpl-3.0/PanacheSysmon_vs_AtomicRedTeam01.evtx"
    )
    apt = sysmon_store(
        real_data,
        tmp_path,
        "evtx/aptsimulator/Microsoft-Windows-Sysmon%4Operational.evtx",
    )

    def tagged(rows) -> dict[int, set[str]]:
        found: dict[int, set[str]] = {}
        for row in rows:
            for label, filters in rules.items():
                if any(
                    f.Match(row["event"], row["data"], row["stream"], None)
                    for f in filters
                ):
                    found.setdefault(row["data"].record_number, set()).add(label)
        return found

    # MANIFEST: records 81, 542 and 544 run sdelete, gsecdump and wce through
    # cmd.exe /c; its other command lines (vssadmin, reg save, procdump,
    # ntdsutil) and the APTSimulator log's tools (PsExec, mimikatz, nbtscan)
    # are none of ours.
    assert tagged(art) == {
        81: {"tool_sdelete", "ioc_commandline"},
        542: {"tool_gsecdump", "ioc_commandline"},
        544: {"tool_wce", "ioc_commandline"},
    }
    assert tagged(apt) == {}
    # Indicator by indicator, the tagging rules agree with toolmarks' own
    # command-line reading on every command line of both logs.
    compiled = compile_set(loader.load())
    filters = {}
    for ind in compiled.indicator_set.indicators("commandline"):
        filters[ind.id] = event_filter.EventObjectFilter()
        filters[ind.id].CompileFilter(rule(ind))
    compared = 0
    for row in art + apt:
        data = row["data"]
        command_line = event_data_field(data.xml_string, "CommandLine")
        if command_line is None:
            continue
        compared += 1
        want = {h.indicator.id for h in compiled.match_commandline(command_line)}
        got = {
            i
            for i, f in filters.items()
            if f.Match(row["event"], data, row["stream"], None)
        }
        assert got == want, command_line
    assert compared > 500  # MANIFEST: 511 event 1 records in the ART log alone


MISP_EVENT = {
    "Event": {
        "info": "Intrusion 2024-07 tools",
        "uuid": "5f0e6b1e-0000-4000-8000-000000000001",
        "Attribute": [
            {"type": "md5", "value": "0123456789ABCDEF0123456789abcdef", "uuid": "a1"},
            {"type": "filename|sha256", "value": "evil.exe|" + "ab" * 32, "uuid": "a2"},
            {"type": "ip-dst", "value": "192.0.2.1", "uuid": "a3"},
        ],
        "Object": [
            {
                "name": "file",
                "Attribute": [
                    {"type": "sha1", "value": "cd" * 20, "uuid": "a4"},
                    {"type": "filename", "value": "wce (copy).exe", "uuid": "a5"},
                ],
            }
        ],
    }
}


def test_misp_import(tmp_path: Path, capsys) -> None:
    source = tmp_path / "event.json"
    source.write_text(json.dumps(MISP_EVENT))
    out = tmp_path / "misp.yaml"
    code, _, err = run(
        ["indicators", "import", "--format", "misp", str(source), "-o", str(out)],
        capsys,
    )
    assert code == 0, err
    tool = next(iter(loader.load([out], shipped=False).tools.values()))
    assert tool.id == "intrusion_2024_07_tools"
    values = {(i.kind, i.value) for i in tool.indicators if i.section == "hashes"}
    assert values == {
        ("md5", "0123456789abcdef0123456789abcdef"),
        ("sha256", "ab" * 32),
        ("sha1", "cd" * 20),
    }
    from toolmarks.indicators.compiler import compile_set

    compiled = compile_set(loader.load([out], shipped=False))
    assert compiled.filenames.match(r"\Users\x\wce (copy).exe")
    assert compiled.filenames.match(r"\evil.exe")
    assert not compiled.filenames.match(r"\not-evil.exe")


def test_misp_import_of_patterns_and_rules(tmp_path: Path, capsys) -> None:
    from toolmarks.indicators.compiler import compile_set

    event = {
        "Event": {
            "info": "Credential dumping kit",
            "Attribute": [
                {"type": "imphash", "value": "AB" * 16, "uuid": "b1"},
                {
                    "type": "filename-pattern",
                    "value": r"\\g(32|64)\.exe$",
                    "uuid": "b2",
                },
                {
                    "type": "stix2-pattern",
                    "value": "[process:image_ref.name = 'wce.exe' AND "
                    "process:command_line MATCHES '-w']",
                    "uuid": "b3",
                },
                {
                    "type": "yara",
                    "value": 'rule k { strings: $a = "kit marker" ascii nocase '
                    "condition: $a }",
                    "uuid": "b4",
                },
            ],
            "Object": [
                {
                    "name": "process",
                    "Attribute": [
                        {"type": "text", "value": "wce.exe -w", "uuid": "b5"}
                    ],
                }
            ],
        }
    }
    source = tmp_path / "event.json"
    source.write_text(json.dumps(event))
    out = tmp_path / "kit.yaml"
    code, _, err = run(
        ["indicators", "import", "--format", "misp", str(source), "-o", str(out)],
        capsys,
    )
    assert code == 0, err
    assert "not imported: 1 text" in err
    imported = loader.load([out], shipped=False)
    (tool,) = imported.tools.values()
    kinds = sorted(i.kind for i in tool.indicators)
    assert kinds == ["commandline", "filename", "imphash", "string"]
    (string,) = [i for i in tool.indicators if i.section == "strings"]
    assert string.fields["value"] == "kit marker" and string.fields["nocase"]
    compiled = compile_set(imported)
    assert compiled.filenames.match(r"\Temp\g64.exe")
    assert [h.indicator.kind for h in compiled.match_commandline("wce.exe -w")] == [
        "commandline"
    ]
    assert not compiled.match_commandline("wce.exe -o x")


def test_misp_bad_hash_is_reported(tmp_path: Path, capsys) -> None:
    event = json.loads(json.dumps(MISP_EVENT))
    event["Event"]["Attribute"][0]["value"] = "12345"
    source = tmp_path / "event.json"
    source.write_text(json.dumps(event))
    code, _, err = run(
        ["indicators", "import", "--format", "misp", str(source)], capsys
    )
    assert code == 2 and "attribute a1" in err and "5 hex digits, not 32" in err


def test_hash_list_import_and_export(tmp_path: Path, capsys) -> None:
    source = tmp_path / "list.txt"
    source.write_text(
        "# our own list\n0xDD2EF0D6487385839BBF7863FE450CC7  pwdump copy\n"
        "\n" + "ef" * 20 + "\n" + "12" * 32 + "  # sha256\n"
    )
    out = tmp_path / "list.yaml"
    code, _, err = run(
        [
            "indicators",
            "import",
            "--format",
            "hashes",
            str(source),
            "--tool-id",
            "ourlist",
            "-o",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    data = yaml.safe_load(out.read_text())
    assert [(h["type"], h["value"]) for h in data["hashes"]] == [
        ("md5", "dd2ef0d6487385839bbf7863fe450cc7"),
        ("sha1", "ef" * 20),
        ("sha256", "12" * 32),
    ]
    assert data["hashes"][0]["source"] == "list.txt line 2"
    code, exported, _ = run(
        ["indicators", "export", "--format", "hashes", "--indicators", str(out)], capsys
    )
    assert code == 0
    assert (
        "dd2ef0d6487385839bbf7863fe450cc7  ourlist  ourlist.md5.imported_1" in exported
    )


def test_hash_list_with_bad_line(tmp_path: Path, capsys) -> None:
    source = tmp_path / "list.txt"
    source.write_text("dd2ef0d6487385839bbf7863fe450cc7\nnot-a-hash\n")
    code, _, err = run(
        ["indicators", "import", "--format", "hashes", str(source)], capsys
    )
    assert code == 2 and "list.txt:2:" in err


def test_list_and_show(capsys) -> None:
    code, out, _ = run(["indicators", "list"], capsys)
    assert code == 0 and "getmail" in out
    code, out, _ = run(["indicators", "show", "getmail"], capsys)
    assert code == 0 and "Lu's Crazy Profile (democode)" in out
    code, out, _ = run(["indicators", "show", "getmail.filename.attach_doc"], capsys)
    assert code == 0 and "attach" in out
    code, _, err = run(["indicators", "show", "nosuchtool"], capsys)
    assert code == 2 and "no tool or indicator" in err
