#!/bin/bash
# Run a command (mutmut) in a private mount namespace where only mutants/, a scratch /tmp and a scratch
# /dev/shm can be written. Mutants of deletion code run as root: one that turns a path into None
# (os.scandir(None) lists the working directory) or walks up past the trash would otherwise remove
# whatever it reaches. Usage, from the repository root, as root:
#   unshare --mount --propagation private tests/mutation/sandbox.sh .venv/bin/mutmut run --max-children 2 "daemon.*"
set -euo pipefail
checkout=$(pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/retentiond-mutation.XXXXXX")
mkdir -p "$checkout/mutants"
mount --make-rprivate /
for target in $(findmnt -rn -O rw -o TARGET | sort -u); do  # the read-only ones stay as they are
    mount -o remount,bind,ro "$target" 2>/dev/null || true
done
mount -t tmpfs -o size=4g tmpfs /dev/shm  # multiprocessing's semaphores
mount --bind "$scratch" /tmp
mount -o remount,bind,rw /tmp
mount --bind "$checkout/mutants" "$checkout/mutants"
mount -o remount,bind,rw "$checkout/mutants"
cd "$checkout"
exec "$@"
