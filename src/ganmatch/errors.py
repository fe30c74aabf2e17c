"""Error types whose messages name the offending file or config key and the fix."""


class GanmatchError(Exception):
    """Base class for every error the pipeline raises on bad input."""


class ConfigError(GanmatchError):
    """A config value is missing, misspelled or of the wrong type."""


class InputDataError(GanmatchError):
    """A table or array given to a stage is malformed (NaN, duplicate ids, bad labels)."""


class ImageError(GanmatchError):
    """One image cannot be used; the pipeline records it as rejected and goes on."""


class WeightsError(GanmatchError):
    """A weights file is missing, unsafe, or does not fit the expected architecture."""


class DownloadError(GanmatchError):
    """A download failed or its checksum did not match; the message says what to fetch by hand."""
