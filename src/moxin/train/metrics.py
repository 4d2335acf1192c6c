"""Per-step metrics: metrics.jsonl (one JSON object per step), optional TensorBoard, a rich progress bar with rate
and ETA, the loss curve as PNG, and the matmul peak that MFU is measured against."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

from moxin.provenance import atomic_write_text


def measure_peak_flops(dtype_name: str = "fp32", n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of a square `torch.mm` (n×n·n×n = 2n³ FLOPs) in the training precision, best of `repeats`.

    This is what MFU divides by: the matmul throughput this process can reach right now on this device."""
    import torch

    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    n = n if dev == "cpu" else max(n, 8192)  # a GPU needs big matrices to approach its peak
    # A private generator: drawing from the global RNG here would shift a resumed run's random stream (and the
    # RNG state its later checkpoints record) against an uninterrupted run's.
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, generator=gen).to(dtype)
    b = torch.randn(n, n, device=dev, generator=gen).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.mm(a, b)
        if dev == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


class MetricsLog:
    """Appends to metrics.jsonl; on resume drops the entries past the checkpoint (a killed run logged them)."""

    def __init__(self, path: Path, resume_step: int, enabled: bool = True, tensorboard: bool = False) -> None:
        self.path, self.enabled = Path(path), enabled
        self.tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            keep = [
                ln
                for ln in self.path.read_text("utf-8").splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) < resume_step
            ]
            atomic_write_text(self.path, "".join(ln + "\n" for ln in keep))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                from moxin.errors import ConfigError

                raise ConfigError(
                    "pretrain.tensorboard = true needs the tensorboard package: pip install tensorboard "
                    "(or set it to false; metrics.jsonl and loss.png are always written)"
                ) from None
            self.tb = SummaryWriter(str(self.path.parent / "tensorboard"))
        self._f = open(self.path, "a", encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._f.write(json.dumps(record, sort_keys=True) + "\n")
        self._f.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.enabled:
            self._f.close()
            if self.tb is not None:
                self.tb.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text("utf-8").splitlines() if ln.strip()]


def plot_loss(metrics_path: Path, out_png: Path, title: str = "training loss") -> Path | None:
    """loss (and val_loss) against step, with phase boundaries; written atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from moxin.provenance import atomic_write_bytes

    rows = [r for r in read_metrics(metrics_path) if "loss" in r]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1, label="train loss")
    val = [r for r in rows if "val_loss" in r]
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", ms=3, label="val loss")
    for prev, cur in itertools.pairwise(rows):
        if cur.get("phase") != prev.get("phase"):
            ax.axvline(cur["step"], color="grey", ls="--", lw=0.8)
            ax.text(cur["step"], ax.get_ylim()[1], f" {cur.get('phase')}", va="top", fontsize=8, color="grey")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(out_png, buf.getvalue())
    return Path(out_png)


class Progress:
    """A rich progress bar over optimizer steps (rate and ETA), showing the latest loss."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.bar = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(
            TextColumn("[bold]train[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self.task = self.bar.add_task("train", total=total, completed=start, info="")
        self.bar.start()

    def update(self, step: int, info: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
