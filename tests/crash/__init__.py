"""Crash safety by fault injection (``python -m tests.crash``): the harness behind RELIABILITY.md §1.

    injector   run retentiond with an audit hook that kills it before its N-th filesystem mutation
    store      the trial store, built with the real bentoml package, and its pristine snapshot
    checks     what a store must look like after a kill and after the recovery run
    judge      a long-lived BentoML process that lists and resolves the store
    trials     one worker's trials in the five kill modes
    __main__   the whole bench: trials on two workers, a summary, exit 1 on any failure
"""
