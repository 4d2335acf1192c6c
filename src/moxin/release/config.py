"""The `[release]` section of a recipe: what a release is called, who made it, and the licences of what the run
itself produced (the data sources' licences come from the data manifest, never from here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from moxin.errors import ConfigError

DEFAULT_PROMPTS = ["The capital of France is", "Once upon a time", "def add(a, b):", "日本の首都は"]


@dataclass
class ReleaseConfig:
    """Release metadata and licences. Licences are SPDX ids (or `LicenseRef-...`)."""

    name: str | None = None  # default: run.name
    version: str = "0.1.0"
    producer: str = ""
    contact: str = ""
    origin: str = ""  # the model this one derives from ('' when trained from scratch)
    model_license: str = "Apache-2.0"  # weights, intermediate checkpoints, optimizer state, metadata, sample outputs
    code_license: str | None = None  # default: the moxin package's own licence
    document_license: str = "CC-BY-4.0"  # model card, data card, technical report, evaluation results
    research_paper: str = "builtin"  # a file to ship as the research paper; 'builtin' = moxin's method paper; '' = none
    research_paper_license: str = "CC-BY-4.0"
    intermediate_checkpoints: bool = True  # ship every checkpoint (MOF Class I needs them)
    optimizer_state: bool = True  # ship optimizer state with the checkpoints (`verify --reproduce` needs it)
    hf_export: bool = True  # include a Hugging Face-format copy of the final model under hf/
    sample_prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    sample_max_new_tokens: int = 24

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        from moxin.release.licences import known, licence_class

        for key in ("model_license", "code_license", "document_license", "research_paper_license"):
            value = getattr(self, key)
            if value is None:
                continue
            if value not in known() and not value.startswith("LicenseRef-") and licence_class(value) != "restricted":
                raise ConfigError(
                    f"{prefix}{key} in {where}: {value!r} is not a known SPDX licence id; use e.g. "
                    "Apache-2.0, CDLA-Permissive-2.0, CC-BY-4.0 or a LicenseRef-... id"
                )
        if self.name is not None:
            from moxin.data.config import check_name

            check_name(self.name, f"{prefix}name", where)
        if self.sample_max_new_tokens < 0:
            raise ConfigError(
                f"{prefix}sample_max_new_tokens in {where} must be >= 0, got {self.sample_max_new_tokens}"
            )
