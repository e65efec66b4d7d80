"""Where the benchmarks' output goes.

Progress to stderr, the markdown report to stdout, report files where asked."""

import json
import sys


def log(msg=""):
    """Progress goes to stderr; stdout carries only the markdown report."""
    print(msg, file=sys.stderr, flush=True)


def write_report(md: str, report: dict, markdown_path=None, json_path=None) -> None:
    """Print the markdown report; also write it and the JSON where asked."""
    print(md)
    if markdown_path:
        with open(markdown_path, "w") as f:
            f.write(md + "\n")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=2, default=str)
