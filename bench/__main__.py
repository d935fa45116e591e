"""`python -m bench [--quick] [--skip-1m] [--soak-minutes M] [--json PATH] [--profile]`,
or `make bench BENCH_ARGS="--quick"`."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from bench.options import parse
from bench.report import LEGEND, header, render, rows, write_json
from bench.suite import Bench


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same path as Ctrl-C, so every cleanup runs.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    # The bench's stack runs as guest on a vhost of its own: the development profile.
    os.environ.setdefault("TASKPROC_ENV", "development")
    signal.signal(signal.SIGTERM, _interrupt)
    # Also where SIGINT came in ignored (a background job of a script): Ctrl-C must clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        results = Bench(options).run()
    except KeyboardInterrupt:
        print("\ninterrupted: everything the bench started was stopped and removed",
              file=sys.stderr)
        return 130
    table = rows(results)
    print("\n" + header(results))
    print(render(table))
    print(LEGEND)
    for text in results["notes"]:
        print(f"note: {text}")
    write_json(results, table, options.json_path)
    print(f"\nJSON: {options.json_path}  (logs: {options.run_dir}/*.log; "
          f"took {results['minutes']} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
