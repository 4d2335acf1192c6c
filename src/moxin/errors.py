"""User-facing errors. The CLI prints a MoxinError as one line and exits 2; library code raises, never exits."""


class MoxinError(Exception):
    """A problem the user can fix: the message says what, shows the value, names the key/flag/file and how to fix it."""


class ConfigError(MoxinError):
    """A recipe or override is invalid."""


class DataError(MoxinError):
    """Input data is missing or unusable."""


class CheckpointError(MoxinError):
    """A checkpoint or weights file is missing, corrupted or incompatible."""


class ModelError(MoxinError):
    """A model configuration is invalid or unsupported."""


class InteropError(MoxinError):
    """A Hugging Face directory or GGUF file cannot be imported or exported."""


class EvalError(MoxinError):
    """An evaluation task or its data is invalid."""


class TrainingError(MoxinError):
    """Training cannot continue (e.g. a NaN loss); the message names the step and the last good checkpoint."""


class ReleaseError(MoxinError):
    """A run cannot be released, or a release does not verify."""


class ServeError(MoxinError):
    """A generation request is invalid (too long, bad parameter); the server answers it with HTTP 400."""


class TemplateError(MoxinError):
    """A chat template cannot render (invalid, rejects the conversation, or exceeds its size or time limits)."""


class TemplateLimitError(TemplateError):
    """A chat template exceeded its output-size or time limit (the template's fault, whatever the conversation)."""


class ReportError(MoxinError):
    """`moxin report` cannot read the folder it was given as a run or a release."""


class CompareError(MoxinError):
    """`moxin compare` was given something that is not a run, checkpoint, model folder, GGUF file or release."""
