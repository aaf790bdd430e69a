"""blobgate: a registry blob-offload gateway that answers blob pulls with presigned URLs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("blobgate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
