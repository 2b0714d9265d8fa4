"""Shared by the summaries of scripts/gpu/*.sh: the pass/fail line of each step and the
benchmark rows the steps wrote (JSON lines)."""

import json
import os


def print_steps(out, steps, width):
    """One line per `name=exit-status`: PASS when it exited 0 and its log has no FAILED line."""
    print("\n=== summary")
    for s in steps:
        name, rc = s.split("=")
        log = open(os.path.join(out, name + ".log")).read().splitlines()
        failed = [l for l in log if "FAILED" in l]
        print(f"{name:<{width}} exit {rc:>3}  {'PASS' if rc == '0' and not failed else 'FAIL'}"
              + (f"  ({len(failed)} failed lines, first: {failed[0][:90]})" if failed else ""))


def load_rows(out, files=("bench.jsonl", "baseline.jsonl")):
    """The rows of the benchmark files that exist, with the cases and implementations in
    first-seen order."""
    rows = []
    for f in files:
        p = os.path.join(out, f)
        if os.path.exists(p):
            rows += [json.loads(l) for l in open(p) if l.strip()]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    return rows, cases, impls
