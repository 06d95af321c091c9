"""`python -m kvstore unpack PACK -o OUT.safetensors [--dtype f16|bf16|f32] [--expand]`:
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
    args = parser.parse_args(argv)
    try:
        unpack(args.pack, args.output, dtype=args.dtype, expand=args.expand)
    except (PackError, ExpandError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, FileNotFoundError) else 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
