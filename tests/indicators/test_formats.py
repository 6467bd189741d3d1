"""Exports and imports: YARA compiles with yara(1), plaso loads its tagging file,
STIX 2.1 round-trips, MISP and hash lists import into valid indicator files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

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


def test_stix_round_trip_keeps_hashes_and_names(tmp_path: Path, capsys) -> None:
    bundle = tmp_path / "bundle.json"
    assert (
        run(["indicators", "export", "--format", "stix2", "-o", str(bundle)], capsys)[0]
        == 0
    )
    assert json.loads(bundle.read_text())["type"] == "bundle"
    folder = tmp_path / "imported"
    code, _, err = run(
        ["indicators", "import", "--format", "stix2", str(bundle), "-o", str(folder)],
        capsys,
    )
    assert code == 0, err
    original = loader.load()
    back = loader.load([folder], shipped=False)

    def facts(indicator_set, sections=("hashes", "filenames")):
        return {
            (i.tool_id, i.id, i.kind, i.value)
            for i in indicator_set.indicators()
            if i.section in sections and i.kind != "imphash"
        }

    assert facts(back) == facts(original)
    assert facts(back)  # not vacuous


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
