"""Command line: python3 -m compiler compile [--parallel N] [--targets N]
[--output DIR] [--inventory DIR], and python3 -m compiler generate."""
import argparse
import os
import sys
import time

from . import compile as compiler
from . import inventory


def _args(argv):
    ap = argparse.ArgumentParser(
        prog="python3 -m compiler",
        description="A kapitan-like compiler: renders an inventory of targets "
                    "into compiled/<target>/.")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, text in (("compile", "compile every target (generating the "
                                    "inventory first if it is missing)"),
                       ("generate", "only (re)generate the inventory")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--targets", type=int, default=300, metavar="N",
                       help="number of targets in the generated inventory (default 300)")
        p.add_argument("--inventory", default="inventory", metavar="DIR",
                       help="inventory directory (default: ./inventory)")
        p.add_argument("--seed", type=int, default=7, help=argparse.SUPPRESS)
        if name == "compile":
            p.add_argument("--output", default="compiled", metavar="DIR",
                           help="where compiled targets go (default: ./compiled)")
            p.add_argument("--parallel", type=int, default=0, metavar="N",
                           help="compile in a pool of N processes (default: "
                                "serially in this process)")
    return ap.parse_args(argv)


def main(argv=None):
    args = _args(argv)
    start = time.perf_counter()
    if args.command == "generate":
        names = inventory.generate(args.inventory, args.targets, args.seed)
        print(f"Generated {len(names)} targets in {args.inventory}/targets")
        return 0

    generated = inventory.ensure(args.inventory, args.targets, args.seed)
    targets = inventory.load(args.inventory)
    loaded = time.perf_counter()
    digest, inventory_chars = inventory.inventory_digest(targets)
    results = compiler.compile_all(targets, args.output, args.parallel)
    done = time.perf_counter()

    files = sum(r[1] for r in results)
    written = sum(r[2] for r in results)
    envs = {}
    for t in targets:
        envs[t.params.get("environment")] = envs.get(t.params.get("environment"), 0) + 1
    components = sum(len(t.params.get("components", {})) for t in targets)
    mode = f"{args.parallel} processes" if args.parallel > 1 else "serially"
    print(f"Compiled {len(results)} targets ({components} components) {mode} "
          f"into {args.output}/: {files} files, {written / 1e6:.1f} MB")
    print("  by environment: " + ", ".join(f"{k} {v}" for k, v in sorted(envs.items())))
    print(f"  inventory: {args.inventory}/ ({'generated' if generated else 'reused'}), "
          f"digest {digest[:16]}, {inventory_chars / 1e6:.1f} M characters")
    if args.parallel <= 1:
        print(f"  render cache: {compiler.cache_bytes() / 1e6:.1f} MB held")
    print(f"  time: {loaded - start:.2f} s loading, {done - loaded:.2f} s compiling")
    return 0


if __name__ == "__main__":
    sys.exit(main())
