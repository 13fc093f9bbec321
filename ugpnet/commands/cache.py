"""ugpnet cache: list or prune the FID statistics cache ($UGPNET_CACHE/fid_stats)."""
from __future__ import annotations

import argparse
import time

HELP = "list or prune the FID reference-statistics cache (sizes, last use)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="entries with size and last use (default)")
    pr = sub.add_parser("prune", help="delete entries (they are recomputed when needed)")
    pr.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                    help="entries not used for more than DAYS days")
    pr.add_argument("--max-size", type=float, default=None, metavar="MB",
                    help="then the least recently used until the cache fits MB megabytes")
    pr.add_argument("--all", action="store_true", help="every entry")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def run(args) -> int:
    from ..errors import ConfigError
    from ..metrics.fid import cache_entries, prune_cache, stats_cache_dir

    action = getattr(args, "action", None) or "list"
    if action == "list":
        entries = cache_entries()
        now = time.time()
        for e in entries:
            age_days = (now - e["mtime"]) / 86400
            print(f"{_mb(e['bytes']):>10s}  {age_days:6.1f} days  {e['path'].name}")
        print(f"{len(entries)} entries, {_mb(sum(e['bytes'] for e in entries))} in "
              f"{stats_cache_dir()}")
        return 0
    if not (args.all or args.older_than is not None or args.max_size is not None):
        raise ConfigError("ugpnet cache prune needs --older-than DAYS, --max-size MB or --all.")
    for flag, v in (("--older-than", args.older_than), ("--max-size", args.max_size)):
        if v is not None and v < 0:
            raise ConfigError(f"{flag} must be >= 0, got {v}")
    removed = prune_cache(
        older_than_s=None if args.older_than is None else args.older_than * 86400,
        max_bytes=None if args.max_size is None else int(args.max_size * 1e6),
        everything=args.all)
    left = cache_entries()
    print(f"removed {len(removed)} entries ({_mb(sum(e['bytes'] for e in removed))}); "
          f"{len(left)} left ({_mb(sum(e['bytes'] for e in left))}) in {stats_cache_dir()}")
    return 0
