"""`python -m kvstore unpack PACK -o OUT.safetensors [--dtype f16|bf16|f32] [--expand] [--prefix [--entry ID]]`:
writes exactly the bytes `kvstore fetch` writes for the entry stored in PACK.

`python -m kvstore eval-answers --model ID --media FILE... --question TEXT... --policy P...
[--max-new-tokens N] [--store DIR|URL] [--json]` ($KVSTORE_TOKEN for a URL; or `--tiny llava|qwen2_5_vl` instead of
`--model` and `--media`): what each policy does to the model's answers (kvstore.eval). Exit
codes as the binary's: 1 a bad argument, policy or model, 2 a file or model not found."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .client import Client, is_url
from .errors import CommandError, EvalError, ExpandError, ModelMismatchError, PackError
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
    a = commands.add_parser("eval-answers", help="what each policy does to a model's answers (kvstore.eval)")
    which = a.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="Hugging Face model id or directory (LLaVA, Qwen2-VL, Qwen2.5-VL)")
    which.add_argument("--tiny", choices=["llava", "qwen2_5_vl"], help="a tiny random model, no download")
    a.add_argument("--media", nargs="+", default=[], metavar="FILE",
                   help="with --model: images or videos, one item each, every question asked about each")
    a.add_argument("--question", nargs="+", default=[], metavar="TEXT",
                   help="the first is captured and stored (same question); the rest are asked on its prefix (new)")
    a.add_argument("--policy", nargs="+", default=[], metavar="P", help="policies to compare (`kvstore policies`)")
    a.add_argument("--max-new-tokens", type=int, default=16, metavar="N", help="answer tokens (default 16)")
    a.add_argument("--store", help="a store folder, or a `kvstore serve` URL with a write token in $KVSTORE_TOKEN "
                   "(default: a scratch store); the entries added are removed again")
    a.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.command == "eval-answers":
        return eval_answers(args)
    if args.entry and not args.prefix:
        parser.error("--entry goes with --prefix")
    try:
        unpack(args.pack, args.output, dtype=args.dtype, expand=args.expand, prefix=args.prefix, entry=args.entry)
    except (PackError, ExpandError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        # Not there, or not a file where one is needed (a folder as output or input): the
        # command line names the wrong thing (2, 1); only what may pass on its own is 4.
        if isinstance(e, FileNotFoundError):
            return 2
        if isinstance(e, (IsADirectoryError, NotADirectoryError, PermissionError)):
            return 1
        return 4
    return 0


def eval_answers(args: argparse.Namespace) -> int:
    """The eval-answers command: every bad input is one line on stderr and exit 1 or 2."""
    try:
        if args.tiny and args.media:
            raise EvalError("--media goes with --model (a tiny model brings its own image)")
        from . import eval as answers  # torch and transformers: only for this command
        if args.tiny:
            model, items = answers.tiny_items(args.tiny, args.question)
        else:
            model, items = answers.hub(args.model, args.media, args.question)
        store = Client(args.store, token=os.environ.get("KVSTORE_TOKEN")) if is_url(args.store) else args.store
        report = answers.evaluate(model, items, args.policy, max_new_tokens=args.max_new_tokens, store=store,
                                  progress=_bar if sys.stderr.isatty() else None)
    except (EvalError, ModelMismatchError, ValueError) as e:
        return _fail(e, 1)
    except CommandError as e:  # the store's answer: its own message, the binary's exit code
        return _fail(e.stderr.splitlines()[-1] if e.stderr else e, e.returncode if e.returncode > 0 else 1)
    except OSError as e:  # a media file, a model that is not there
        named = e.filename is not None and str(e.filename) in str(e.strerror)
        return _fail(e.strerror if named else e, 2)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.table())
    return 0


def _fail(e: object, code: int) -> int:
    message = str(e).strip().splitlines()
    print(f"error: {message[0] if message else type(e).__name__}", file=sys.stderr)
    return code


def _bar(done: int, total: int, what: str) -> None:
    filled = 30 * done // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {what:<40.40}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
