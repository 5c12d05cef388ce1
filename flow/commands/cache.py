"""``pimgen cache``: show the simulator build cache, trim it to a size, or empty it."""
from __future__ import annotations

import argparse
import time

HELP = "show the simulator build cache (path, builds, size, limit); --max sets its limit, --clean empties it"
DESCRIPTION = (HELP + ". Builds are kept in $PIMGEN_SIM_CACHE (default build/sim_cache); after each new build the "
               "least recently used ones are removed until the cache is under its limit: $PIMGEN_SIM_CACHE_MAX if "
               "set, else the size saved by --max, else 2G. Builds in use by a running simulation are never removed.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clean", action="store_true", help="remove every build not in use right now")
    p.add_argument("--max", metavar="SIZE",
                   help="save SIZE (e.g. 500M, 2G) as the cache's limit and trim the cache to it now")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    from flow.commands._common import print_json
    from sim import runner
    from sim.cache import cache_limit, clean, entries, evict, format_size, save_limit

    path = runner.DEFAULT_CACHE
    action = None
    if args.max is not None:
        save_limit(path, args.max, "--max")
    limit, source = cache_limit(path)
    if args.clean:
        action = clean(path)
    elif args.max is not None:
        action = evict(path, limit)
    if action is None and (args.clean or args.max is not None):
        raise ValueError("another process is trimming the cache right now; run the command again in a moment")
    found = entries(path)
    total = sum(e.size for e in found)
    rep = {
        "path": str(path), "entries": len(found), "total_bytes": total, "limit_bytes": limit, "limit_source": source,
        "over_limit": total > limit,
        "builds": [{"name": e.path.name, "bytes": e.size,
                    "last_used": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(e.last_used))} for e in found],
        "removed": [e.path.name for e in action.removed] if action else [],
        "freed_bytes": action.size_before - action.size_after if action else 0,
        "kept_in_use": action.skipped_busy if action else 0,
    }
    if args.json:
        print_json(rep)
        return 0
    print(f"cache          {path}")
    print(f"builds         {len(found)}, {format_size(total)} of {format_size(limit)} "
          f"(limit from {source}){'  OVER THE LIMIT: trimmed after the next build' if rep['over_limit'] else ''}")
    for b in reversed(rep["builds"][-10:]):
        print(f"  {b['last_used']}  {format_size(b['bytes']):>8}  {b['name']}")
    if len(found) > 10:
        print(f"  ... and {len(found) - 10} older")
    if action is not None:
        print(f"removed        {len(action.removed)} build(s), {format_size(rep['freed_bytes'])}"
              + (f"; {action.skipped_busy} in use kept" if action.skipped_busy else ""))
    return 0
