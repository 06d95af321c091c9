"""The exceptions of the kvstore package: each names the file, the field and the value."""
from __future__ import annotations


class KVStoreError(Exception):
    """Base class of every error this package raises."""


class SnapshotError(KVStoreError, ValueError):
    """A kvsnap file (or the arrays handed to `write`) breaks the format (KVSNAP.md).

    `field` names the tensor or metadata key at fault (e.g. ``kvsnap.spans`` or
    ``layers.3.key``); `path` the file, when there is one.
    """

    def __init__(self, field: str, problem: str, path: str | None = None) -> None:
        self.field, self.problem, self.path = field, problem, path
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{field}: {problem}")


class PackError(KVStoreError, ValueError):
    """A kvpack file is damaged or malformed (docs/FORMAT.md); never returned as numbers.

    `layer` is the section at fault (None for the footer or header), `field` the part of it.
    """

    def __init__(self, path: str, problem: str, layer: int | None = None, field: str | None = None) -> None:
        self.path, self.problem, self.layer, self.field = path, problem, layer, field
        where = "" if layer is None else f"layer {layer}: "
        what = f"{field}: " if field else ""
        super().__init__(f"{path}: {where}{what}{problem}")


class FingerprintError(KVStoreError, ValueError):
    """A model's weights cannot be fingerprinted (`kvstore.weights`): no weight file in the
    folder, or one that cannot be read or whose safetensors header is malformed."""


class ExpandError(KVStoreError, ValueError):
    """A merged layer cannot be expanded: it carries no member positions."""


class CommandError(KVStoreError):
    """The store refused or failed a request: the `kvstore` binary exited non-zero, or
    `kvstore serve` answered an error. Subclasses follow the exit codes (README, "Exit codes")
    and the HTTP error codes (docs/openapi.yaml, `Error.code`).

    Over HTTP, `status` is the HTTP status, `code` the error code, `stderr` the server's
    message, `retry_after` the seconds `Retry-After` asks for (None when absent), and
    `returncode` the exit code the CLI gives the same failure.
    """

    exit_code = -1

    def __init__(self, args: list[str], returncode: int, stderr: str, status: int | None = None,
                 code: str | None = None, retry_after: float | None = None) -> None:
        self.args_ = args
        self.returncode = returncode
        self.stderr = stderr.strip()
        self.status, self.code, self.retry_after = status, code, retry_after
        if status is None:
            super().__init__(f"kvstore {' '.join(args)} exited with {returncode}: {self.stderr}")
        else:
            super().__init__(f"{' '.join(args)}: {status} {code}: {self.stderr}")


class UsageError(CommandError):
    """Exit code 1 (HTTP 400, 413, 416): an unknown flag, a bad value, a bad policy string,
    an upload past the server's `--max-upload`."""

    exit_code = 1


class NotFoundError(CommandError, LookupError):
    """Exit code 2 (HTTP 404, 409): no entry matches the id, prefix or key (or the prefix is
    ambiguous)."""

    exit_code = 2


class CorruptError(CommandError):
    """Exit code 3 (HTTP 422, 500 `corrupt`): a malformed snapshot, a damaged or missing
    blob, a transfer that ended short of its `Content-Length`."""

    exit_code = 3


class TransientError(CommandError):
    """Exit code 4 (HTTP 503): disk full, database busy; retry later (`retry_after` seconds
    when the server says)."""

    exit_code = 4


class AccessError(CommandError, PermissionError):
    """`kvstore serve` refused the token (HTTP 401 or 403)."""


class UnauthorizedError(AccessError):
    """HTTP 401: no token, or one the server does not know."""


class ForbiddenError(AccessError):
    """HTTP 403: the token's scope does not allow this (a read token uploading or deleting)."""


class ModelMismatchError(KVStoreError, ValueError):
    """A snapshot does not fit the model it is loaded into (layers, heads, dims, model name)."""


class EvalError(KVStoreError, ValueError):
    """An answers evaluation (`kvstore.eval`) was asked for something it cannot measure: no
    inputs, no question, no policy, a media file that is not an image or video."""
