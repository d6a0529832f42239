"""Warnings before surprises: a config that is valid but would not do what its author expects.

- a ``[[retention]]`` or ``[[disk]]`` policy whose ``kinds`` and ``match`` select no name in the store
  (when the store has names of those kinds at all: a new, empty store surprises nobody);
- an ``[[offhours]]`` policy whose ``match`` selects no deployment its provider lists (only when the
  provider answers; ``retentiond run`` asks once at start, ``check-config`` never calls a provider);
- a cron ``schedule`` that never fires (``0 0 31 2 *``).

(A retention policy without ``schedule``, which only the daemon never runs, is ``Settings.unscheduled_warnings``.)
``check-config`` prints these on stderr and ``retentiond run`` logs them as ``policy.never_acts``; neither
ever fails because of them. Listing the store is two ``scandir`` calls, without the scanner (check-config stays light).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from daemon.config import Settings
from policies.model import Deployment
from policies.spec import ArtifactPolicy, OffhoursPolicy

# The store's layout (REFERENCE.md §1), as daemon.inventory reads it; repeated here so that
# check-config need not import the scanner.
_KIND_DIRS = {"model": "models", "bento": "bentos"}


def config_surprises(settings: Settings, now: datetime) -> list[tuple[str, str]]:
    """Given the config and the instant, return (policy name, warning) for each policy that would never act:
    its schedule never fires, or its match selects nothing in the store. No provider is asked."""
    found = list(never_firing_schedules(settings, now).items())
    names = store_names(settings.store.home)
    if names is not None:
        found.extend(unmatched_artifact_policies([*settings.retention, *settings.disk], names).items())
    return found


def store_names(home: Path) -> set[tuple[str, str]] | None:
    """Return the (kind, name) of every name directory in the store at ``home``, or None if it cannot be listed."""
    names: set[tuple[str, str]] = set()
    for kind, subdir in _KIND_DIRS.items():
        try:
            with os.scandir(home / subdir) as entries:
                names.update((kind, entry.name) for entry in entries if entry.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            continue
        except OSError:
            return None
    return names


def unmatched_artifact_policies(policies: Iterable[ArtifactPolicy], names: set[tuple[str, str]]) -> dict[str, str]:
    """Return, per policy whose kinds and match select none of ``names`` (while some of its kinds exist), a warning."""
    found = {}
    for policy in policies:
        present = sorted(name for kind, name in names if kind in policy.kinds)
        if not present or any(policy.selects_name(kind, name) for kind, name in names):
            continue
        kinds = " or ".join(policy.kinds)
        examples = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        found[policy.name] = (
            f"policy {policy.name!r}: match = {json.dumps(list(policy.match))} selects none of the {len(present)} "
            f"{kinds} names in the store ({examples}); it will never act until one matches"
        )
    return found


def never_firing_schedules(settings: Settings, now: datetime) -> dict[str, str]:
    """Return, per retention policy whose cron ``schedule`` has no next time after ``now``, a warning."""
    scheduled = [policy for policy in settings.retention if policy.schedule is not None]
    if not scheduled:
        return {}
    # apscheduler only when there is a schedule to look at (check-config start-up time).
    from apscheduler.triggers.cron import CronTrigger

    found = {}
    for policy in scheduled:
        trigger = CronTrigger.from_crontab(policy.schedule or "", timezone=settings.daemon.zone)
        if trigger.get_next_fire_time(None, now) is None:
            found[policy.name] = (
                f"retention policy {policy.name!r}: schedule {policy.schedule!r} never fires (no such date); "
                "the daemon will never run it"
            )
    return found


def unmatched_offhours(
    policies: Sequence[OffhoursPolicy], deployments: Sequence[Deployment], listed: Iterable[str]
) -> dict[str, str]:
    """Return, per off-hours policy whose provider answered (is in ``listed``) but lists nothing it selects, a warning."""
    answered = set(listed)
    found = {}
    for policy in policies:
        if policy.provider not in answered or any(policy.selects(deployment) for deployment in deployments):
            continue
        of_provider = sorted(d.name for d in deployments if d.provider == policy.provider)
        examples = ", ".join(of_provider[:3]) + (", ..." if len(of_provider) > 3 else "")
        found[policy.name] = (
            f"off-hours policy {policy.name!r}: match = {json.dumps(list(policy.match))} selects none of the {len(of_provider)} "
            f"deployments that provider {policy.provider!r} lists" + (f" ({examples})" if examples else "")
        )
    return found


def offhours_surprises(settings: Settings) -> dict[str, str]:
    """Ask the providers of the off-hours policies for their deployments once; return what would surprise.

    Never raises: a provider that cannot be set up or does not answer is simply not judged.
    """
    if not settings.offhours:
        return {}
    from daemon.deployments import list_deployments
    from daemon.providers.registry import build_providers

    try:
        providers = build_providers(settings, {policy.provider for policy in settings.offhours})
    except Exception:  # a provider that cannot be set up fails its runs loudly; this check stays quiet
        return {}
    try:
        view = list_deployments(providers)
    except Exception:
        return {}
    finally:
        for provider in providers.values():
            close = getattr(provider, "close", None)
            if close is not None:
                close()
    return unmatched_offhours(settings.offhours, view.deployments, view.listed)
