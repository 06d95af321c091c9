"""kvstore: read and write kvsnap files, read kvpack files natively, drive a local store.

    import kvstore
    snap = kvstore.read("chat.safetensors")          # validated like `kvstore ingest` does
    kvstore.write(snap, "copy.safetensors")
    with kvstore.read_pack("entry.kvpack") as pack:  # what `kvstore fetch --raw` writes
        layer = pack.layer(0, dtype="f32")
    kvstore.unpack("entry.kvpack", "cache.safetensors")  # the bytes `kvstore fetch` writes
    store = kvstore.Client()                          # the `kvstore` binary on the PATH
    store = kvstore.Client("http://store:8750", token=token)  # `kvstore serve`: same methods

The Hugging Face adapter is `kvstore.hf` and GPU-side decoding `kvstore.torch`; both need
torch and are imported only when used.
"""
from .client import Client, Entry, PrefixMatch
from .errors import (AccessError, CommandError, CorruptError, EvalError, ExpandError, FingerprintError, ForbiddenError,
                     KVStoreError,
                     ModelMismatchError, NotFoundError, PackError, SnapshotError, TransientError, UnauthorizedError,
                     UsageError)
from .pack import Pack, PackHeader, PackLayer, Section, read_pack, unpack
from .remote import HTTPClient
from .snapshot import Layer, Snapshot, Span, read, write

__all__ = [
    "AccessError", "Client", "CommandError", "CorruptError", "Entry", "EvalError", "PrefixMatch", "ExpandError", "FingerprintError", "ForbiddenError", "HTTPClient",
    "KVStoreError", "Layer", "ModelMismatchError", "NotFoundError", "Pack", "PackError", "PackHeader", "PackLayer",
    "Section", "Snapshot", "SnapshotError", "Span", "TransientError", "UnauthorizedError", "UsageError", "read",
    "read_pack", "unpack", "write",
]
__version__ = "0.1.0"
