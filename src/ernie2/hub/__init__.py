"""Pre-trained ERNIE checkpoints by name: the table of model descriptions (hub.table), where
each comes from (hub.sources), downloading (hub.download), unpacking (hub.archive) and the
cache it is converted into (hub.cache). No torch: the model layer passes its converter in."""

from ernie2.hub.download import (ArchiveError, ChecksumError, Download, DownloadError, ENV_HOME,
                                 ENV_MIRROR, ENV_OFFLINE, ENV_REGISTRY, ENV_TIMEOUT,
                                 ModelUnavailableError, UnknownModelError, cache_home, fetch_file,
                                 is_offline, mirrored, verify)
from ernie2.hub.archive import CONFIG_NAMES, find_checkpoint_root, safe_extract
from ernie2.hub.sources import ArchiveSource, FilesSource, HubSource
from ernie2.hub.table import (ModelInfo, get_model, iter_models, known_models, register,
                              registered, unregister)
from ernie2.hub.cache import cached_path, describe_cached, resolve

__all__ = ["CONFIG_NAMES", "ENV_HOME", "ENV_MIRROR", "ENV_OFFLINE", "ENV_REGISTRY", "ENV_TIMEOUT",
           "ArchiveError", "ArchiveSource", "ChecksumError", "Download", "DownloadError",
           "FilesSource", "HubSource", "ModelInfo", "ModelUnavailableError", "UnknownModelError",
           "cache_home", "cached_path", "describe_cached", "fetch_file", "find_checkpoint_root",
           "get_model", "is_offline", "iter_models", "known_models", "mirrored", "register",
           "registered", "resolve", "safe_extract", "unregister", "verify"]
