"""Facts about the shipped indicator library (toolmarks/indicators/tools/*.yaml).

Loads the set through the real loader, as the scanner does, and checks it against
the seed table (Trend Micro 2013) and against real artefacts in
../shared/test_data/real where those are available. The seed's tools and MD5s must
all be there; more tools may join them (a tool is one YAML file and its golden
cases in tests/indicators/cases/, no Python).
"""

from __future__ import annotations

import lzma
import re
from pathlib import Path

import pytest

from toolmarks.indicators import loader
from toolmarks.indicators.model import HASH_LENGTHS, STAGES_JA

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED = PROJECT_ROOT.parent / "shared"
SEED = SHARED / "seed" / "trendmicro-apt-tools-2013.ja.txt"
REAL = SHARED / "test_data" / "real"

# The tools of the seed table, by the ids the library gives them.
SEED_TOOLS = {
    "getmail",
    "netbox",
    "pwdump",
    "cachedump",
    "lslsass",
    "mapiget",
    "htran",
    "wce",
    "lz77",
    "gsecdump",
    "zxproxy",
    "lsb_steganography",
    "upx_shell",
    "zxportmap",
    "zxhttpserver",
    "sdelete",
    "dbgview",
}

# The 23 MD5s of the seed table, normalised (lower case, no 0x).
SEED_MD5 = {
    "pwdump": ["dd2ef0d6487385839bbf7863fe450cc5"],
    "cachedump": ["5065266fbad9362d5a329c5388627ea5"],
    "lslsass": ["ede305561db6f7ca1783e0fc75d0db14"],
    "htran": [
        "e0c14f98c4d4b995f00d49616bf9ba57",
        "2edfe2b5238c8f49130f2a2f85e33c18",
        "1725e68e574e4b077f7d16f7fa30d984",
        "7e3bb01afb4c50da526d142fdf444688",
        "3548ea689e06a2599bdd1bdb909abb75",
    ],
    "wce": ["bd73c74819d8db09c645c738bbd3f5b9", "df840ac27051d26555a109cc47d03fe4"],
    "lz77": ["2238453fd8225baff0d52bf64361b4fd"],
    "gsecdump": [
        "57f222d8fbe0e290b4bf8eaa994ac641",
        "875f3fc948c6534804a26176dcfb6af0",
        "8ee24ad5b849877907304de566fb6dc6",
    ],
    "zxproxy": [
        "eb36a5ef6a807fb7b2e2912e08b4882d",
        "69f5a988b4f3a3e5d300d489c9707cd6",
        "286760651edfe6a8b34988004156b894",
    ],
    "lsb_steganography": ["c188ef350f1ee0e5fa6f6ef2e70231bc"],
    "upx_shell": ["1281478d409de246777472db99f58751"],
    "zxportmap": [
        "9a7b9caae7b8b3a2b5d68e6880b6d0a4",
        "2fdbb3ee0edc5e589ea727bbc2cd6d50",
    ],
    "sdelete": ["e189b5ce11618bb7880e9b09d53a588f"],
    "dbgview": ["cea66497fa93db4b0dd33438a2a5d6bd"],
}

# 一般的な利用段階 of each seed row, in the seed's order.
SEED_STAGES = {
    "getmail": ["data_exfiltration"],
    "netbox": ["attack", "data_exfiltration", "lateral_movement"],
    "pwdump": ["asset_discovery"],
    "cachedump": ["asset_discovery"],
    "lslsass": ["lateral_movement", "asset_discovery"],
    "mapiget": ["lateral_movement", "asset_discovery"],
    "htran": ["attack", "data_exfiltration", "lateral_movement"],
    "wce": ["lateral_movement", "asset_discovery"],
    "lz77": ["data_exfiltration"],
    "gsecdump": ["asset_discovery"],
    "zxproxy": ["data_exfiltration", "lateral_movement"],
    "lsb_steganography": ["initial_compromise", "data_exfiltration"],
    "upx_shell": ["attack", "lateral_movement"],
    "zxportmap": ["lateral_movement", "data_exfiltration"],
    "zxhttpserver": ["data_exfiltration"],
    "sdelete": ["lateral_movement", "evidence_destruction"],
    "dbgview": ["lateral_movement", "asset_discovery"],
}

# Tool names as the seed table writes them in its first column.
SEED_NAMES = {
    "GETMAIL": "getmail",
    "Netbox": "netbox",
    "Pwdump": "pwdump",
    "Cachedump": "cachedump",
    "Lslsass": "lslsass",
    "mapiget": "mapiget",
    "HTRAN": "htran",
    "Windows Credential Editor(WCE)": "wce",
    "Lz77.exe": "lz77",
    "Gsecdump": "gsecdump",
    "ZXProxy (別名 AProxy)": "zxproxy",
    "LSB-Steganography": "lsb_steganography",
    "UPX Shell": "upx_shell",
    "ZXPortMap": "zxportmap",
    "ZXHttpServer": "zxhttpserver",
    "Sdelete": "sdelete",
    "Dbgview": "dbgview",
}

DUAL_USE = {"netbox", "dbgview", "sdelete"}
VOCABULARY = set(STAGES_JA.values())

# Ordinary Windows paths no strong filename indicator may hit.
ORDINARY_PATHS = [
    r"\Windows\System32\lsass.exe",
    r"\Windows\System32\svchost.exe",
    r"\Windows\explorer.exe",
    r"\Windows\System32\notepad.exe",
    r"\Windows\System32\samsrv.dll",
    r"\Windows\System32\config\SAM",
    r"\Windows\System32\drivers\etc\hosts",
    r"\Windows\Temp\MpSigStub.exe",
    r"\Users\alice\AppData\Local\Temp\~DF1234.tmp",
    r"\Users\alice\Documents\mail.txt.bak",
    r"\Users\alice\Documents\12-attach.doc",
    r"\ProgramData\Microsoft\Windows\WER\ReportQueue\AppCrash_notepad.exe_1a2b3c\Report.wer",
    r"\Program Files\Wireshark\radius\dictionary.alcatel-lucent.aaa",
    r"\Program Files\7-Zip\7z.exe",
    r"\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE",
]


@pytest.fixture(scope="module")
def shipped():
    return loader.load()


def _seed_rows() -> dict[str, list[str]]:
    """The seed table's rows by tool id: name, description, stages, IOCs.

    Every line of the table after its header must be a known seed tool, so a row
    the mapping misses fails here instead of being skipped.
    """
    lines = SEED.read_text(encoding="utf-8").splitlines()
    table = [line for line in lines if " | " in line]
    assert table[0].startswith("ツール名 | ")
    rows = {}
    for line in table[1:]:
        cells = [c.strip() for c in line.split(" | ")]
        assert len(cells) == 4 and cells[0] in SEED_NAMES, line
        rows[SEED_NAMES[cells[0]]] = cells
    return rows


def _tool_indicators(shipped, tool_id, section):
    return [i for i in shipped.tools[tool_id].indicators if i.section == section]


def _filename_hits(indicator, path):
    flags = 0 if indicator.fields.get("case_sensitive") else re.IGNORECASE
    return re.search(indicator.fields["regex"], path, flags) is not None


def _any_filename_hit(shipped, tool_id, path):
    return any(
        _filename_hits(i, path) for i in _tool_indicators(shipped, tool_id, "filenames")
    )


def _prefetch_hits(indicator, executable=None, referenced=()):
    """Both given patterns must match, as the prefetch matcher does."""
    f = indicator.fields
    if "executable" in f and (
        executable is None
        or not re.fullmatch(f["executable"], executable, re.IGNORECASE)
    ):
        return False
    return "referenced" not in f or any(
        re.search(f["referenced"], name, re.IGNORECASE) for name in referenced
    )


def _registry_hits(indicator, key, value=None):
    f = indicator.fields
    if not re.fullmatch(f["key"], key, re.IGNORECASE):
        return False
    if "value" in f:
        return (
            value is not None
            and re.fullmatch(f["value"], value, re.IGNORECASE) is not None
        )
    return True


# --- the set as a whole -----------------------------------------------------------


def test_seed_tools_all_shipped(shipped):
    """The seed table's 17 tools are all in the shipped set; others may join."""
    rows = _seed_rows()
    assert len(rows) == 17
    assert set(rows) == SEED_TOOLS
    assert SEED_TOOLS <= set(shipped.tools)


def test_one_file_per_tool_named_after_it(shipped):
    for tool in shipped.tools.values():
        assert Path(tool.path).name == f"{tool.id}.yaml"
        assert Path(tool.path).parent == loader.shipped_path()


def test_indicator_ids_name_their_tool(shipped):
    ids = [i.id for i in shipped.indicators()]
    assert len(ids) == len(set(ids))
    for ind in shipped.indicators():
        assert ind.id.startswith(f"{ind.tool_id}.")
        assert re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+", ind.id)


def test_every_indicator_has_provenance(shipped):
    for ind in shipped.indicators():
        assert ind.source.strip(), ind.id
        assert ind.confidence in {"primary", "rule", "inferred"}, ind.id
        if ind.confidence == "inferred":
            assert ind.fields.get("checked", "").strip(), ind.id


def test_every_tool_has_references(shipped):
    for tool in shipped.tools.values():
        assert tool.data["references"], tool.id
    for tool_id in SEED_TOOLS:
        references = shipped.tools[tool_id].data["references"]
        assert any("seed" in ref for ref in references), tool_id


def test_pwdump_indicators_name_their_variant(shipped):
    variant = re.compile(
        r"generic|pwdump6|fgdump|PwDump7|PwDump8|PWDumpX|Quarks", re.IGNORECASE
    )
    for ind in shipped.tools["pwdump"].indicators:
        assert variant.search(ind.fields.get("note", "")), ind.id
    ids = {i.id for i in shipped.tools["pwdump"].indicators}
    assert {"pwdump.md5.seed_1", "pwdump.sha1.pwdump7_1"} <= ids


# --- hashes -----------------------------------------------------------------------


def test_all_seed_md5s_present_under_their_tool(shipped):
    assert sum(len(v) for v in SEED_MD5.values()) == 23
    md5_owner = {i.value: i for i in shipped.indicators("hashes") if i.kind == "md5"}
    for tool_id, values in SEED_MD5.items():
        for value in values:
            ind = md5_owner[value]
            assert ind.tool_id == tool_id
            assert ind.confidence == "primary"
            assert "seed table" in ind.source


def test_seed_md5_indicators_are_exactly_the_seed(shipped):
    seed_inds = [i for i in shipped.indicators("hashes") if "seed table" in i.source]
    assert sorted(i.value for i in seed_inds) == sorted(
        v for values in SEED_MD5.values() for v in values
    )


def test_hash_values_are_normalised_hex(shipped):
    hashes = shipped.indicators("hashes")
    for ind in hashes:
        assert re.fullmatch(r"[0-9a-f]+", ind.value), ind.id
        assert len(ind.value) == HASH_LENGTHS[ind.kind], ind.id
        # as written in the file, not only after the loader normalised it
        assert not ind.value.startswith("0x")
    md5s = [i.value for i in hashes if i.kind == "md5"]
    assert md5s and all(re.fullmatch(r"[0-9a-f]{32}", v) for v in md5s)


def test_yaml_files_hold_normalised_hashes():
    import yaml

    for path in sorted(loader.shipped_path().glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for item in data.get("hashes", []):
            assert item["value"] == item["value"].lower(), (path.name, item["id"])
            assert not item["value"].startswith("0x"), (path.name, item["id"])


def test_hashes_only_from_primary_or_rule_sources(shipped):
    for ind in shipped.indicators("hashes"):
        assert ind.confidence in {"primary", "rule"}, ind.id


# --- stages and metadata ----------------------------------------------------------


def test_stages_are_from_the_vocabulary(shipped):
    for tool in shipped.tools.values():
        assert tool.stages and set(tool.stages) <= VOCABULARY, tool.id


def test_stages_match_the_seed_rows(shipped):
    for tool_id, stages in SEED_STAGES.items():
        tool = shipped.tools[tool_id]
        assert tool.stages == stages, tool_id
        assert [STAGES_JA[s] for s in tool.data["stages_ja"]] == stages, tool_id


def test_dual_use_only_where_the_seed_says_so(shipped):
    for tool_id in SEED_TOOLS:
        tool = shipped.tools[tool_id]
        assert tool.dual_use is (tool.id in DUAL_USE), tool.id
    for tool in shipped.tools.values():
        assert ("dual_use" in tool.labels()) is tool.dual_use, tool.id


def test_netbox_has_metadata_and_no_indicators(shipped):
    netbox = shipped.tools["netbox"]
    assert netbox.indicators == []
    assert "no IOC" in netbox.data["description"]
    assert netbox.data["description_ja"].startswith("ホスティングツール")


def test_against_the_seed_document(shipped):
    """Parses the seed table itself: descriptions, stages and MD5s per row."""
    rows = _seed_rows()
    assert set(rows) == SEED_TOOLS
    for tool_id, (_, description, stages, iocs) in rows.items():
        tool = shipped.tools[tool_id]
        assert tool.data["description_ja"] == description, tool_id
        assert tool.data["stages_ja"] == stages.split("、"), tool_id
        seed_md5 = sorted(
            m.lower().removeprefix("0x")
            for m in re.findall(r"(?:0x)?[0-9A-Fa-f]{32}", iocs)
        )
        shipped_md5 = sorted(
            i.value
            for i in tool.indicators
            if i.kind == "md5" and "seed table" in i.source
        )
        assert shipped_md5 == seed_md5, tool_id


# --- strings ----------------------------------------------------------------------


def test_strings_are_long_enough_and_encoded(shipped):
    for ind in shipped.indicators("strings"):
        assert len(ind.value) >= 4, ind.id
        assert set(ind.fields["encodings"]) <= {"ascii", "wide"}


def test_getmail_string_uses_ascii_apostrophe(shipped):
    (ind,) = [
        i
        for i in _tool_indicators(shipped, "getmail", "strings")
        if "Crazy Profile" in i.value
    ]
    assert ind.value == "Lu's Crazy Profile (democode)"
    assert "\u2019" not in ind.value
    assert "\u2019" in ind.fields["note"] or "typographic" in ind.fields["note"]


def test_seed_strings_present(shipped):
    values = {(i.tool_id, i.value) for i in shipped.indicators("strings")}
    assert ("mapiget", "WNetCancelConnection2W") in values
    assert ("zxhttpserver", "ZXHttpServer") in values
    assert ("zxhttpserver", "ZXHttpServer.exe") in values


def test_windows_api_name_is_weak(shipped):
    (ind,) = [
        i for i in shipped.indicators("strings") if i.value == "WNetCancelConnection2W"
    ]
    assert ind.weak and ind.fields["note"]


def test_weak_indicators_say_why(shipped):
    for ind in shipped.indicators():
        if ind.weak:
            assert ind.fields.get("note", "").strip(), ind.id


def test_wce_wide_strings(shipped):
    (ind,) = [
        i
        for i in _tool_indicators(shipped, "wce", "strings")
        if i.value == "Windows Credentials Editor"
    ]
    assert ind.fields["encodings"] == ["ascii", "wide"]


# --- filenames --------------------------------------------------------------------


def test_getmail_attachment_pattern(shipped):
    assert _any_filename_hit(shipped, "getmail", r"\Users\a\123-attach.doc")
    assert _any_filename_hit(shipped, "getmail", r"\x\2013-attach.doc")
    assert not _any_filename_hit(shipped, "getmail", r"\x\12-attach.doc")
    assert not _any_filename_hit(shipped, "getmail", r"\x\123-attach.docx")


def test_mapiget_output_names(shipped):
    assert _any_filename_hit(shipped, "mapiget", r"\Users\a\Desktop\5-mail.txt")
    assert _any_filename_hit(shipped, "mapiget", r"\Users\a\Desktop\mail.txt")
    assert not _any_filename_hit(shipped, "mapiget", r"\Users\a\Desktop\mail.txt.bak")
    assert not _any_filename_hit(shipped, "mapiget", r"\Users\a\Desktop\email.txt")


def test_wce_aux_dll(shipped):
    for path in (
        r"\Users\alice\AppData\Local\Temp\wceaux.dll",
        r"\Windows\Temp\wceaux.dll",
        r"\Documents and Settings\bob\Local Settings\Temp\WCEAUX.DLL",
    ):
        assert _any_filename_hit(shipped, "wce", path), path


def test_executable_names(shipped):
    cases = {
        "sdelete": [
            r"\Users\tony\Downloads\SysinternalsSuite\sdelete.exe",
            r"\Users\tony\Downloads\SysinternalsSuite\sdelete64.exe",
        ],
        "dbgview": [
            r"\Users\tony\Downloads\SysinternalsSuite\dbgview.exe",
            r"\Users\tony\Downloads\SysinternalsSuite\Dbgview64.exe",
        ],
        "wce": [r"\Windows\Temp\wce.exe", r"\x\wce64.exe"],
        "pwdump": [
            r"\x\PwDump7.exe",
            r"\x\pwdump.exe",
            r"\x\PWDumpX.exe",
            r"\Users\a\AppData\Local\Temp\servpw.exe",
            r"\x\quarks-pwdump.exe",
        ],
        "gsecdump": [r"\x\gsecdump.exe", r"\x\gsecdump-v2b5.exe"],
        "cachedump": [r"\x\cachedump.exe", r"\x\cachedump64.exe"],
        "htran": [r"\x\htran.exe", r"\x\lcx.exe"],
        "lslsass": [r"\x\lslsass.exe"],
        "zxhttpserver": [r"\x\ZXHttpServer.exe"],
    }
    for tool_id, paths in cases.items():
        for path in paths:
            assert _any_filename_hit(shipped, tool_id, path), (tool_id, path)


def test_no_strong_filename_hit_on_ordinary_windows_files(shipped):
    for ind in shipped.indicators("filenames"):
        if ind.weak:
            continue
        for path in ORDINARY_PATHS:
            assert not _filename_hits(ind, path), (ind.id, path)


def test_sdelete_wipe_names(shipped):
    wipe = [
        i
        for i in _tool_indicators(shipped, "sdelete", "filenames")
        if i.id != "sdelete.filename.exe"
    ]

    def hit(path):
        return any(_filename_hits(i, path) for i in wipe)

    assert hit(r"\Users\a\Desktop\ZZZ.ZZZ")
    assert hit(r"\Users\a\Desktop\sdeleAAAAAAAAAAAAAAAAAAAA.AAA")
    assert hit(r"\SDELTEMP")
    assert hit(r"\SDELMFT000001")
    assert not hit(r"\Program Files\Wireshark\radius\dictionary.alcatel-lucent.aaa")
    assert not hit(r"\Users\a\Desktop\report.txt")


# --- registry, prefetch, event logs -------------------------------------------------


def test_wce_prefetch_by_name_and_by_wceaux(shipped):
    prefetch = _tool_indicators(shipped, "wce", "prefetch")
    assert any(_prefetch_hits(i, executable="WCE.EXE") for i in prefetch)
    by_reference = [i for i in prefetch if "referenced" in i.fields]
    assert by_reference
    assert re.search(
        by_reference[0].fields["referenced"], r"\WINDOWS\TEMP\WCEAUX.DLL", re.IGNORECASE
    )
    # a renamed WCE (C.EXE) is still caught by the DLL it writes
    assert any(
        _prefetch_hits(
            i, executable="C.EXE", referenced=[r"\VOLUME{01d0}\WINDOWS\TEMP\WCEAUX.DLL"]
        )
        for i in by_reference
    )


@pytest.mark.parametrize("tool_id", ["wce", "sdelete", "pwdump"])
def test_registry_or_prefetch_traces_with_source(shipped, tool_id):
    traces = _tool_indicators(shipped, tool_id, "registry") + _tool_indicators(
        shipped, tool_id, "prefetch"
    )
    assert traces
    assert all(t.source.strip() for t in traces)
    assert _tool_indicators(shipped, tool_id, "prefetch")


def test_service_keys(shipped):
    def hits(tool_id, key, value=None):
        return any(
            _registry_hits(i, key, value)
            for i in _tool_indicators(shipped, tool_id, "registry")
            if i.fields["hive"] == "SYSTEM"
        )

    assert hits("wce", r"CurrentControlSet\Services\WCESERVICE")
    assert hits("pwdump", r"CurrentControlSet\Services\PWDumpX")
    assert hits("pwdump", r"CurrentControlSet\Services\fgexec")
    assert hits("cachedump", r"CurrentControlSet\Services\CacheDump")
    assert not hits("wce", r"CurrentControlSet\Services\WCESERVICE\Enum")
    (guid,) = [
        i
        for i in _tool_indicators(shipped, "pwdump", "registry")
        if i.id == "pwdump.registry.pwdump6_guid_service"
    ]
    assert _registry_hits(guid, r"CurrentControlSet\Services\qhxkab", "DisplayName")
    assert re.search(
        guid.fields["data"], "{3F2504E0-4F89-11D3-9A0C-0305E82C3301}", re.IGNORECASE
    )
    assert not re.search(guid.fields["data"], "Windows Update", re.IGNORECASE)


@pytest.mark.parametrize(
    "tool_id, key",
    [
        ("sdelete", r"Software\Sysinternals\SDelete"),
        ("dbgview", r"Software\Sysinternals\DbgView"),
    ],
)
def test_sysinternals_eula_keys(shipped, tool_id, key):
    eula = [
        i
        for i in _tool_indicators(shipped, tool_id, "registry")
        if i.fields["hive"] == "NTUSER" and _registry_hits(i, key, "EulaAccepted")
    ]
    assert len(eula) == 1
    assert eula[0].source.strip()
    assert not _registry_hits(eula[0], r"Software\Sysinternals\PsExec", "EulaAccepted")


def test_prefetch_executable_names(shipped):
    cases = {
        "sdelete": ["SDELETE.EXE", "SDELETE64.EXE"],
        "dbgview": ["DBGVIEW.EXE", "DBGVIEW64.EXE"],
        "pwdump": ["PWDUMP7.EXE", "PWDUMPX.EXE", "PWDUMP.EXE", "DUMPSVC.EXE"],
        "gsecdump": ["GSECDUMP.EXE", "GSECDUMP-V2B5.EXE"],
        "htran": ["HTRAN.EXE"],
        "cachedump": ["CACHEDUMP.EXE", "CACHEDUMP64.EXE"],
        "lslsass": ["LSLSASS.EXE"],
    }
    for tool_id, names in cases.items():
        prefetch = [
            i
            for i in _tool_indicators(shipped, tool_id, "prefetch")
            if "executable" in i.fields
        ]
        for name in names:
            matching = [i for i in prefetch if _prefetch_hits(i, executable=name)]
            assert len(matching) == 1, (tool_id, name, [i.id for i in matching])
    everything = shipped.indicators("prefetch")
    for ordinary in ("CMD.EXE", "SVCHOST.EXE", "LSASS.EXE", "7ZFM.EXE", "WEVTUTIL.EXE"):
        assert not any(
            _prefetch_hits(i, executable=ordinary)
            for i in everything
            if "executable" in i.fields
        ), ordinary


def test_eventlog_traces_are_well_formed(shipped):
    events = shipped.indicators("eventlog")
    assert events
    for ind in events:
        f = ind.fields
        assert f["channel"] and f["field"] and f["event_ids"]
        re.compile(f["pattern"])
    (svc,) = [i for i in events if i.id == "wce.eventlog.service_install"]
    assert svc.fields["event_ids"] == [7045]
    assert re.search(svc.fields["pattern"], "WCESERVICE", re.IGNORECASE)
    assert re.search(svc.fields["pattern"], "WCE SERVICE", re.IGNORECASE)


# --- real artefacts -----------------------------------------------------------------

PREFETCH_SDELETE = (
    REAL
    / "prefetch"
    / "tool_traces"
    / "belkasoft_insider_threat"
    / "SDELETE.EXE-D6B20984.pf"
)
NTUSER_XZ = REAL / "registry" / "regipy" / "NTUSER_with_winscp.DAT.xz"


def test_real_sdelete_prefetch_matches(shipped):
    import pyscca

    pf = pyscca.file()
    pf.open(str(PREFETCH_SDELETE))
    try:
        executable = pf.executable_filename
        names = [pf.get_filename(i) for i in range(pf.number_of_filenames)]
    finally:
        pf.close()
    assert executable == "SDELETE.EXE"
    hits = [
        i.id
        for i in shipped.indicators("prefetch")
        if _prefetch_hits(i, executable=executable, referenced=names)
    ]
    assert hits == ["sdelete.prefetch.exe"]
    # its referenced files (system DLLs, the wiped files) hit no other tool
    assert not [
        i.id
        for i in shipped.indicators("prefetch")
        if "referenced" in i.fields
        and "executable" not in i.fields
        and _prefetch_hits(i, referenced=names)
    ]


def test_real_ntuser_dbgview_eula(shipped, tmp_path):
    from Registry import Registry as registry

    hive_path = tmp_path / "NTUSER.DAT"
    with lzma.open(NTUSER_XZ) as packed:
        hive_path.write_bytes(packed.read())
    hive = registry.Registry(str(hive_path))
    sysinternals = hive.open(r"Software\Sysinternals")
    hits = {}
    for sub in sysinternals.subkeys():
        key = rf"Software\Sysinternals\{sub.name()}"
        for value in sub.values():
            for ind in shipped.indicators("registry"):
                if ind.fields["hive"] == "NTUSER" and _registry_hits(
                    ind, key, value.name()
                ):
                    hits.setdefault(ind.id, []).append(
                        (key, value.name(), value.value())
                    )
    # 62 Sysinternals EULA keys, among them DbgView; no SDelete key in this hive
    assert hits == {
        "dbgview.registry.eula": [
            (r"Software\Sysinternals\DbgView", "EulaAccepted", 1)
        ],
    }
