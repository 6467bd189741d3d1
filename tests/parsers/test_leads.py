"""Leads: odd executable names in user-writable folders, executables named like
a tool without a known hash, programs that ran but are gone.

The false-lead rate is measured on real data: every executable the real
prefetch files of ../shared/test_data/real/prefetch reference (Windows XP to 11
system programs, installers, updaters: 820 paths) gives two odd-name leads,
both tools of the APTSimulator run (MANIFEST: PsExec renamed P.EXE, the
NBTSCAN scanner, both run from \\TMP); the real images give none; the
workstation scenario's one lead is its planted, renamed GETMAIL.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pyscca
import pytest
from plaso_support import toolmarks

from toolmarks.events import labels
from toolmarks.indicators import compiler, loader
from toolmarks.parsers import leads, prefetch

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "test_data" / "real"


@pytest.fixture(scope="module")
def compiled() -> compiler.CompiledSet:
    return compiler.compile_set(loader.load())


@pytest.mark.parametrize(
    ("path", "kinds"),
    [
        ("\\Users\\bob\\AppData\\Local\\Temp\\xzz.exe", {leads.ODD_NAME}),  # the seed's
        ("\\ProgramData\\3f2a9c1b7e.exe", {leads.ODD_NAME}),
        (
            "\\Windows\\Temp\\{0c134c70-2b4d-4cb3-beed-37c5fa0451d0}.exe",
            {leads.ODD_NAME},
        ),
        ("\\Users\\Public\\xkcdqrtz.dll", {leads.ODD_NAME}),
        ("\\a.exe", {leads.ODD_NAME}),  # a volume's root
        ("\\$Recycle.Bin\\S-1-5-21-1-2-3-1001\\x7k2m9q4.exe", {leads.ODD_NAME}),
        ("\\Users\\bob\\Downloads\\wce.exe", {leads.UNKNOWN_BUILD}),
        ("\\Users\\bob\\AppData\\Roaming\\PwDump7.exe", {leads.UNKNOWN_BUILD}),
        # Decoys: not user-writable, plain names, not executables.
        ("\\Windows\\System32\\xzz.exe", set()),
        ("\\Users\\bob\\AppData\\Local\\Temp\\setup.exe", set()),
        ("\\Users\\bob\\AppData\\Local\\Temp\\xzz.txt", set()),
        ("\\Users\\bob\\Downloads\\wce.exe.txt", set()),
        ("\\Users\\bob\\Downloads\\newwce.exe", set()),
    ],
)
def test_file_leads(compiled, path: str, kinds: set[str]) -> None:
    found = leads.file_leads(path, [], compiled.tools)
    assert {m.indicator.removeprefix("lead.") for m in found} == kinds
    for match in found:
        assert match.tool == "" and match.kind == "lead" and match.value == path
        assert dict(match.detail)["reason"]
        # A lead's event carries its own label, never a tool's.
        assert labels([match], compiled.tools) == [
            "toolmarks",
            f"lead_{match.indicator.removeprefix('lead.')}",
        ]


def test_a_known_build_is_no_lead(compiled) -> None:
    wce = compiled.match_hash("md5", "bd73c74819d8db09c645c738bbd3f5b9")
    from toolmarks.events import Match

    matches = [Match.of(ind, "bd73c74819d8db09c645c738bbd3f5b9") for ind in wce]
    assert (
        leads.file_leads("\\Users\\bob\\Downloads\\wce.exe", matches, compiled.tools)
        == []
    )


def test_false_leads_on_real_prefetch_references(compiled) -> None:
    referenced, odd = 0, set()
    for path in sorted((REAL / "prefetch").rglob("*.pf")):
        parsed = prefetch.parse_prefetch(
            io.BytesIO(path.read_bytes()), str(path), compiled
        )
        if parsed.info is None:
            continue
        for name in parsed.info.filenames:
            program = leads.program_path(name)
            if not program.upper().endswith((".EXE", ".DLL", ".SCR", ".COM", ".SYS")):
                continue
            referenced += 1
            for match in leads.file_leads(program, [], {}):
                odd.add((path.parent.name, match.indicator, program))
    assert referenced >= 800
    assert odd == {
        ("aptsimulator", "lead.odd_name", "\\TMP\\NBTSCAN.EXE"),
        ("aptsimulator", "lead.odd_name", "\\TMP\\P.EXE"),
    }


def scan_leads(image: Path, out: Path) -> set[tuple[str, str]]:
    done = toolmarks("scan", str(image), "-o", str(out), "--no-verify")
    assert done.returncode == 0, done.stderr
    found = set()
    for line in (out / "timeline.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["data_type"] == leads.DATA_TYPE:
            assert row["tools"] == []
            assert row["tag"] == [
                "toolmarks",
                "lead_" + row["lead"].removeprefix("lead."),
            ]
            found.add((row["lead"], row["matched_values"][0]))
    return found


@pytest.mark.parametrize(
    "name", ["image.E01", "image.qcow2", "vsstest.qcow2", "windows_volume.qcow2"]
)
def test_no_lead_on_real_images(tmp_path: Path, name: str) -> None:
    assert scan_leads(REAL / "images" / name, tmp_path / "out") == set()


def test_workstation_lead_is_the_renamed_getmail(
    workstation_images, tmp_path: Path
) -> None:
    found = scan_leads(workstation_images["raw"], tmp_path / "out")
    assert found == {("lead.odd_name", "\\Users\\alice\\AppData\\Local\\Temp\\gm.exe")}
    planted = {f["path"]: f for f in workstation_images["manifest"]["files"]}
    gm = planted["/Users/alice/AppData/Local/Temp/gm.exe"]
    assert {e["tool"] for e in gm["expect"]} == {"getmail"}


def test_programs_gone_from_the_traces_volume(traces_images, tmp_path: Path) -> None:
    """Each planted prefetch file ran a program that is not on the volume: its
    path, as pyscca reads it, is a lead."""
    real = {
        hashlib.md5(path.read_bytes()).hexdigest(): path
        for path in (REAL / "prefetch").rglob("*.pf")
    }
    expected = set()
    for item in traces_images["manifest"]["files"]:
        if not item["path"].endswith(".pf"):
            continue
        scca = pyscca.file()
        scca.open(str(real[item["md5"]]))
        executable = scca.executable_filename.upper()
        for name in scca.filenames:
            if name.upper().rpartition("\\")[2] == executable:
                expected.add(("lead.missing_program", leads.program_path(name)))
        scca.close()
    assert expected
    found = scan_leads(traces_images["raw"], tmp_path / "out")
    assert {lead for lead in found if lead[0] == "lead.missing_program"} == expected
