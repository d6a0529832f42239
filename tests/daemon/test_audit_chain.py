"""The audit log is hash-chained: edits, removals and reorderings are found by `audit verify`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.audit import GENESIS, chain_files, line_hash, read_records, verify_chain
from daemon.cli import main
from daemon.errors import EXIT_ACTIONS_FAILED, EXIT_OK, EXIT_USAGE


@pytest.fixture
def logged(five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path) -> Path:
    config = write_config()
    assert main(["apply", "--config", str(config)]) == EXIT_OK
    assert main(["apply", "--config", str(config)]) == EXIT_OK
    return tmp_path / "log" / "audit.jsonl"


def lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line]


def test_every_record_carries_the_hash_of_the_one_before(logged: Path) -> None:
    raw = lines(logged)
    records = list(read_records(logged))
    assert records[0]["prev"] == GENESIS
    for previous, record in zip(raw, records[1:]):
        assert record["prev"] == line_hash(previous)
    report = verify_chain(logged)
    assert report.problem is None and report.records == len(raw) == 10


def test_verify_cli_reports_an_intact_log(logged: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--config", str(write_config())]) == EXIT_OK
    assert "audit log intact: 10 records in 1 file(s)" in capsys.readouterr().out


def test_an_edited_record_is_found(logged: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    raw = lines(logged)
    record = json.loads(raw[3])
    record["size_bytes"] = 1
    raw[3] = json.dumps(record).encode()
    logged.write_bytes(b"\n".join(raw) + b"\n")
    assert main(["audit", "verify", "--config", str(write_config())]) == EXIT_ACTIONS_FAILED
    assert "audit.jsonl line 5 does not follow the record before it" in capsys.readouterr().err


def test_a_removed_record_is_found(logged: Path) -> None:
    raw = lines(logged)
    del raw[2]
    logged.write_bytes(b"\n".join(raw) + b"\n")
    assert "line 3 does not follow" in (verify_chain(logged).problem or "")


def test_reordered_records_are_found(logged: Path) -> None:
    raw = lines(logged)
    raw[2], raw[3] = raw[3], raw[2]
    logged.write_bytes(b"\n".join(raw) + b"\n")
    assert "line 3 does not follow" in (verify_chain(logged).problem or "")


def test_records_cut_off_the_end_are_found(logged: Path) -> None:
    raw = lines(logged)
    logged.write_bytes(b"\n".join(raw[:-2]) + b"\n")
    assert "records were removed from the end" in (verify_chain(logged).problem or "")


def test_removing_the_first_record_is_found(logged: Path) -> None:
    raw = lines(logged)
    logged.write_bytes(b"\n".join(raw[1:]) + b"\n")
    assert "not the start of a chain" in (verify_chain(logged).problem or "")


def test_rotation_keeps_the_chain(five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path) -> None:
    config = write_config()
    config.write_text(config.read_text().replace("[daemon]\n", '[daemon]\naudit_rotate_size = "200B"\n'))
    for _ in range(3):
        assert main(["apply", "--config", str(config)]) == EXIT_OK
    log = tmp_path / "log" / "audit.jsonl"
    files = chain_files(log)
    assert len(files) == 3
    first_of_new = json.loads(lines(files[1])[0])
    assert first_of_new["event"] == "audit.rotated" and first_of_new["previous_file"] == files[0].name
    assert first_of_new["prev"] == line_hash(lines(files[0])[-1])
    assert verify_chain(log).problem is None
    files[0].unlink()  # an admin pruned the oldest file: still verifiable, and said so
    report = verify_chain(log)
    assert report.problem is None and "older rotated files are not present" in (report.note or "")


def test_a_line_cut_short_by_a_crash_is_reported_and_never_glued_to(logged: Path, write_config: Callable[..., Path]) -> None:
    with logged.open("ab") as handle:
        handle.write(b'{"event": "artifact.delete_intended", "na')
    assert main(["apply", "--config", str(write_config())]) == EXIT_OK
    raw = lines(logged)
    assert raw[-3].endswith(b'"na') and json.loads(raw[-2])["event"] == "run.started"
    assert "cut short by a crash" in (verify_chain(logged).problem or "")


def test_audit_show_reads_the_rotated_files_oldest_first_then_the_log(
    five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config()
    config.write_text(config.read_text().replace("[daemon]\n", '[daemon]\naudit_rotate_size = "200B"\n'))
    for _ in range(3):
        assert main(["apply", "--config", str(config)]) == EXIT_OK
    files = chain_files(tmp_path / "log" / "audit.jsonl")
    assert len(files) == 3
    capsys.readouterr()
    assert main(["audit", "show", "--config", str(config), "--json"]) == EXIT_OK
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert shown == [record for file in files for record in read_records(file)]
    assert [record["event"] for record in shown].count("run.started") == 3
    # The deletions of the first run are in the oldest rotated file; the filters still apply to it.
    assert main(["audit", "show", "--config", str(config), "--json", "--policy", "ci", "--since", "1h"]) == EXIT_OK
    deleted = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [record["version"] for record in deleted if record["event"] == "artifact.deleted"] == ["v4", "v3", "v2"]
    assert main(["audit", "show", "--config", str(config), "--json", "--since", "2999-01-01"]) == EXIT_OK
    assert capsys.readouterr().out == ""


def test_a_missing_head_with_records_present_fails_verify(
    logged: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    raw = lines(logged)
    logged.write_bytes(b"\n".join(raw[:-2]) + b"\n")  # cut records off the end, and remove the evidence
    (logged.parent / "audit.jsonl.head").unlink()
    assert main(["audit", "verify", "--config", str(write_config())]) == EXIT_ACTIONS_FAILED
    error = capsys.readouterr().err
    assert "audit.jsonl.head" in error and "is missing" in error and "cannot be ruled out" in error


def test_every_kind_of_run_leaves_a_head_that_verifies(
    five_versions: list[str], write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config())
    head = tmp_path / "log" / "audit.jsonl.head"
    runs: list[tuple[list[str], int]] = [
        (["apply", "--config", config], EXIT_OK),  # deletes three versions
        (["apply", "--config", config], EXIT_OK),  # nothing left to do
        (["restore", "iris:nope", "--config", config], EXIT_ACTIONS_FAILED),  # fails inside the locked run
        (["deployments", "terminate", "absent", "--config", config], EXIT_USAGE),  # refused inside the locked run
    ]
    for arguments, code in runs:
        head.unlink(missing_ok=True)
        try:
            assert main(arguments) == code
        except SystemExit as usage_error:  # a usage error ends through argparse
            assert usage_error.code == code
        assert head.is_file(), arguments
        assert main(["audit", "verify", "--config", config]) == EXIT_OK, capsys.readouterr().err


@pytest.mark.parametrize(("head", "says"), [
    (b"[]", "no last_hash"), (b'{"last_hash": 5}', "no last_hash"), (b"\xff", "unreadable"), (None, "cannot be read"),
])
def test_an_unusable_head_fails_verify_naming_it(
    head: bytes | None, says: str, logged: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    head_file = logged.parent / "audit.jsonl.head"
    head_file.unlink()
    if head is None:
        head_file.mkdir()
    else:
        head_file.write_bytes(head)
    assert main(["audit", "verify", "--config", str(write_config())]) == EXIT_ACTIONS_FAILED
    error = capsys.readouterr().err
    assert "audit.jsonl.head" in error and says in error


@pytest.mark.parametrize("line", [b"[1, 2]", b"5", b'"text"', b"null"])
def test_a_record_that_is_json_but_not_an_object_fails_verify(line: bytes, logged: Path) -> None:
    raw = lines(logged)
    raw.insert(3, line)
    logged.write_bytes(b"\n".join(raw) + b"\n")
    assert "line 4 is not a JSON record" in (verify_chain(logged).problem or "")


@pytest.mark.parametrize("command", ["show", "verify"])
def test_an_audit_log_that_cannot_be_read_is_an_error_naming_it(
    command: str, write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "log" / "audit.jsonl").mkdir(parents=True)
    assert main(["audit", command, "--config", str(write_config())]) == EXIT_ACTIONS_FAILED
    assert f"cannot read the audit log {tmp_path / 'log' / 'audit.jsonl'}" in capsys.readouterr().err
