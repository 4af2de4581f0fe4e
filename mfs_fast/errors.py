"""Exceptions with messages a user can act on."""


class MfsError(Exception):
    """Base class for every error mfs_fast raises on purpose."""


class CheckpointError(MfsError):
    """A weights file or folder is missing, unsafe, corrupt or does not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle tried to build something other than plain data (dicts, lists, arrays)."""


class MediaError(MfsError):
    """An input file is missing, empty, corrupt or of an unsupported format."""


class ImageError(MediaError):
    """An input image is unreadable or has the wrong size."""


class VideoError(MediaError):
    """A video cannot be read or written."""


class NoFaceError(MfsError):
    """No face was found where one is required (e.g. in the source image)."""


class NativeUnavailableError(MfsError):
    """The C++ extension was not built; the message says how to build it."""


class ArchiveError(CheckpointError):
    """A weights archive is damaged, of an unknown format, or unsafe to unpack (links, paths
    leaving the destination, sizes over the limits)."""


class DownloadError(MfsError):
    """A download failed (offline, refused, interrupted, over the size limit); the message says
    whether a rerun resumes it and how to fetch the file by hand instead."""
