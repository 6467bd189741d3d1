"""The loader on good and broken indicator files, through the real CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from toolmarks.cli.main import main
from toolmarks.indicators import loader

GOOD = """\
id: testtool
title: Test tool
description: A tool made up for tests.
stages: [attack]
dual_use: false
references: [tests]
hashes:
  - id: testtool.md5.one
    type: md5
    value: '0xDD2EF0D6487385839BBF7863FE450CC6'
    source: test
    confidence: primary
filenames:
  - id: testtool.filename.exe
    regex: '\\\\testtool\\.exe$'
    source: test
    confidence: rule
"""


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_good_file_loads_and_normalises(tmp_path: Path) -> None:
    path = write(tmp_path, "good.yaml", GOOD)
    indicator_set = loader.load([path], shipped=False)
    indicator = indicator_set.indicator("testtool.md5.one")
    assert indicator.value == "dd2ef0d6487385839bbf7863fe450cc6"
    assert indicator.origin == f"{path}:8"


BROKEN = {
    # name: (content, line, field, words in the message)
    "bad_hash_length.yaml": (
        GOOD.replace("0xDD2EF0D6487385839BBF7863FE450CC6", "dd2ef0d64873"),
        10,
        "hashes[0].value",
        "has 12 hex digits, not 32",
    ),
    "bad_hash_hex.yaml": (
        GOOD.replace(
            "0xDD2EF0D6487385839BBF7863FE450CC6", "zz2ef0d6487385839bbf7863fe450cc6"
        ),
        10,
        "hashes[0].value",
        "not hexadecimal",
    ),
    "bad_regex.yaml": (
        re.sub(r"regex: .*", "regex: '([a-z'", GOOD),
        15,
        "filenames[0].regex",
        "invalid regex",
    ),
    "bad_yaml.yaml": (
        GOOD.replace("stages: [attack]", "stages: [attack"),
        5,
        "(file)",
        "invalid YAML",
    ),
    "unknown_field.yaml": (
        GOOD.replace("dual_use: false", "dual_use: false\ncolour: red"),
        6,
        "colour",
        "unknown field",
    ),
    "unknown_indicator_field.yaml": (
        GOOD.replace("    confidence: rule", "    confidence: rule\n    colour: red"),
        18,
        "filenames[0].colour",
        "unknown field",
    ),
    "wrong_type.yaml": (
        GOOD.replace("dual_use: false", "dual_use: maybe"),
        5,
        "dual_use",
        "is not of type 'boolean'",
    ),
    "bad_stage.yaml": (
        GOOD.replace("[attack]", "[hacking]"),
        4,
        "stages[0]",
        "is not one of",
    ),
    "inferred_unchecked.yaml": (
        GOOD.replace("confidence: rule", "confidence: inferred"),
        14,
        "filenames[0]",
        "'checked' is a required property",
    ),
    "missing_id.yaml": (
        GOOD.replace("id: testtool\n", ""),
        1,
        "(file)",
        "'id' is a required property",
    ),
    "empty.yaml": ("", 1, "(file)", "empty file"),
    "comment_only.yaml": ("# nothing\n", 1, "(file)", "empty file"),
    "list.yaml": ("- a\n- b\n", 1, "(file)", "a mapping of tool fields is expected"),
    "garbage.yaml": (bytes(range(256)) * 4, 0, "(file)", "binary data"),
    "latin1.yaml": ("title: caf\xe9\n".encode("latin-1"), 0, "(file)", "not UTF-8"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_file_gives_clear_error(tmp_path: Path, name: str, capsys) -> None:
    content, line, field, words = BROKEN[name]
    path = write(tmp_path, name, content)
    with pytest.raises(loader.IndicatorError) as error:
        loader.load([path], shipped=False)
    message = error.value.problems[0]
    assert message.startswith(f"{path}:{line}: {field}: "), message
    assert words in message
    assert main(["indicators", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}: {field}: " in err and "Traceback" not in err


def test_huge_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w") as out:
        out.write(GOOD)
        out.write("# " + "x" * 1000 + "\n" * 0)
        out.truncate(50 * 1024 * 1024)
    with pytest.raises(loader.IndicatorError) as error:
        loader.load([path], shipped=False)
    assert re.match(
        rf"{re.escape(str(path))}:0: \(file\): 52428800 bytes", str(error.value)
    )


def test_duplicates_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", GOOD)
    second = write(tmp_path, "b.yaml", GOOD.replace("id: testtool\n", "id: other\n"))
    with pytest.raises(loader.IndicatorError) as error:
        loader.load([first, second], shipped=False)
    text = str(error.value)
    assert (
        f"{second}:8: id: indicator id 'testtool.md5.one' already used at {first}:8"
        in text
    )
    assert (
        f"{second}:8: value: md5 dd2ef0d6487385839bbf7863fe450cc6 already listed"
        in text
    )
    third = write(tmp_path, "c.yaml", GOOD)
    with pytest.raises(loader.IndicatorError, match="tool id 'testtool' already used"):
        loader.load([first, third], shipped=False)


def test_all_problems_of_a_set_are_reported_and_nothing_half_loads(tmp_path) -> None:
    good = write(tmp_path, "good.yaml", GOOD)
    bad = write(
        tmp_path,
        "bad.yaml",
        BROKEN["bad_regex.yaml"][0]
        .replace("id: testtool\n", "id: second\n")
        .replace("testtool.", "second."),
    )
    worse = write(tmp_path, "worse.yaml", "")
    with pytest.raises(loader.IndicatorError) as error:
        loader.load([tmp_path], shipped=False)
    # The bad file is refused whole, so its md5 does not clash with good.yaml's.
    assert len(error.value.problems) == 2  # bad regex, empty file
    assert str(good) not in str(error.value)
    assert str(bad) in str(error.value) and str(worse) in str(error.value)


def test_user_files_load_beside_and_instead_of_shipped(tmp_path: Path) -> None:
    path = write(tmp_path, "good.yaml", GOOD)
    both = loader.load([path])
    assert "testtool" in both.tools and "getmail" in both.tools
    alone = loader.load([path], shipped=False)
    assert list(alone.tools) == ["testtool"]


def test_validate_command_runs_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", BROKEN["bad_hash_hex.yaml"][0])
    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-m", "toolmarks", "indicators", "validate", str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert "not hexadecimal" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "toolmarks", "indicators", "validate"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")


def test_hash_list_file_loads_as_a_tool(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Case 42 list.txt",
        "# ours\nDD2EF0D6487385839BBF7863FE450CC9 pwdump\n" + "ab" * 20 + "\n",
    )
    indicator_set = loader.load([path], shipped=False)
    tool = indicator_set.tools["case_42_list"]
    assert [(i.kind, i.value, i.origin) for i in tool.indicators] == [
        ("md5", "dd2ef0d6487385839bbf7863fe450cc9", f"{path}:2"),
        ("sha1", "ab" * 20, f"{path}:3"),
    ]
    bad = write(tmp_path, "bad.txt", "dd2ef0\n")
    with pytest.raises(loader.IndicatorError, match=r"bad.txt:1: md5|bad.txt:1:"):
        loader.load([bad], shipped=False)
