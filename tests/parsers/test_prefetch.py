"""Tests of the prefetch detection core against real prefetch files of every version.

The facts asserted come from ../shared/test_data/real/MANIFEST.md (read there with
pyscca by the people who collected the files), not from this parser's output.
Missing test data fails the tests; nothing is skipped.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import random
import struct
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from toolmarks.indicators.compiler import CompiledSet
from toolmarks.indicators.loader import load
from toolmarks.parsers.prefetch import DATA_TYPE as DATA_TYPE_PREFETCH
from toolmarks.parsers.prefetch import (
    PrefetchInfo,
    PrefetchResult,
    parse_prefetch,
)

ROOT = Path(__file__).resolve().parents[2]
PREFETCH = ROOT / ".." / "shared" / "test_data" / "real" / "prefetch"
INDICATORS = ROOT / "test_data" / "indicators"
OS_FOLDERS = {
    "winxp": {17},
    "win2003": {17},
    "vista": {23},
    "win7": {23},
    "win8": {26},
    "win2012r2": {26},
    "win10": {30},
    "win11": {30, 31},
}
VERSIONS = {17, 23, 26, 30, 31}
# Generous: a parse takes about a millisecond, the bound only catches hangs.
TIME_LIMIT = 2.0
SDELETE = "tool_traces/belkasoft_insider_threat/SDELETE.EXE-D6B20984.pf"
P_EXE = "tool_traces/aptsimulator/P.EXE-07691575.pf"


class Fact(NamedTuple):
    """One MANIFEST entry: what pyscca read from the file."""

    path: str
    size: int
    sha256: str
    executable: str
    version: int
    compressed: bool
    prefetch_hash: str
    run_count: int
    run_times: list[str]  # file order, UTC, microseconds
    references: int
    executable_path: str | None
    volumes: list[tuple[str, str, str]]  # device path, serial, creation time
    notable: list[str]  # "first non-system file references"


# From the "Verified: pyscca: ..." and "First non-system file references" lines of
# ../shared/test_data/real/MANIFEST.md, one entry per prefetch file there.
FACTS = [
    Fact(
        path="winxp/CMD.EXE-087B4001.pf",
        size=11986,
        sha256="93ec53e941b285d1d2a11e1224ab2d5c7a1b8ac493ab8dec407f518c5655ae75",
        executable="CMD.EXE",
        version=17,
        compressed=False,
        prefetch_hash="087B4001",
        run_count=2,
        run_times=["2013-03-10T10:11:49.281250Z"],
        references=33,
        executable_path="\\DEVICE\\HARDDISKVOLUME1\\WINDOWS\\SYSTEM32\\CMD.EXE",
        volumes=[
            ("\\DEVICE\\HARDDISKVOLUME1", "24CB074B", "2013-03-10T10:19:46.234375Z")
        ],
        notable=[],
    ),
    Fact(
        path="winxp/CALC.EXE-02CD573A.pf",
        size=11332,
        sha256="7d8b213231048b54909ad0f194c964d4c18c7c0860d0fae6d47b2e945699ac9a",
        executable="CALC.EXE",
        version=17,
        compressed=False,
        prefetch_hash="02CD573A",
        run_count=3,
        run_times=["2016-01-13T22:05:51.281250Z"],
        references=30,
        executable_path="\\DEVICE\\HARDDISKVOLUME1\\WINDOWS\\SYSTEM32\\CALC.EXE",
        volumes=[
            ("\\DEVICE\\HARDDISKVOLUME1", "E0F7E847", "2016-01-13T11:17:18.718750Z")
        ],
        notable=[],
    ),
    Fact(
        path="winxp/NOTEPAD.EXE-336351A9.pf",
        size=11142,
        sha256="38548422010abde8f641a5bfdad8b7323d4afb7f908916e53647c8f194c9b784",
        executable="NOTEPAD.EXE",
        version=17,
        compressed=False,
        prefetch_hash="336351A9",
        run_count=1,
        run_times=["2016-01-13T22:04:53.828125Z"],
        references=30,
        executable_path="\\DEVICE\\HARDDISKVOLUME1\\WINDOWS\\SYSTEM32\\NOTEPAD.EXE",
        volumes=[
            ("\\DEVICE\\HARDDISKVOLUME1", "E0F7E847", "2016-01-13T11:17:18.718750Z")
        ],
        notable=[],
    ),
    Fact(
        path="win2003/CMD.EXE-087B4001.pf",
        size=6002,
        sha256="1ad8768dc22d960b935657f2019e8ae0027c5367e06b0eec2554a98ab80347e9",
        executable="CMD.EXE",
        version=17,
        compressed=False,
        prefetch_hash="087B4001",
        run_count=3,
        run_times=["2016-01-15T23:01:40.875000Z"],
        references=16,
        executable_path="\\DEVICE\\HARDDISKVOLUME1\\WINDOWS\\SYSTEM32\\CMD.EXE",
        volumes=[
            ("\\DEVICE\\HARDDISKVOLUME1", "64BB3469", "2016-01-15T15:45:15.890625Z")
        ],
        notable=[],
    ),
    Fact(
        path="vista/CMD.EXE-89305D47.pf",
        size=6026,
        sha256="6127d820b031cac7f5fb1e6d45e244aa48cbb7fa62910ad0317eacb71a0edcd0",
        executable="CMD.EXE",
        version=23,
        compressed=False,
        prefetch_hash="89305D47",
        run_count=3,
        run_times=["2016-01-16T20:03:15.551424Z"],
        references=7,
        executable_path="\\DEVICE\\HARDDISKVOLUME1\\WINDOWS\\SYSTEM32\\CMD.EXE",
        volumes=[
            ("\\DEVICE\\HARDDISKVOLUME1", "E8EAB8B5", "2016-01-16T20:53:13.109375Z")
        ],
        notable=[],
    ),
    Fact(
        path="win7/CMD.EXE-4A81B364.pf",
        size=8378,
        sha256="9f24326ee9e9f50dfcd79bc7ee80b248d66edf591b2a3fa02d294a1c83403c39",
        executable="CMD.EXE",
        version=23,
        compressed=False,
        prefetch_hash="4A81B364",
        run_count=2,
        run_times=["2016-01-16T20:26:42.515109Z"],
        references=16,
        executable_path="\\DEVICE\\HARDDISKVOLUME2\\WINDOWS\\SYSTEM32\\CMD.EXE",
        volumes=[
            ("\\DEVICE\\HARDDISKVOLUME2", "88008C2F", "2016-01-16T21:15:18.109375Z")
        ],
        notable=[],
    ),
    Fact(
        path="win7/PING.EXE-B29F6629.pf",
        size=11216,
        sha256="cdb6e2de2b02808755aa2591708ebe155ee3483947e230f5fdd6870390fafd26",
        executable="PING.EXE",
        version=23,
        compressed=False,
        prefetch_hash="B29F6629",
        run_count=14,
        run_times=["2012-04-06T19:00:55.932955Z"],
        references=27,
        executable_path="\\DEVICE\\HARDDISKVOLUME1\\WINDOWS\\SYSTEM32\\PING.EXE",
        volumes=[
            ("\\DEVICE\\HARDDISKVOLUME1", "AC036525", "2010-11-10T17:37:26.484375Z")
        ],
        notable=[],
    ),
    Fact(
        path="win7/WUAUCLT.EXE-830BCC14.pf",
        size=158422,
        sha256="fc20953fefb17df1e14eb7fdf4b3ea0ea597bd292cbc75712e71c6cc8af2f3ed",
        executable="WUAUCLT.EXE",
        version=23,
        compressed=False,
        prefetch_hash="830BCC14",
        run_count=25,
        run_times=["2012-03-15T21:17:39.807996Z"],
        references=103,
        executable_path="\\DEVICE\\HARDDISKVOLUME1\\WINDOWS\\SYSTEM32\\WUAUCLT.EXE",
        volumes=[
            ("\\DEVICE\\HARDDISKVOLUME1", "AC036525", "2010-11-10T17:37:26.484375Z"),
            (
                "\\DEVICE\\HARDDISKVOLUMESHADOWCOPY2",
                "AC036525",
                "2010-11-10T17:37:26.484375Z",
            ),
            (
                "\\DEVICE\\HARDDISKVOLUMESHADOWCOPY4",
                "AC036525",
                "2010-11-10T17:37:26.484375Z",
            ),
            (
                "\\DEVICE\\HARDDISKVOLUMESHADOWCOPY7",
                "AC036525",
                "2010-11-10T17:37:26.484375Z",
            ),
            (
                "\\DEVICE\\HARDDISKVOLUMESHADOWCOPY8",
                "AC036525",
                "2010-11-10T17:37:26.484375Z",
            ),
        ],
        notable=[],
    ),
    Fact(
        path="win7/DCODEDCODEDCODEDCODEDCODEDCOD-9054DA3F.pf",
        size=29746,
        sha256="33924bcab5b018e8b188322c6b6f6f2b577440b4ab1f66b38b1e3f8b3dd79e26",
        executable="DCODEDCODEDCODEDCODEDCODEDCOD",
        version=23,
        compressed=False,
        prefetch_hash="9054DA3F",
        run_count=5,
        run_times=["2016-01-22T16:23:16.341625Z"],
        references=50,
        executable_path=None,
        volumes=[
            ("\\DEVICE\\HARDDISKVOLUME2", "88008C2F", "2016-01-16T21:15:18.109375Z"),
            ("\\DEVICE\\HARDDISKVOLUME3", "E892367F", "2016-01-22T16:11:36.578125Z"),
        ],
        notable=[],
    ),
    Fact(
        path="win8/CMD.EXE-4A81B364.pf",
        size=8108,
        sha256="ec5a66b363b88674117bad3558cc8cfb6ea9e9d4d8ccd9190aaecbd5007879df",
        executable="CMD.EXE",
        version=26,
        compressed=False,
        prefetch_hash="4A81B364",
        run_count=2,
        run_times=["2016-01-16T21:10:14.120848Z", "2016-01-16T21:10:09.746035Z"],
        references=13,
        executable_path="\\DEVICE\\HARDDISKVOLUME2\\WINDOWS\\SYSTEM32\\CMD.EXE",
        volumes=[
            ("\\DEVICE\\HARDDISKVOLUME2", "C6EE7444", "2016-01-16T22:04:54.351954Z")
        ],
        notable=[],
    ),
    Fact(
        path="win8/TASKHOST.EXE-3AE259FC.pf",
        size=28766,
        sha256="00178686d5e755e596ee164e78473eab3aba382541d0f67f93654ef84d4ed36b",
        executable="TASKHOST.EXE",
        version=26,
        compressed=False,
        prefetch_hash="3AE259FC",
        run_count=4,
        run_times=[
            "2013-10-04T15:40:09.037833Z",
            "2013-10-04T15:28:09.010356Z",
            "2013-10-04T06:19:54.596060Z",
            "2013-10-04T06:11:13.642937Z",
        ],
        references=51,
        executable_path="\\DEVICE\\HARDDISKVOLUME2\\WINDOWS\\SYSTEM32\\TASKHOST.EXE",
        volumes=[
            ("\\DEVICE\\HARDDISKVOLUME2", "686C4249", "2013-10-04T15:57:26.146547Z")
        ],
        notable=[],
    ),
    Fact(
        path="win2012r2/CMD.EXE-4A81B364.pf",
        size=6318,
        sha256="c9706f88240a1e1e6b3f84d13de0946640c06ec0b82a4b91aa82d3e865c970ae",
        executable="CMD.EXE",
        version=26,
        compressed=False,
        prefetch_hash="4A81B364",
        run_count=2,
        run_times=["2016-01-16T21:40:16.393595Z", "2016-01-16T21:40:12.529328Z"],
        references=9,
        executable_path="\\DEVICE\\HARDDISKVOLUME2\\WINDOWS\\SYSTEM32\\CMD.EXE",
        volumes=[
            ("\\DEVICE\\HARDDISKVOLUME2", "7450B65F", "2016-01-16T22:21:57.788926Z")
        ],
        notable=[],
    ),
    Fact(
        path="win10/CMD.EXE-D269B812.pf",
        size=6298,
        sha256="0ef6ce683365dac64191608b47a74665ddec28eaae530ce2622900130c404077",
        executable="CMD.EXE",
        version=30,
        compressed=True,
        prefetch_hash="D269B812",
        run_count=55,
        run_times=[
            "2016-01-12T20:07:03.981069Z",
            "2016-01-10T02:29:02.788726Z",
            "2016-01-04T23:27:28.405869Z",
            "2016-01-04T23:27:28.726891Z",
            "2016-01-04T18:38:10.935655Z",
            "2016-01-04T18:38:11.344163Z",
            "2015-12-31T21:42:29.667018Z",
            "2015-12-17T22:34:21.579861Z",
        ],
        references=62,
        executable_path="\\VOLUME{01d1217a9c4c6779-8c9f49ec}\\WINDOWS\\SYSTEM32\\CMD.EXE",
        volumes=[
            (
                "\\VOLUME{01d12173f395296c-66f451bc}",
                "66F451BC",
                "2015-11-17T20:10:06.204964Z",
            ),
            (
                "\\VOLUME{01d1217a9c4c6779-8c9f49ec}",
                "8C9F49EC",
                "2015-11-17T20:57:46.243468Z",
            ),
        ],
        notable=[],
    ),
    Fact(
        path="win10/NOTEPAD.EXE-D8414F97.pf",
        size=7669,
        sha256="2eb257a375eda819c65e6b4e60dfb7b9c6691280e8cb40cec30d3e46ac96a50f",
        executable="NOTEPAD.EXE",
        version=30,
        compressed=True,
        prefetch_hash="D8414F97",
        run_count=2,
        run_times=["2019-06-05T19:55:04.877778Z", "2019-06-05T19:23:00.815705Z"],
        references=56,
        executable_path="\\VOLUME{01d3096ba3a46863-2ca3d1ae}\\WINDOWS\\SYSTEM32\\NOTEPAD.EXE",
        volumes=[
            (
                "\\VOLUME{01d3096ba3a46863-2ca3d1ae}",
                "2CA3D1AE",
                "2017-07-30T19:40:03.548784Z",
            )
        ],
        notable=[],
    ),
    Fact(
        path="win10/BYTECODEGENERATOR.EXE-C1E9BCE6.pf",
        size=74366,
        sha256="7b5855fbb17fabfeba6b3b5d90c8ef23b548106edf7e24b3d67fd826a1d6d537",
        executable="BYTECODEGENERATOR.EXE",
        version=30,
        compressed=True,
        prefetch_hash="C1E9BCE6",
        run_count=7,
        run_times=[
            "2015-05-14T22:11:58.091134Z",
            "2015-05-14T22:11:55.357652Z",
            "2015-05-14T22:11:45.513599Z",
            "2015-05-14T22:11:25.842727Z",
            "2015-05-14T22:11:19.858654Z",
            "2015-05-14T22:11:05.906654Z",
            "2015-05-14T22:10:38.251519Z",
        ],
        references=1085,
        executable_path="\\VOLUME{01d08edc0cbccaad-3e0d2d25}\\WINDOWS\\SYSTEM32\\BYTECODEGENERATOR.EXE",
        volumes=[
            (
                "\\VOLUME{01d08edc0cbccaad-3e0d2d25}",
                "3E0D2D25",
                "2015-05-15T06:54:55.139294Z",
            )
        ],
        notable=[],
    ),
    Fact(
        path="win11/AM_DELTA_PATCH_1.443.990.0.EX-7037CF86.pf",
        size=2701,
        sha256="9a5ad5a3c56ec67fb2f785e1f75366a642a2ea552694f5016cc8191cf3f49861",
        executable="AM_DELTA_PATCH_1.443.990.0.EX",
        version=31,
        compressed=True,
        prefetch_hash="7037CF86",
        run_count=1,
        run_times=["2026-02-04T13:43:44.668632Z"],
        references=18,
        executable_path=None,
        volumes=[
            (
                "\\VOLUME{01dc94cf1f08c4a4-bc1f1bfc}",
                "BC1F1BFC",
                "2026-02-03T05:37:01.408170Z",
            )
        ],
        notable=[],
    ),
    Fact(
        path="win11/CMD.EXE-0BD30981.pf",
        size=2711,
        sha256="f8da139c52beacc119bf4afddec98ae4dddeca33692958789c4c4e7bd6b3131a",
        executable="CMD.EXE",
        version=30,
        compressed=True,
        prefetch_hash="0BD30981",
        run_count=9,
        run_times=[
            "2022-07-03T02:05:30.585703Z",
            "2022-07-01T02:10:21.694629Z",
            "2022-05-28T20:51:44.452135Z",
            "2022-05-28T19:52:31.664527Z",
            "2022-05-28T12:35:34.444279Z",
            "2022-05-28T12:19:35.334726Z",
            "2022-05-28T12:17:37.263585Z",
            "2022-05-28T02:39:10.445267Z",
        ],
        references=21,
        executable_path="\\VOLUME{01d830ac8daec382-968dc6c7}\\WINDOWS\\SYSTEM32\\CMD.EXE",
        volumes=[
            (
                "\\VOLUME{01d830ac8daec382-968dc6c7}",
                "968DC6C7",
                "2022-03-05T16:17:47.697856Z",
            )
        ],
        notable=[],
    ),
    Fact(
        path="win11/CMD.EXE-8E75B5BB.pf",
        size=35774,
        sha256="22170527ad078aabdf8ed2c528a14d2b31f46739138e80cdf885e0a6b9808227",
        executable="CMD.EXE",
        version=31,
        compressed=False,
        prefetch_hash="8E75B5BB",
        run_count=40,
        run_times=[
            "2025-07-08T00:06:22.629882Z",
            "2025-07-08T00:01:41.707875Z",
            "2025-07-07T19:04:10.505335Z",
            "2025-07-07T19:04:10.585051Z",
            "2025-07-04T01:46:24.121001Z",
            "2025-06-29T22:19:00.360733Z",
            "2025-06-27T20:21:19.783246Z",
            "2025-06-27T19:54:39.467555Z",
        ],
        references=46,
        executable_path="\\VOLUME{01d5f51ea48267ca-96a49c74}\\WINDOWS\\SYSTEM32\\CMD.EXE",
        volumes=[
            (
                "\\VOLUME{01d5f51ea48267ca-96a49c74}",
                "96A49C74",
                "2020-03-08T07:53:23.513133Z",
            )
        ],
        notable=[],
    ),
    Fact(
        path="tool_traces/belkasoft_insider_threat/SDELETE.EXE-D6B20984.pf",
        size=13538,
        sha256="0d451a81877b0ac266665f18451ec88aefcab72461d20e722f2695e23183207d",
        executable="SDELETE.EXE",
        version=30,
        compressed=True,
        prefetch_hash="D6B20984",
        run_count=5,
        run_times=[
            "2021-02-14T02:38:08.922573Z",
            "2021-02-14T02:37:45.508301Z",
            "2021-02-14T02:23:50.871206Z",
            "2021-02-14T02:23:18.654248Z",
            "2021-02-14T02:22:57.090417Z",
        ],
        references=164,
        executable_path="\\VOLUME{01d668558f114fbd-188f1fca}\\USERS\\ANIT.GHOSH\\DESKTOP\\SDELETE.EXE",
        volumes=[
            (
                "\\VOLUME{01d668558f114fbd-188f1fca}",
                "188F1FCA",
                "2020-08-01T22:46:13.579359Z",
            )
        ],
        notable=[
            "\\VOLUME{01d668558f114fbd-188f1fca}\\USERS\\ANIT.GHOSH\\DESKTOP\\TMP\\XRAICOMMEND\\ASSORTMENT\\AGENT_ASSORTMENT.PY",
            "\\VOLUME{01d668558f114fbd-188f1fca}\\USERS\\ANIT.GHOSH\\DESKTOP\\TMP\\XRAICOMMEND\\ASSORTMENT\\CONFIG_ASSORTMENT.PY",
            "\\VOLUME{01d668558f114fbd-188f1fca}\\USERS\\ANIT.GHOSH\\DESKTOP\\TMP\\XRAICOMMEND\\ASSORTMENT\\ENV_ASSORTMENT.PY",
            "\\VOLUME{01d668558f114fbd-188f1fca}\\USERS\\ANIT.GHOSH\\DESKTOP\\TMP\\XRAICOMMEND\\ASSORTMENT\\__INIT__.PY",
            "\\VOLUME{01d668558f114fbd-188f1fca}\\USERS\\ANIT.GHOSH\\DESKTOP\\TMP\\XRAICOMMEND\\BASE\\AGENT.PY",
            "\\VOLUME{01d668558f114fbd-188f1fca}\\USERS\\ANIT.GHOSH\\DESKTOP\\TMP\\XRAICOMMEND\\BASE\\CONFIG_LIB.PY",
        ],
    ),
    Fact(
        path="tool_traces/belkasoft_insider_threat/7ZFM.EXE-69B8961D.pf",
        size=10938,
        sha256="90584f6e73b45d7e923c50e3c92051d61cb388bde74fcd78846dfc7de0033667",
        executable="7ZFM.EXE",
        version=30,
        compressed=True,
        prefetch_hash="69B8961D",
        run_count=3,
        run_times=[
            "2021-02-14T02:22:13.388555Z",
            "2021-02-14T02:15:33.015002Z",
            "2021-02-14T02:15:24.919150Z",
        ],
        references=77,
        executable_path="\\VOLUME{01d668558f114fbd-188f1fca}\\PROGRAM FILES\\7-ZIP\\7ZFM.EXE",
        volumes=[
            (
                "\\VOLUME{01d668558f114fbd-188f1fca}",
                "188F1FCA",
                "2020-08-01T22:46:13.579359Z",
            )
        ],
        notable=[
            "\\VOLUME{01d668558f114fbd-188f1fca}\\USERS\\ANIT.GHOSH\\APPDATA\\LOCAL\\ICONCACHE.DB",
            "\\VOLUME{01d668558f114fbd-188f1fca}\\USERS\\ANIT.GHOSH\\DOWNLOADS\\SDELETE.ZIP",
            "\\VOLUME{01d668558f114fbd-188f1fca}\\USERS\\ANIT.GHOSH\\DESKTOP\\TMP\\XRAICOMMEND-761263A55B8CFED4BCB8F87CBBB68BEAF2EC2423.TAR.GZ",
            "\\VOLUME{01d668558f114fbd-188f1fca}\\USERS\\ANIT.GHOSH\\DESKTOP\\TMP\\XRAICOMMEND-761263A55B8CFED4BCB8F87CBBB68BEAF2EC2423.TAR.GZ:ZONE.IDENTIFIER",
        ],
    ),
    Fact(
        path="tool_traces/belkasoft_insider_threat/WEVTUTIL.EXE-EF5861C4.pf",
        size=3722,
        sha256="297e5cf9ac4e9ad0503f8636d04bb701efdc31afce73a26d367eaf1c65704a97",
        executable="WEVTUTIL.EXE",
        version=30,
        compressed=True,
        prefetch_hash="EF5861C4",
        run_count=2,
        run_times=["2020-08-07T18:36:32.948716Z", "2020-08-07T18:36:32.870591Z"],
        references=27,
        executable_path="\\VOLUME{01d668558f114fbd-188f1fca}\\WINDOWS\\SYSTEM32\\WEVTUTIL.EXE",
        volumes=[
            (
                "\\VOLUME{01d668558f114fbd-188f1fca}",
                "188F1FCA",
                "2020-08-01T22:46:13.579359Z",
            )
        ],
        notable=[],
    ),
    Fact(
        path="tool_traces/aptsimulator/P.EXE-07691575.pf",
        size=5176,
        sha256="0aae840498a664e38ceccb73ca03d20c1d893db695ac795994dfef3363adafb9",
        executable="P.EXE",
        version=30,
        compressed=True,
        prefetch_hash="07691575",
        run_count=7,
        run_times=[
            "2022-03-10T20:41:24.225849Z",
            "2022-03-10T19:57:55.480995Z",
            "2022-03-10T19:57:51.087654Z",
            "2022-03-10T19:57:50.737712Z",
            "2022-03-10T19:57:46.331628Z",
            "2022-03-10T19:57:45.998099Z",
            "2022-03-10T19:57:43.516780Z",
        ],
        references=51,
        executable_path="\\VOLUME{01d834b54842fb73-1a484cb6}\\TMP\\P.EXE",
        volumes=[
            (
                "\\VOLUME{01d834b54842fb73-1a484cb6}",
                "1A484CB6",
                "2022-03-10T19:30:21.350385Z",
            )
        ],
        notable=[],
    ),
    Fact(
        path="tool_traces/aptsimulator/PSEXESVC.EXE-AD70946C.pf",
        size=3926,
        sha256="46dc3f36025a0d839d0ffd1c0df9877be1214f17ef1fc31971cc1fab876bcbbb",
        executable="PSEXESVC.EXE",
        version=30,
        compressed=True,
        prefetch_hash="AD70946C",
        run_count=7,
        run_times=[
            "2022-03-10T20:41:24.319792Z",
            "2022-03-10T19:57:55.613805Z",
            "2022-03-10T19:57:51.204827Z",
            "2022-03-10T19:57:50.854942Z",
            "2022-03-10T19:57:46.454558Z",
            "2022-03-10T19:57:46.130076Z",
            "2022-03-10T19:57:43.681107Z",
        ],
        references=37,
        executable_path="\\VOLUME{01d834b54842fb73-1a484cb6}\\WINDOWS\\PSEXESVC.EXE",
        volumes=[
            (
                "\\VOLUME{01d834b54842fb73-1a484cb6}",
                "1A484CB6",
                "2022-03-10T19:30:21.350385Z",
            )
        ],
        notable=[],
    ),
    Fact(
        path="tool_traces/aptsimulator/NBTSCAN.EXE-50688432.pf",
        size=2000,
        sha256="49e1927ac17f35c459a28908fb710044327eb0902662c5e75ae47ffe5a4cfd38",
        executable="NBTSCAN.EXE",
        version=30,
        compressed=True,
        prefetch_hash="50688432",
        run_count=3,
        run_times=[
            "2022-03-10T20:38:01.241646Z",
            "2022-03-10T20:37:52.975824Z",
            "2022-03-10T20:37:44.928464Z",
        ],
        references=20,
        executable_path="\\VOLUME{01d834b54842fb73-1a484cb6}\\TMP\\NBTSCAN.EXE",
        volumes=[
            (
                "\\VOLUME{01d834b54842fb73-1a484cb6}",
                "1A484CB6",
                "2022-03-10T19:30:21.350385Z",
            )
        ],
        notable=["\\VOLUME{01d834b54842fb73-1a484cb6}\\TMP\\SCAN1.TMP"],
    ),
    Fact(
        path="tool_traces/aptsimulator/AT.EXE-92F2B09E.pf",
        size=2546,
        sha256="c86b87bd37f97cc7f93cdb32c5a73223e4c44d0b612473bc666927be520e81d1",
        executable="AT.EXE",
        version=30,
        compressed=True,
        prefetch_hash="92F2B09E",
        run_count=1,
        run_times=["2022-03-10T20:51:50.227551Z"],
        references=23,
        executable_path="\\VOLUME{01d834b54842fb73-1a484cb6}\\WINDOWS\\SYSTEM32\\AT.EXE",
        volumes=[
            (
                "\\VOLUME{01d834b54842fb73-1a484cb6}",
                "1A484CB6",
                "2022-03-10T19:30:21.350385Z",
            )
        ],
        notable=[],
    ),
    Fact(
        path="tool_traces/aptsimulator/SCHTASKS.EXE-8B6144A9.pf",
        size=4677,
        sha256="b3801309a1a51473372da58399609e1fa5433b9d90883905b2541a7b1d8a9f1e",
        executable="SCHTASKS.EXE",
        version=30,
        compressed=True,
        prefetch_hash="8B6144A9",
        run_count=1,
        run_times=["2022-03-10T20:59:03.504962Z"],
        references=23,
        executable_path="\\VOLUME{01d834b54842fb73-1a484cb6}\\WINDOWS\\SYSTEM32\\SCHTASKS.EXE",
        volumes=[
            (
                "\\VOLUME{01d834b54842fb73-1a484cb6}",
                "1A484CB6",
                "2022-03-10T19:30:21.350385Z",
            )
        ],
        notable=[],
    ),
    Fact(
        path="tool_traces/aptsimulator/EVENTCREATE.EXE-AC875FD3.pf",
        size=2721,
        sha256="6be40f00c896b0b1b05cd42442bd559d374a9346a1f42a503958ff89df124d2c",
        executable="EVENTCREATE.EXE",
        version=30,
        compressed=True,
        prefetch_hash="AC875FD3",
        run_count=2,
        run_times=["2022-03-10T20:23:24.132810Z", "2022-03-10T20:23:24.117799Z"],
        references=24,
        executable_path="\\VOLUME{01d834b54842fb73-1a484cb6}\\WINDOWS\\SYSTEM32\\EVENTCREATE.EXE",
        volumes=[
            (
                "\\VOLUME{01d834b54842fb73-1a484cb6}",
                "1A484CB6",
                "2022-03-10T19:30:21.350385Z",
            )
        ],
        notable=[],
    ),
    Fact(
        path="tool_traces/aptsimulator/WEVTUTIL.EXE-1E154F39.pf",
        size=4134,
        sha256="26af9ca9de3179c40b75c07d100a717b21734914e9ccc7a74d35a55bdbb7beae",
        executable="WEVTUTIL.EXE",
        version=30,
        compressed=True,
        prefetch_hash="1E154F39",
        run_count=2,
        run_times=["2022-03-10T19:51:17.234843Z", "2022-03-10T19:51:17.139490Z"],
        references=29,
        executable_path="\\VOLUME{01d834b54842fb73-1a484cb6}\\WINDOWS\\SYSTEM32\\WEVTUTIL.EXE",
        volumes=[
            (
                "\\VOLUME{01d834b54842fb73-1a484cb6}",
                "1A484CB6",
                "2022-03-10T19:30:21.350385Z",
            )
        ],
        notable=[
            "\\VOLUME{01d834b54842fb73-1a484cb6}\\USERS\\TESTUSER\\APPDATA\\LOCAL\\TEMP\\MAN9128.TMP",
            "\\VOLUME{01d834b54842fb73-1a484cb6}\\USERS\\TESTUSER\\APPDATA\\LOCAL\\TEMP\\MAN90CA.TMP",
        ],
    ),
    Fact(
        path="tool_traces/aptsimulator/7Z.EXE-A137ACD8.pf",
        size=5150,
        sha256="3c45b94f26db6c56e42814d22212d131b151c801416a8adbd52556387ffbf2c6",
        executable="7Z.EXE",
        version=30,
        compressed=True,
        prefetch_hash="A137ACD8",
        run_count=15,
        run_times=[
            "2022-03-10T21:07:51.251004Z",
            "2022-03-10T21:03:28.426553Z",
            "2022-03-10T20:57:18.725886Z",
            "2022-03-10T20:46:17.554002Z",
            "2022-03-10T20:41:20.069709Z",
            "2022-03-10T20:37:44.835315Z",
            "2022-03-10T20:37:20.257284Z",
            "2022-03-10T20:32:23.882958Z",
        ],
        references=31,
        executable_path="\\VOLUME{01d834b54842fb73-1a484cb6}\\USERS\\TESTUSER\\DOWNLOADS\\APTSIMULATOR_PW_APT\\APTSIMULATOR\\HELPERS\\7Z.EXE",
        volumes=[
            (
                "\\VOLUME{01d834b54842fb73-1a484cb6}",
                "1A484CB6",
                "2022-03-10T19:30:21.350385Z",
            )
        ],
        notable=[
            "\\VOLUME{01d834b54842fb73-1a484cb6}\\USERS\\TESTUSER\\DOWNLOADS\\APTSIMULATOR_PW_APT\\APTSIMULATOR\\HELPERS\\7Z.DLL",
            "\\VOLUME{01d834b54842fb73-1a484cb6}\\USERS\\TESTUSER\\DOWNLOADS\\APTSIMULATOR_PW_APT\\APTSIMULATOR\\ENC-TOOLSET.7Z",
            "\\VOLUME{01d834b54842fb73-1a484cb6}\\INETPUB\\WWWROOT\\B.JSP",
            "\\VOLUME{01d834b54842fb73-1a484cb6}\\USERS\\TESTUSER\\DOWNLOADS\\APTSIMULATOR_PW_APT\\APTSIMULATOR\\ENC-FILES.7Z",
            "\\VOLUME{01d834b54842fb73-1a484cb6}\\USERS\\TESTUSER\\APPDATA\\LOCAL\\TEMP\\SETHC.EXE",
            "\\VOLUME{01d834b54842fb73-1a484cb6}\\TMP\\SCHTASKS-BACKDOOR.PS1",
        ],
    ),
    Fact(
        path="tool_traces/aptsimulator/WHOAMI.EXE-9D378AFE.pf",
        size=2865,
        sha256="8406b98e2671d0873853250840e1f24d859639b4da7a318c4de79586f3e5ad88",
        executable="WHOAMI.EXE",
        version=30,
        compressed=True,
        prefetch_hash="9D378AFE",
        run_count=1,
        run_times=["2022-03-10T20:39:18.835455Z"],
        references=26,
        executable_path="\\VOLUME{01d834b54842fb73-1a484cb6}\\WINDOWS\\SYSTEM32\\WHOAMI.EXE",
        volumes=[
            (
                "\\VOLUME{01d834b54842fb73-1a484cb6}",
                "1A484CB6",
                "2022-03-10T19:30:21.350385Z",
            )
        ],
        notable=["\\VOLUME{01d834b54842fb73-1a484cb6}\\TMP\\SYS.TXT"],
    ),
]


def real(relative: str) -> Path:
    path = PREFETCH / relative
    assert path.is_file(), f"missing test data: {path}"
    return path


def parse_file(path: Path, compiled: CompiledSet, **kwargs: int) -> PrefetchResult:
    with path.open("rb") as file_object:
        return parse_prefetch(file_object, str(path), compiled, **kwargs)


def timed_parse(
    data: bytes, source: str, compiled: CompiledSet, **kwargs: int
) -> PrefetchResult:
    start = time.perf_counter()
    result = parse_prefetch(io.BytesIO(data), source, compiled, **kwargs)
    assert time.perf_counter() - start < TIME_LIMIT, source
    return result


def iso(filetime: object) -> str:
    """A FILETIME as the MANIFEST writes it: UTC, cut to microseconds."""
    micros = filetime.timestamp // 10  # type: ignore[attr-defined]
    moment = datetime.datetime(1601, 1, 1) + datetime.timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def facts_of(info: PrefetchInfo) -> tuple:
    """Everything parsed, comparable between two parses."""
    return (
        info.executable,
        info.prefetch_hash,
        info.format_version,
        info.run_count,
        [(i, t.timestamp) for i, t in info.last_run_times],
        [
            (
                v.device_path,
                v.serial_number,
                v.creation_time and v.creation_time.timestamp,
            )
            for v in info.volumes
        ],
        info.filenames,
    )


def assert_warned(result: PrefetchResult) -> None:
    assert result.warnings, f"no warning for {result.source}"
    for warning in result.warnings:
        assert warning.startswith(f"{result.source}: prefetch: "), warning
        # The safety net of parse_prefetch catches our own bugs; none may fire.
        assert "internal error" not in warning, warning


def compiled_from(*names: str) -> CompiledSet:
    paths = [INDICATORS / name for name in names]
    for path in paths:
        assert path.is_file(), f"missing test indicator file: {path}"
    return CompiledSet(load(paths, shipped=False))


@pytest.fixture(scope="module")
def shipped() -> CompiledSet:
    return CompiledSet(load())


@pytest.fixture(scope="module")
def sdelete_set() -> CompiledSet:
    return compiled_from("prefetch_sdelete.yaml")


@pytest.fixture(scope="module")
def psexec_set() -> CompiledSet:
    return compiled_from("prefetch_psexec.yaml")


# --- Real files: every fact the MANIFEST gives -----------------------------------


def test_manifest_lists_every_prefetch_file() -> None:
    found = {
        str(p.relative_to(PREFETCH))
        for p in PREFETCH.rglob("*.pf")
        if "invalid" not in p.parts
    }
    assert found == {fact.path for fact in FACTS}


@pytest.mark.parametrize("fact", FACTS, ids=[f.path for f in FACTS])
def test_manifest_facts(fact: Fact, shipped: CompiledSet) -> None:
    path = real(fact.path)
    result = parse_file(path, shipped)
    assert result.warnings == []
    assert result.size == fact.size
    assert result.sha256 == fact.sha256
    assert result.md5 == hashlib.md5(path.read_bytes()).hexdigest()
    info = result.info
    assert info is not None and info.complete
    assert info.executable == fact.executable
    assert info.format_version == fact.version
    assert info.compressed == fact.compressed
    assert info.prefetch_hash_hex == f"0x{fact.prefetch_hash}"
    assert info.run_count == fact.run_count
    assert [iso(t) for _, t in info.last_run_times] == fact.run_times
    assert [i for i, _ in info.last_run_times] == list(range(len(fact.run_times)))
    assert len(info.filenames) == fact.references
    if fact.executable_path:
        assert fact.executable_path in info.path_hints
    volumes = [
        (v.device_path, v.serial_number_hex, iso(v.creation_time)) for v in info.volumes
    ]
    assert volumes == [(p, f"0x{s}", c) for p, s, c in fact.volumes]
    # The MANIFEST lists the first references that are not system files.
    not_system = [n for n in info.filenames if "\\WINDOWS\\" not in n]
    for name in fact.notable:
        assert name in not_system
    assert [n for n in not_system if n in fact.notable] == fact.notable


@pytest.mark.parametrize("folder", sorted(OS_FOLDERS))
def test_os_files_parse_without_false_positives(
    folder: str, shipped: CompiledSet
) -> None:
    files = sorted((PREFETCH / folder).glob("*.pf"))
    assert files, f"no prefetch files in {PREFETCH / folder}"
    for path in files:
        result = parse_file(path, shipped)
        assert result.warnings == [], path
        assert result.info is not None
        assert result.info.format_version in OS_FOLDERS[folder], path
        assert result.traces == [], (path, [t.matches for t in result.traces])


def test_every_real_file_parses_in_milliseconds(shipped: CompiledSet) -> None:
    files = sorted(PREFETCH.rglob("*.pf"))
    assert len(files) == len(FACTS) + 1
    for path in files:
        data = path.read_bytes()
        start = time.perf_counter()
        parse_prefetch(io.BytesIO(data), str(path), shipped)
        # The largest file (1085 references) takes about 10 ms; 0.5 s means a bug.
        assert time.perf_counter() - start < 0.5, path


def test_aptsimulator_notes(shipped: CompiledSet) -> None:
    """The MANIFEST notes on the APTSimulator files, beyond the per-file facts."""
    folder = "tool_traces/aptsimulator/"
    volume = "\\VOLUME{01d834b54842fb73-1a484cb6}"
    seven_zip = parse_file(real(folder + "7Z.EXE-A137ACD8.pf"), shipped).info
    assert seven_zip is not None
    for tail in (
        "\\TMP\\P.EXE",
        "\\TMP\\NBTSCAN.EXE",
        "\\TMP\\XCMD.EXE",
        "\\TMP\\SCHTASKS-BACKDOOR.PS1",
        "\\INETPUB\\WWWROOT\\B.JSP",
        "\\USERS\\TESTUSER\\APPDATA\\LOCAL\\TEMP\\SETHC.EXE",
        "\\ENC-TOOLSET.7Z",
        "\\ENC-FILES.7Z",
    ):
        assert any(n.endswith(tail) for n in seven_zip.filenames), tail
    # PsExec renamed to P.EXE, and its service: each service run follows a P.EXE
    # run by about 0.1 s.
    client = parse_file(real(P_EXE), shipped).info
    service = parse_file(real(folder + "PSEXESVC.EXE-AD70946C.pf"), shipped).info
    assert client is not None and service is not None
    assert volume + "\\WINDOWS\\PSEXESVC.EXE" in client.filenames
    assert len(client.last_run_times) == len(service.last_run_times) == 7
    for (_, ran), (_, served) in zip(
        client.last_run_times, service.last_run_times, strict=True
    ):
        assert 0 < served.timestamp - ran.timestamp < 2_500_000  # 0.25 s in 100 ns
    # eventcreate's last run is the time of the fake WCESERVICE events it wrote.
    eventcreate = parse_file(real(folder + "EVENTCREATE.EXE-AC875FD3.pf"), shipped)
    assert iso(eventcreate.info.last_run_times[0][1]) == "2022-03-10T20:23:24.132810Z"


# --- SDelete: the anti-forensic tool trace ---------------------------------------


def test_sdelete_runs_become_traces(sdelete_set: CompiledSet) -> None:
    path = real(SDELETE)
    result = parse_file(path, sdelete_set)
    assert result.warnings == []
    traces = result.traces
    assert len(traces) == 5  # run count 5, all five run times recorded
    assert [iso(t.timestamp) for t in traces] == [
        "2021-02-14T02:38:08.922573Z",
        "2021-02-14T02:37:45.508301Z",
        "2021-02-14T02:23:50.871206Z",
        "2021-02-14T02:23:18.654248Z",
        "2021-02-14T02:22:57.090417Z",
    ]
    assert [t.timestamp_desc for t in traces] == ["Last Time Executed"] + [
        "Previous Last Time Executed"
    ] * 4
    assert [t.attributes["run_index"] for t in traces] == [0, 1, 2, 3, 4]
    tools = load([INDICATORS / "prefetch_sdelete.yaml"], shipped=False).tools
    for trace in traces:
        assert trace.data_type == DATA_TYPE_PREFETCH == "toolmarks:prefetch:execution"
        assert trace.source == str(path)
        [match] = trace.matches
        assert (match.tool, match.indicator, match.kind, match.value) == (
            "test_sdelete",
            "test_sdelete.prefetch.exe",
            "prefetch",
            "SDELETE.EXE",
        )
        assert dict(match.detail) == {"referenced": ()}
        assert set(trace.labels(tools)) >= {
            "toolmarks",
            "tool_test_sdelete",
            "stage_evidence_destruction",
            "dual_use",
            "ioc_prefetch",
        }
        attributes = trace.attributes
        assert attributes["executable"] == "SDELETE.EXE"
        assert attributes["prefetch_hash"] == "0xD6B20984"
        assert attributes["format_version"] == 30
        assert attributes["run_count"] == 5
        assert attributes["volume_device_paths"] == [
            "\\VOLUME{01d668558f114fbd-188f1fca}"
        ]
        assert attributes["volume_serial_numbers"] == ["0x188F1FCA"]
        assert attributes["path_hints"] == [
            "\\VOLUME{01d668558f114fbd-188f1fca}\\USERS\\ANIT.GHOSH\\DESKTOP\\SDELETE.EXE"
        ]
        assert attributes["matched_referenced_files"] == []
        assert attributes["referenced_file_count"] == 164
        assert attributes["prefetch_sha256"] == (
            "0d451a81877b0ac266665f18451ec88aefcab72461d20e722f2695e23183207d"
        )
        assert attributes["prefetch_md5"] == hashlib.md5(path.read_bytes()).hexdigest()
        assert attributes["prefetch_path"] == str(path)


def test_sdelete_traces_carry_the_wiped_files(sdelete_set: CompiledSet) -> None:
    result = parse_file(real(SDELETE), sdelete_set)
    volume = "\\VOLUME{01d668558f114fbd-188f1fca}"
    tmp = volume + "\\USERS\\ANIT.GHOSH\\DESKTOP\\TMP\\"
    wiped = [
        tmp + "XRAICOMMEND\\ASSORTMENT\\AGENT_ASSORTMENT.PY",
        tmp + "XRAICOMMEND\\BASE\\CONFIG_LIB.PY",
        tmp + "DOC_-_13_FEB_2021_-_13-40.PDF",
        tmp + "INSTRUCTION.TXT",
        tmp + "PHOTOS.7Z",
        tmp + "XRAICOMMEND-761263A55B8CFED4BCB8F87CBBB68BEAF2EC2423.TAR.GZ",
    ]
    for trace in result.traces:
        referenced = trace.attributes["referenced_files"]
        assert len(referenced) == 164
        for name in wiped:
            assert name in referenced
        # MANIFEST: 102 non-system references (not under \WINDOWS\, not $MFT,
        # not SDELETE.EXE itself).
        not_system = [
            n
            for n in referenced
            if "\\WINDOWS\\" not in n and not n.endswith(("\\$MFT", "\\SDELETE.EXE"))
        ]
        assert len(not_system) == 102


def test_shipped_set_finds_sdelete(shipped: CompiledSet) -> None:
    """The shipped indicators (toolmarks/indicators/tools/sdelete.yaml) see it too."""
    result = parse_file(real(SDELETE), shipped)
    assert result.warnings == []
    assert len(result.traces) == 5
    tools = load().tools
    for trace in result.traces:
        hits = [m for m in trace.matches if m.tool == "sdelete"]
        assert hits, trace.matches
        assert {(m.kind, m.value) for m in hits} == {("prefetch", "SDELETE.EXE")}
        assert set(trace.labels(tools)) >= {
            "toolmarks",
            "tool_sdelete",
            "stage_evidence_destruction",
            "dual_use",
            "ioc_prefetch",
        }


# --- Referenced-file and truncated-name matching ---------------------------------


def test_referenced_file_indicator_finds_renamed_psexec(
    psexec_set: CompiledSet,
) -> None:
    result = parse_file(real(P_EXE), psexec_set)
    assert result.warnings == []
    service = "\\VOLUME{01d834b54842fb73-1a484cb6}\\WINDOWS\\PSEXESVC.EXE"
    assert len(result.traces) == 7
    assert iso(result.traces[0].timestamp) == "2022-03-10T20:41:24.225849Z"
    for trace in result.traces:
        # Only the referenced-only indicator: the other needs the name PSEXEC.EXE too.
        [match] = trace.matches
        assert match.indicator == "test_psexec.prefetch.psexesvc_reference"
        assert match.value == service
        assert dict(match.detail) == {"referenced": (service,)}
        assert trace.attributes["executable"] == "P.EXE"
        assert trace.attributes["matched_referenced_files"] == [service]
        assert trace.attributes["path_hints"] == [
            "\\VOLUME{01d834b54842fb73-1a484cb6}\\TMP\\P.EXE"
        ]


def test_referenced_file_indicator_and_the_service_itself(
    psexec_set: CompiledSet,
) -> None:
    result = parse_file(
        real("tool_traces/aptsimulator/PSEXESVC.EXE-AD70946C.pf"), psexec_set
    )
    assert len(result.traces) == 7
    assert {m.indicator for t in result.traces for m in t.matches} == {
        "test_psexec.prefetch.psexesvc_reference"
    }


def test_referenced_file_indicator_no_false_positives(psexec_set: CompiledSet) -> None:
    for folder in OS_FOLDERS:
        for path in (PREFETCH / folder).glob("*.pf"):
            assert parse_file(path, psexec_set).traces == [], path


def test_truncated_executable_name_matches_full_name() -> None:
    compiled = compiled_from("prefetch_long_name.yaml")
    result = parse_file(
        real("win7/DCODEDCODEDCODEDCODEDCODEDCOD-9054DA3F.pf"), compiled
    )
    assert result.warnings == []
    [trace] = result.traces  # format 23 keeps one run time
    assert iso(trace.timestamp) == "2016-01-22T16:23:16.341625Z"
    assert trace.timestamp_desc == "Last Time Executed"
    [match] = trace.matches
    assert match.value == "DCODE" * 13 + ".EXE"
    assert trace.attributes["executable"] == "DCODEDCODEDCODEDCODEDCODEDCOD"
    assert trace.attributes["path_hints"] == [
        "\\DEVICE\\HARDDISKVOLUME3\\TEMP\\222\\" + "DCODE" * 13 + ".EXE"
    ]


def test_matching_file_without_run_time_gives_one_untimed_trace(tmp_path: Path) -> None:
    indicator = tmp_path / "prefetch_cmd.yaml"
    indicator.write_text(
        "id: test_cmd\ntitle: cmd\ndescription: test\nstages: [attack]\n"
        "dual_use: true\nreferences: [test]\nprefetch:\n"
        "  - id: test_cmd.prefetch.exe\n    executable: 'CMD\\.EXE'\n"
        "    source: test\n    confidence: primary\n",
        encoding="utf-8",
    )
    compiled = CompiledSet(load([indicator], shipped=False))
    data = bytearray(real("winxp/CMD.EXE-087B4001.pf").read_bytes())
    # Format 17: the file information starts at 0x54, its last run time at +0x24.
    assert struct.unpack_from("<Q", data, 0x78)[0] == 130073839092812500
    struct.pack_into("<Q", data, 0x78, 0)
    result = timed_parse(bytes(data), "zeroed.pf", compiled)
    assert result.warnings == []
    assert result.info is not None and result.info.last_run_times == []
    [trace] = result.traces
    assert trace.timestamp is None
    assert trace.timestamp_desc == "Not a time"
    assert trace.attributes["run_index"] is None


# --- Bad input: warnings, never exceptions ----------------------------------------


def test_not_a_prefetch_file(shipped: CompiledSet) -> None:
    path = real("invalid/notAPrefetch.pf")
    result = parse_file(path, shipped)
    assert_warned(result)
    assert len(result.warnings) == 1
    assert str(path) in result.warnings[0]
    assert "not a prefetch file" in result.warnings[0]
    assert result.info is None and result.traces == []
    assert result.sha256 == (
        "ce6664ab57e09ec71ec63f60e2917d7825185cf53fb9dcc9de19a63a3793c865"
    )


TRUNCATED = [
    SDELETE,  # format 30, MAM
    "win10/CMD.EXE-D269B812.pf",  # format 30, MAM
    "win11/AM_DELTA_PATCH_1.443.990.0.EX-7037CF86.pf",  # format 31, MAM
    "win11/CMD.EXE-8E75B5BB.pf",  # format 31, uncompressed
    "win8/TASKHOST.EXE-3AE259FC.pf",  # format 26
    "win7/WUAUCLT.EXE-830BCC14.pf",  # format 23
    "winxp/CMD.EXE-087B4001.pf",  # format 17
]


@pytest.mark.parametrize("relative", TRUNCATED)
def test_truncated_files_warn(relative: str, sdelete_set: CompiledSet) -> None:
    data = real(relative).read_bytes()
    size = len(data)
    cuts = [0, 1, 4, 7, 8, 12, 84, size // 8, size // 4, size // 2, 3 * size // 4]
    cuts.append(7 * size // 8)
    for cut in cuts:
        source = f"{relative}[:{cut}]"
        result = timed_parse(data[:cut], source, sdelete_set)
        assert_warned(result)
        assert result.traces == [] or not result.info.complete


@pytest.mark.parametrize("relative", TRUNCATED)
def test_uncompressed_files_cut_anywhere_warn(
    relative: str, shipped: CompiledSet
) -> None:
    data = real(relative).read_bytes()
    if data[:4] == b"MAM\x04":
        # A MAM stream carries no checksum: see test_mam_tail_cut_never_gives_wrong_facts.
        return
    step = max(1, len(data) // 300)
    for cut in range(0, len(data), step):
        assert_warned(timed_parse(data[:cut], f"{relative}[:{cut}]", shipped))


def test_mam_tail_cut_never_gives_wrong_facts(shipped: CompiledSet) -> None:
    """libscca decodes a MAM file cut near its end without complaint; then what it
    reads must be either flagged or exactly what the whole file says."""
    data = real(SDELETE).read_bytes()
    whole = timed_parse(data, "whole", shipped)
    assert whole.info is not None
    accepted = 0
    for cut in range(len(data) * 96 // 100, len(data)):
        result = timed_parse(data[:cut], f"SDELETE[:{cut}]", shipped)
        if result.warnings:
            assert_warned(result)
        else:
            accepted += 1
            assert facts_of(result.info) == facts_of(whole.info), cut
    # Seen with libscca 20260527: the last ~340 bytes can go unnoticed.
    assert accepted < len(data) * 4 // 100


FLIPPED = [
    SDELETE,
    P_EXE,
    "win10/BYTECODEGENERATOR.EXE-C1E9BCE6.pf",
    "win11/CMD.EXE-8E75B5BB.pf",
    "win8/CMD.EXE-4A81B364.pf",
    "win7/PING.EXE-B29F6629.pf",
    "vista/CMD.EXE-89305D47.pf",
    "winxp/CMD.EXE-087B4001.pf",
]


@pytest.mark.parametrize("relative", FLIPPED)
def test_bit_flipped_files_never_raise(relative: str, sdelete_set: CompiledSet) -> None:
    data = real(relative).read_bytes()
    rng = random.Random(f"toolmarks-prefetch-{relative}")  # deterministic flips
    warned = 0
    for variant in range(150):
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(flipped))
            flipped[position] ^= 1 << rng.randrange(8)
        source = f"{relative}#flip{variant}"
        result = timed_parse(bytes(flipped), source, sdelete_set)
        if result.info is None:
            assert_warned(result)
            assert result.traces == []
        if result.warnings:
            warned += 1
            assert_warned(result)
    # Neither SCCA nor MAM has a checksum, so a flip inside a name can pass
    # unnoticed; flips in structure (most of them) must be reported.
    assert warned > 0


@pytest.mark.parametrize("relative", FLIPPED)
def test_flipped_signature_or_version_warns(
    relative: str, shipped: CompiledSet
) -> None:
    data = real(relative).read_bytes()
    compressed = data[:4] == b"MAM\x04"
    # Uncompressed: the format version at 0 and SCCA at 4. MAM: the signature at 0
    # (the declared size at 4 is tested below).
    for position in range(4 if compressed else 8):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            if not compressed and struct.unpack_from("<I", flipped)[0] in VERSIONS:
                continue  # 30 and 31 are one bit apart and share a layout
            source = f"{relative}#byte{position}bit{bit}"
            result = timed_parse(bytes(flipped), source, shipped)
            assert_warned(result)
            assert result.info is None and result.traces == []


@pytest.mark.parametrize(
    "data",
    [b"", b"M", b"MAM", b"MAM\x04", b"MAM\x04\x10\x00\x00", b"MAM\x05" + bytes(60)]
    + [b"\x1e\x00\x00\x00SCCA", b"\x1e\x00\x00\x00SCCA" + bytes(200), bytes(1000)],
)
def test_tiny_and_empty_inputs_warn(data: bytes, shipped: CompiledSet) -> None:
    result = timed_parse(data, f"tiny{data!r}", shipped)
    assert_warned(result)
    assert result.info is None and result.traces == []


def test_mam_huge_declared_size_is_refused(sdelete_set: CompiledSet) -> None:
    data = real(SDELETE).read_bytes()
    assert struct.unpack_from("<4sI", data) == (b"MAM\x04", 75204)
    huge = data[:4] + struct.pack("<I", 0xFFFFFFFF) + data[8:]
    result = timed_parse(huge, "huge.pf", sdelete_set)
    assert_warned(result)
    assert "declares 4294967295 bytes" in result.warnings[0]
    assert result.info is None and result.traces == []


def test_mam_declared_size_is_checked_before_libscca(sdelete_set: CompiledSet) -> None:
    data = real(SDELETE).read_bytes()
    # libscca would decompress these 75204 bytes; the limit must stop it first.
    result = timed_parse(data, "limited.pf", sdelete_set, max_size=70000)
    assert_warned(result)
    assert "declares 75204 bytes" in result.warnings[0]
    assert result.info is None
    zero = data[:4] + struct.pack("<I", 0) + data[8:]
    assert_warned(timed_parse(zero, "zero.pf", sdelete_set))


class _CountingReader(io.BytesIO):
    """A file object that counts the bytes read and may hide its size."""

    def __init__(self, data: bytes, seekable_end: bool) -> None:
        super().__init__(data)
        self.bytes_read = 0
        self.seekable_end = seekable_end

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END and not self.seekable_end:
            raise io.UnsupportedOperation("no size")
        return super().seek(offset, whence)


def test_files_over_the_limit_are_not_read(sdelete_set: CompiledSet) -> None:
    data = real(SDELETE).read_bytes()
    reader = _CountingReader(data, seekable_end=True)
    result = parse_prefetch(reader, "big.pf", sdelete_set, max_size=4096)
    assert_warned(result)
    assert reader.bytes_read == 0
    assert result.info is None and result.size is None
    # Without a known size at most max_size + 1 bytes are read.
    reader = _CountingReader(data, seekable_end=False)
    result = parse_prefetch(reader, "big.pf", sdelete_set, max_size=4096)
    assert_warned(result)
    assert reader.bytes_read == 4097
    # And within the limit such a stream parses normally.
    reader = _CountingReader(data, seekable_end=False)
    result = parse_prefetch(reader, "sdelete.pf", sdelete_set)
    assert result.warnings == [] and len(result.traces) == 5


def test_a_failing_file_object_is_a_warning(sdelete_set: CompiledSet) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            raise OSError("device error")

    class BrokenSize(io.BytesIO):
        def get_size(self) -> int:
            raise OSError("size error")

    result = parse_prefetch(BrokenSize(b"x"), "size.pf", sdelete_set)
    assert_warned(result)
    assert "size error" in result.warnings[0]

    result = parse_prefetch(Broken(), "broken.pf", sdelete_set)  # type: ignore[arg-type]
    assert_warned(result)
    assert "device error" in result.warnings[0]
