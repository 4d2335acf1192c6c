"""The `[build]` section: which stages `moxin build` runs, and the hardware its dry-run plan is computed for."""

from __future__ import annotations

from dataclasses import dataclass

from moxin.errors import ConfigError


@dataclass
class BuildConfig:
    finetune: bool = True  # run the [finetune] stages when the recipe has them
    evaluate: bool = True
    release: bool = True
    verify: bool = True
    reproduce: str | None = None  # checkpoint steps "K..M" re-run by verify (default: the last two checkpoints)
    selfdata_source: str | None = None  # source whose functions become SFT pairs and the code-completion task
    # Hardware for the dry-run plan (GPU-hours, memory per GPU under FSDP2):
    gpus: int = 8
    gpu_memory_gib: float = 80.0
    gpu_peak_tflops: float = 989.0  # dense bf16 per GPU (H100/H200 SXM)
    mfu: float = 0.40  # model FLOPs utilisation assumed for the GPU-hour estimate

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        if self.gpus <= 0:
            raise ConfigError(f"{prefix}gpus in {where}: must be positive, got {self.gpus}")
        if not 0 < self.mfu <= 1:
            raise ConfigError(f"{prefix}mfu in {where}: must be in (0, 1], got {self.mfu}")
        if self.reproduce is not None and not _steps_ok(self.reproduce):
            raise ConfigError(
                f"{prefix}reproduce in {where}: write it as K..M (checkpoint steps), got {self.reproduce!r}"
            )


def _steps_ok(text: str) -> bool:
    parts = text.split("..")
    return 1 <= len(parts) <= 2 and all(p.strip().isdigit() for p in parts)
