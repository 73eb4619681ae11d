"""Time and peak memory to refuse hostile rule files, each built in its own capped child process.

    .venv/bin/python bench/rules_hostile_bench.py                       # this checkout
    .venv/bin/python bench/rules_hostile_bench.py --code /path/to/old   # another checkout (before the limits)

Each file is given to build_revision (backend python, no cases) alone with the shipped rules, in a
child process whose address space is capped (--memory-mb, default 2048) and that is killed after
--timeout seconds (default 60), so the old code's billion laughs cannot take the machine down. For
each file: the outcome (refused with its first problem, accepted, out of memory, timed out), the
wall time of the build and the child's peak RSS less its RSS before the build.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
cap = int(sys.argv[3]) * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from decision_server.rules.engine import build_revision
from decision_server.rules.source import RulesInvalid, read_rules_dir
files = read_rules_dir(Path(sys.argv[1]))
name, text = sys.argv[2], sys.stdin.read()
files[name] = text
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    build_revision(files, backend="python", run_cases=False).close()
    outcome = "accepted"
except RulesInvalid as exc:
    outcome = "refused: " + str(exc.problems[0])[:90]
except MemoryError:
    outcome = "MemoryError"
took = time.perf_counter() - started
print(json.dumps({"outcome": outcome, "seconds": took, "rss_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}))
"""

HEAD = "ruleset: value\nhit: first\ninputs: {value_score: number}\noutputs: {value_segment: string}\n"


def hostile() -> dict[str, tuple[str, str]]:
    """Return name → (file name, text) of the hostile files."""
    laughs = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    laughs += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    rules = lambda n: (
        HEAD + "rules:\n" + "".join(f"- {{id: r{i}, when: value_score > {i}, then: {{value_segment: x}}}}\n" for i in range(n))
    )
    return {
        "billion laughs (9x9 aliases, 489 B)": ("value.yaml", "\n".join(laughs) + "\n"),
        "merge key": ("value.yaml", HEAD + "rules:\n- <<: {id: a}\n  when: true\n"),
        "10,000 nested {": ("value.yaml", "x: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n"),
        "450,000 values (900 KB)": ("value.yaml", "x: [" + ",".join(["1"] * 450_000) + "]\n"),
        "12,000 rules (800 KB)": ("value.yaml", rules(12_000)),
        "2,001 rules (90 KB)": ("value.yaml", rules(2_001)),
        "5 MB scalar": ("value.yaml", HEAD + "description: " + "a" * 5_000_000 + "\n"),
        "100,000 documents": ("value.yaml", "---\n" * 100_000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose decision_server to run")
    parser.add_argument("--memory-mb", type=int, default=2048)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.code.resolve())}
    print(f"code: {args.code.resolve()}  memory cap {args.memory_mb} MiB, timeout {args.timeout:.0f} s")
    print(f"{'file':38} {'seconds':>8} {'peak MB':>8}  outcome")
    for name, (file, text) in hostile().items():
        started = time.perf_counter()
        try:
            child = subprocess.run(
                [sys.executable, "-c", CHILD, str(REPO / "rules"), file, str(args.memory_mb)],
                input=text,
                capture_output=True,
                text=True,
                timeout=args.timeout,
                env=env,
                cwd=args.code,
            )
        except subprocess.TimeoutExpired:
            print(f"{name:38} {time.perf_counter() - started:8.2f} {'?':>8}  timed out")
            continue
        lines = child.stdout.strip().splitlines()
        if child.returncode or not lines:
            tail = (child.stderr.strip().splitlines() or ["?"])[-1][:90]
            print(f"{name:38} {time.perf_counter() - started:8.2f} {'?':>8}  child failed ({child.returncode}): {tail}")
            continue
        result = json.loads(lines[-1])
        print(f"{name:38} {result['seconds']:8.3f} {result['rss_mb']:8.1f}  {result['outcome']}")


if __name__ == "__main__":
    main()
