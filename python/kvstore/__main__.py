"""`python -m kvstore unpack PACK -o OUT.safetensors [--dtype f16|bf16|f32] [--expand] [--prefix [--entry ID]]`:
writes exactly the bytes `kvstore fetch` writes for the entry stored in PACK."""
from __future__ import annotations

import argparse
import sys

from .errors import ExpandError, PackError
from .pack import unpack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kvstore", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    u = commands.add_parser("unpack", help="a kvpack file (fetch --raw) to the kvsnap file fetch writes")
    u.add_argument("pack", help="kvpack file")
    u.add_argument("-o", "--output", required=True, help="output .safetensors file")
    u.add_argument("--dtype", default="f16", choices=["f16", "bf16", "f32"], help="dtype of keys and values")
    u.add_argument("--expand", action="store_true",
                   help="repeat each merged entry at every member's position with size 1")
    u.add_argument("--prefix", action="store_true",
                   help="the shareable prefix alone (positions before the first prompt span), as fetch --prefix")
    u.add_argument("--entry", help="with --prefix: the entry id kvsnap.prefix_of names (default: the pack header's)")
    args = parser.parse_args(argv)
    if args.entry and not args.prefix:
        parser.error("--entry goes with --prefix")
    try:
        unpack(args.pack, args.output, dtype=args.dtype, expand=args.expand, prefix=args.prefix, entry=args.entry)
    except (PackError, ExpandError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, FileNotFoundError) else 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
