"""The exceptions of retentiond. Only the CLI turns them into messages and exit codes.

    RetentiondError
     ├── ConfigError        invalid configuration or store root    → exit 78
     ├── StoreBusyError     another run holds the store lock       → exit 75
     ├── AuditError         the audit log cannot be written (or read) → exit 1, nothing acted on
     ├── RestoreError       a version cannot be taken out of the trash → exit 1
     ├── ListingError       a provider cannot list its deployments, so a name cannot be looked up → exit 1
     └── RunInterrupted     a stop request (SIGINT, SIGTERM) reached a safe point → exit 130 / 143

    UsageError              a command-line value argparse could not check by itself → exit 2
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ACTIONS_FAILED = 1
EXIT_USAGE = 2
EXIT_BUSY = 75
EXIT_CONFIG = 78


class RetentiondError(Exception):
    """Base of every error retentiond reports to its user."""

    exit_code = EXIT_ACTIONS_FAILED


class ConfigError(RetentiondError):
    """The configuration, or the store it points at, cannot be used."""

    exit_code = EXIT_CONFIG


class StoreBusyError(RetentiondError):
    """Another run holds the lock of the store."""

    exit_code = EXIT_BUSY


class AuditError(RetentiondError):
    """An audit record could not be written, so the action it describes was not taken (or the log cannot be read)."""

    exit_code = EXIT_ACTIONS_FAILED


class RestoreError(RetentiondError):
    """A version could not be restored from the trash (not there, or the store has it)."""


class ListingError(RetentiondError):
    """A provider could not list its deployments, so what was asked about them cannot be answered."""


class RunInterrupted(RetentiondError):
    """A stop request reached a safe point of a run: between two actions, or before the run acted at all.

    ``phase`` says where (``lock``, ``start``, ``deployments``, ``scan``, ``plan``, ``actions``, ``trash``);
    the CLI's exit code (130 after SIGINT, 143 after SIGTERM) comes from the signal, not from here.
    """

    def __init__(self, message: str, phase: str) -> None:
        super().__init__(message)
        self.phase = phase


class UsageError(Exception):
    """A command-line value that argparse could not check by itself."""
