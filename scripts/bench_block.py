"""What the writers of a part of docs/benchmarks.md share (scripts/bench_room.py,
scripts/bench_abuse.py): the reports of a run read from the bench directory, the machine and
commit they were measured on, and the part rewritten between its two markers."""
import glob
import json
import os
import sys


def reports(bench, pattern):
    """The JSON reports of the bench directory whose names match `pattern`, in name order."""
    loaded = []
    for path in sorted(glob.glob(os.path.join(bench, pattern))):
        with open(path) as f:
            loaded.append(json.load(f))
    return loaded


def machine_and_commit(bench):
    """The machine line and the commit `scripts/bench.sh` wrote for the run."""
    read = lambda name: open(os.path.join(bench, name)).read().strip()
    return read("machine.txt"), read("commit.txt")


def rewrite(target, begin, end, block):
    """Replaces the part of `target` from `begin` to `end` (both markers kept in `block`)."""
    with open(target) as f:
        text = f.read()
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < 0:
        sys.exit(f"{target} has no {begin} ... {end} block")
    with open(target, "w") as f:
        f.write(text[:start] + block + text[stop + len(end):])
