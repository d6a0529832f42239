"""Ask the real restic 0.14 which snapshots ``restic forget`` keeps.

restic is the judge of ``policies.retention``. Every restic command opens the
repository through scrypt, which ``restic init`` calibrates to about half a second,
so a naive harness (one ``restic backup`` per snapshot) would take minutes. The
oracle pays for ``restic init`` once and then:

* re-wraps the repository's master key in a key file with tiny scrypt parameters,
  so each later restic command costs tens of milliseconds;
* writes snapshot files itself, encrypted exactly as restic stores them, instead of
  running ``restic backup`` per snapshot (``test_retention_restic.py`` checks that
  restic lists them exactly like the ones ``restic backup --time`` makes);
* decides many groups in one ``restic forget --dry-run --no-lock --json --group-by
  host`` call, one host per group, in a fresh repository per call that shares the
  template's config, keys, index and packs through symlinks.

restic's crypto (repository format v1 and v2): an encrypted file is
IV (16 bytes) || AES-256-CTR ciphertext || MAC (16 bytes), where the MAC is
Poly1305 over the ciphertext with the one-time key ``r || AES_k(IV)``. A key file is
JSON holding the scrypt parameters and the master key encrypted with the key that
scrypt derives from the password (32 bytes AES key, then k, then r). An unpacked
file whose plaintext starts with ``{`` is read as uncompressed JSON, also in v2.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

PASSWORD = "retentiond-restic-judge"
SUPPORTED_VERSION = re.compile(r"^restic 0\.14\.\d+ ")
_CHEAP_SCRYPT = {"N": 1024, "r": 1, "p": 1}
_COMMAND_TIMEOUT_SECONDS = 120


class ResticError(RuntimeError):
    """restic failed, or answered something the oracle cannot map back to the items."""


def find_restic() -> str | None:
    """Return the path of the restic program on PATH, or None."""
    return shutil.which("restic")


def unavailable_reason() -> str | None:
    """Return why the restic judge cannot run here (missing restic 0.14 or cryptography), or None."""
    restic = find_restic()
    if restic is None:
        return "the restic program (0.14.x) is not on PATH; install restic 0.14 to run the restic judge"
    version = restic_version(restic)
    if not SUPPORTED_VERSION.match(version):
        return f"the restic judge needs restic 0.14.x, found {version!r} at {restic}"
    try:
        import cryptography.hazmat.primitives.poly1305  # noqa: F401
    except ImportError:
        return "the restic judge needs the 'cryptography' package (pip install '.[test]')"
    return None


def restic_version(restic: str) -> str:
    """Return the first line of ``restic version``."""
    completed = subprocess.run([restic, "version"], capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_SECONDS, check=False)
    return completed.stdout.strip().splitlines()[0] if completed.stdout.strip() else completed.stderr.strip()


def go_time_text(instant: datetime, zone: ZoneInfo) -> str:
    """Return ``instant`` as restic's JSON writes a time taken in ``zone`` (Go's RFC 3339, ``Z`` for offset 0)."""
    if instant.tzinfo is None:
        raise ValueError(f"{instant!r} is naive; the oracle needs aware instants")
    if instant.microsecond:
        raise ValueError(f"{instant!r} has sub-second digits; the oracle works in whole seconds")
    local = instant.astimezone(zone)
    offset = local.utcoffset() or timedelta(0)
    wall = local.replace(tzinfo=None).isoformat(timespec="seconds")
    if not offset:
        return wall + "Z"
    total_minutes, leftover = divmod(int(offset.total_seconds()), 60)
    if leftover:
        raise ValueError(f"offset {offset} of {zone} has seconds; restic would not write it as HH:MM")
    sign = "+" if total_minutes >= 0 else "-"
    hours, minutes = divmod(abs(total_minutes), 60)
    return f"{wall}{sign}{hours:02d}:{minutes:02d}"


def parse_go_time(text: str) -> datetime:
    """Return the aware instant of a time restic printed in JSON."""
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class _CryptoKey:
    """restic's key triple: AES-256 encryption key and the Poly1305-AES MAC key (k, r)."""

    encryption: bytes
    mac_k: bytes
    mac_r: bytes

    @classmethod
    def from_password(cls, password: str, salt: bytes, n: int, r: int, p: int) -> _CryptoKey:
        """Derive the user key the way restic does: scrypt output = encryption key || k || r."""
        memory = 128 * r * (n + p + 2) + (1 << 20)
        raw = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=memory, dklen=64)
        return cls(encryption=raw[:32], mac_k=raw[32:48], mac_r=raw[48:64])

    @classmethod
    def from_master_document(cls, document: Mapping[str, Any]) -> _CryptoKey:
        """Read the decrypted ``data`` of a key file: ``{"mac": {"k", "r"}, "encrypt"}``."""
        return cls(
            encryption=base64.b64decode(document["encrypt"]),
            mac_k=base64.b64decode(document["mac"]["k"]),
            mac_r=base64.b64decode(document["mac"]["r"]),
        )

    def _mac(self, iv: bytes, ciphertext: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.poly1305 import Poly1305

        encryptor = Cipher(algorithms.AES(self.mac_k), modes.ECB()).encryptor()
        s = encryptor.update(iv) + encryptor.finalize()
        return Poly1305.generate_tag(self.mac_r + s, ciphertext)

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext`` into restic's file layout."""
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        iv = secrets.token_bytes(16)
        encryptor = Cipher(algorithms.AES(self.encryption), modes.CTR(iv)).encryptor()
        ciphertext = encryptor.update(plaintext) + encryptor.finalize()
        return iv + ciphertext + self._mac(iv, ciphertext)

    def open(self, blob: bytes) -> bytes:
        """Verify and decrypt a file in restic's layout. Raise ResticError if the MAC does not match."""
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        if len(blob) < 32:
            raise ResticError("encrypted file is shorter than IV and MAC")
        iv, ciphertext, mac = blob[:16], blob[16:-16], blob[-16:]
        if not secrets.compare_digest(self._mac(iv, ciphertext), mac):
            raise ResticError("MAC mismatch: wrong key, or the oracle's crypto does not match restic's")
        decryptor = Cipher(algorithms.AES(self.encryption), modes.CTR(iv)).decryptor()
        return decryptor.update(ciphertext) + decryptor.finalize()


@dataclass(frozen=True)
class Verdict:
    """restic's answer for one group: the indices of the kept items and restic's reasons for each."""

    kept: frozenset[int]
    reasons: Mapping[int, tuple[str, ...]]


@dataclass(frozen=True)
class ForgetRun:
    """One ``restic forget`` call: a verdict per group, and the clock around the call.

    restic reads its own clock as "now"; it lies between ``started`` and ``finished``.
    """

    verdicts: tuple[Verdict, ...]
    started: datetime
    finished: datetime
    command: str


class ResticOracle:
    """A restic repository template plus the machinery to ask ``restic forget`` cheaply."""

    def __init__(self, restic: str, workdir: Path) -> None:
        self._restic = restic
        self._workdir = workdir
        self._template = workdir / "template"
        self._home = workdir / "home"
        self._numbers = itertools.count()
        self._master: _CryptoKey | None = None
        self._tree: str | None = None
        self.repository_version: int | None = None

    @classmethod
    def create(cls, restic: str, workdir: Path) -> ResticOracle:
        """Initialise the template repository (one slow ``restic init``) and make it cheap to open."""
        oracle = cls(restic, workdir)
        oracle._home.mkdir(parents=True, exist_ok=True)
        oracle.run(["init"], oracle._template, "UTC")
        oracle._rewrap_key_cheaply()
        oracle._tree = oracle._real_tree()
        return oracle

    # -- restic commands -------------------------------------------------------------

    def run(self, args: Sequence[str], repository: Path, zone_name: str, stdin: bytes = b"") -> str:
        """Run restic on ``repository`` with ``TZ=zone_name``; return stdout. Raise ResticError on failure."""
        command = [self._restic, "--no-cache", *args]
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self._home),
            "TZ": zone_name,
            "RESTIC_REPOSITORY": str(repository),
            "RESTIC_PASSWORD": PASSWORD,
            "RESTIC_CACHE_DIR": str(self._workdir / "cache"),
        }
        completed = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            env=environment,
            timeout=_COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
        if completed.returncode != 0:
            raise ResticError(
                f"TZ={zone_name} {shlex.join(command)} exited with {completed.returncode}:\n{completed.stderr.decode(errors='replace')}"
            )
        return completed.stdout.decode()

    def new_repository(self) -> Path:
        """Return a fresh repository without snapshots that shares the template's keys, index and packs."""
        repository = self._workdir / f"repo-{next(self._numbers):05d}"
        repository.mkdir()
        for shared in ("config", "keys", "data", "index"):
            (repository / shared).symlink_to(self._template / shared)
        for own in ("snapshots", "locks"):
            (repository / own).mkdir()
        return repository

    def backup(self, repository: Path, wall_time: str, zone_name: str, host: str) -> None:
        """Create a snapshot the slow, genuine way: ``restic backup --stdin --time wall_time``."""
        self.run(
            ["backup", "--stdin", "--stdin-filename", "judge", "--host", host, "--time", wall_time, "--quiet"],
            repository,
            zone_name,
            stdin=b"judge\n",
        )

    def list_snapshots(self, repository: Path, zone_name: str) -> list[dict[str, Any]]:
        """Return restic's ``snapshots --json`` listing."""
        listing = json.loads(self.run(["snapshots", "--json"], repository, zone_name))
        if not isinstance(listing, list):
            raise ResticError(f"unexpected 'snapshots --json' output: {listing!r}")
        return listing

    # -- writing snapshots directly --------------------------------------------------

    def write_snapshot(self, repository: Path, instant: datetime, zone_name: str, host: str) -> str:
        """Store a snapshot of the template's tree taken at ``instant`` in ``zone_name``; return its id."""
        if self._master is None or self._tree is None:
            raise ResticError("the oracle was not created with ResticOracle.create")
        document = {
            "time": go_time_text(instant, ZoneInfo(zone_name)),
            "tree": self._tree,
            "paths": ["/judge"],
            "hostname": host,
            "username": "judge",
        }
        blob = self._master.seal(json.dumps(document).encode())
        snapshot_id = hashlib.sha256(blob).hexdigest()
        (repository / "snapshots" / snapshot_id).write_bytes(blob)
        return snapshot_id

    # -- the judge -------------------------------------------------------------------

    def forget(self, groups: Sequence[Sequence[datetime]], zone_name: str, flags: Sequence[str]) -> ForgetRun:
        """Ask restic which items of every group ``restic forget <flags>`` keeps, in one call.

        Group ``g`` becomes host ``group-g``; items are aware instants, distinct within a group.
        """
        repository = self.new_repository()
        item_of_id: dict[str, tuple[int, int]] = {}
        item_of_time: dict[tuple[str, datetime], tuple[int, int]] = {}
        for group_index, times in enumerate(groups):
            if len(set(times)) != len(times):
                raise ValueError(f"group {group_index} has equal times; ties are out of scope")
            host = _host(group_index)
            for item_index, instant in enumerate(times):
                snapshot_id = self.write_snapshot(repository, instant, zone_name, host)
                item_of_id[snapshot_id] = (group_index, item_index)
                item_of_time[(host, instant)] = (group_index, item_index)

        args = ["forget", "--dry-run", "--no-lock", "--json", "--group-by", "host", *flags]
        started = datetime.now(timezone.utc)
        output = self.run(args, repository, zone_name)
        finished = datetime.now(timezone.utc)
        command = f"TZ={zone_name} restic {shlex.join(args)}"
        try:
            answer = json.loads(output) if output.strip() else []
        except json.JSONDecodeError as error:
            raise ResticError(f"{command} printed no JSON ({error}):\n{output}") from None

        kept: list[set[int]] = [set() for _ in groups]
        seen: set[str] = set()
        reasons: list[dict[int, tuple[str, ...]]] = [{} for _ in groups]
        for group in answer:
            for verdict_key in ("keep", "remove"):
                for snapshot in group.get(verdict_key) or []:
                    snapshot_id = snapshot["id"]
                    if snapshot_id not in item_of_id or snapshot_id in seen:
                        raise ResticError(f"{command}: unexpected or repeated snapshot {snapshot_id}")
                    seen.add(snapshot_id)
                    group_index, item_index = item_of_id[snapshot_id]
                    if verdict_key == "keep":
                        kept[group_index].add(item_index)
            for reason in group.get("reasons") or []:
                snapshot = reason["snapshot"]
                key = (snapshot["hostname"], parse_go_time(snapshot["time"]))
                group_index, item_index = item_of_time[key]
                reasons[group_index][item_index] = tuple(reason["matches"])
        if seen != set(item_of_id):
            raise ResticError(f"{command}: restic did not judge {len(set(item_of_id) - seen)} snapshot(s)")
        for group_index, group_kept in enumerate(kept):
            if set(reasons[group_index]) != group_kept:
                raise ResticError(f"{command}: reasons do not match the kept snapshots of group {group_index}")
        shutil.rmtree(repository)
        verdicts = tuple(Verdict(frozenset(k), r) for k, r in zip(kept, reasons))
        return ForgetRun(verdicts=verdicts, started=started, finished=finished, command=command)

    def restic_kept(self, times: Sequence[datetime], zone_name: str, flags: Sequence[str]) -> set[int]:
        """Return the indices of ``times`` that ``restic forget <flags>`` keeps (one group)."""
        return set(self.forget([times], zone_name, flags).verdicts[0].kept)

    # -- set-up ----------------------------------------------------------------------

    def _rewrap_key_cheaply(self) -> None:
        keys = self._template / "keys"
        key_files = list(keys.iterdir())
        if len(key_files) != 1:
            raise ResticError(f"expected one key file after 'restic init', found {len(key_files)}")
        (key_path,) = key_files
        key_file = json.loads(key_path.read_bytes())
        if key_file.get("kdf") != "scrypt":
            raise ResticError(f"unknown key derivation {key_file.get('kdf')!r}")
        user_key = _CryptoKey.from_password(PASSWORD, base64.b64decode(key_file["salt"]), key_file["N"], key_file["r"], key_file["p"])
        master_document = json.loads(user_key.open(base64.b64decode(key_file["data"])))
        self._master = _CryptoKey.from_master_document(master_document)
        config = json.loads(self._master.open((self._template / "config").read_bytes()))
        self.repository_version = int(config["version"])

        salt = secrets.token_bytes(64)
        cheap_key = _CryptoKey.from_password(PASSWORD, salt, _CHEAP_SCRYPT["N"], _CHEAP_SCRYPT["r"], _CHEAP_SCRYPT["p"])
        cheap_file = {
            **key_file,
            **_CHEAP_SCRYPT,
            "salt": base64.b64encode(salt).decode(),
            "data": base64.b64encode(cheap_key.seal(json.dumps(master_document).encode())).decode(),
        }
        raw = json.dumps(cheap_file).encode()
        (keys / hashlib.sha256(raw).hexdigest()).write_bytes(raw)
        key_path.unlink()

    def _real_tree(self) -> str:
        """Back up a tiny file once, genuinely, and return the tree id every written snapshot points at."""
        self.backup(self._template, "2000-01-01 00:00:00", "UTC", host="template")
        (snapshot,) = self.list_snapshots(self._template, "UTC")
        return str(snapshot["tree"])


def _host(group_index: int) -> str:
    return f"group-{group_index}"
