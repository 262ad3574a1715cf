#!/usr/bin/env python3
"""Counts meson test results from testlog.json files and prints the closing
line `N passed, N failed, N skipped`.  A timed-out test counts as failed
(meson 1.0.1 reports it as passed in its JUnit file).  Arguments
`FUZZ-OK:<target>` / `FUZZ-FAIL:<target>` count one fuzz target each; a `.xml`
argument is a pytest junit file (the interop pass).  Skipped tests are
listed with the reason they printed (e.g. `skipped: no CUDA device`).
Exit status: 0 when nothing failed."""
import json
import sys
import xml.etree.ElementTree as ET


def junit_counts(path):
    """(passed, failed, skipped) of a junit xml file; xfail counts as skipped."""
    try:
        cases = list(ET.parse(path).iter("testcase"))
    except (OSError, ET.ParseError):
        print(f"FAILED: no test log {path}")
        return 0, 1, 0
    n = [0, 0, 0]
    for case in cases:
        name = f"{case.get('classname')}::{case.get('name')}"
        skip = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            n[1] += 1
            print(f"FAILED: {name} in {path}")
        elif skip is not None:
            n[2] += 1
            print(f"SKIP: {name}: {skip.get('message')}")
        else:
            n[0] += 1
    return tuple(n)


passed = failed = skipped = 0
for path in sys.argv[1:]:
    if path.startswith("FUZZ-OK:"):
        passed += 1
        continue
    if path.startswith("FUZZ-FAIL:"):
        print(f"FAILED: {path.split(':', 1)[1]} (the fuzzer found a crash)")
        failed += 1
        continue
    if path.endswith(".xml"):  # pytest --junitxml (the interop pass)
        counts = junit_counts(path)
        passed, failed, skipped = passed + counts[0], failed + counts[1], skipped + counts[2]
        continue
    if path.startswith("BUILD-FAILED:"):
        print(f"FAILED: the {path.split(':', 1)[1]} build")
        failed += 1
        continue
    try:
        lines = open(path).read().splitlines()
    except OSError:
        print(f"FAILED: no test log {path}")
        failed += 1
        continue
    for line in lines:
        if not line.strip():
            continue
        r = json.loads(line)
        res, name = r.get("result"), r.get("name")
        if res in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif res == "SKIP":
            skipped += 1
            out = (r.get("stdout") or "").strip().splitlines()
            reason = next((l for l in reversed(out) if "skipped" in l), out[-1] if out else "")
            print(f"SKIP: {name}: {reason}")
        else:
            failed += 1
            print(f"FAILED: {name} ({res}) in {path}")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
