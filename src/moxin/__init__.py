"""moxin: build fully open large language models, from raw text to a verified MOF release."""

import os as _os

# MKL's conditional numerical reproducibility: without it MKL may pick alignment- or timing-dependent code paths,
# so two runs on the same machine are not guaranteed the same bits (moxin promises bitwise resume and reproduce).
# AUTO keeps the fastest branch for this CPU (measured: the same bits and the same fp32 GEMM speed as the default
# here). MKL reads the variable at its first call, so this works as long as no GEMM ran before moxin was imported.
_os.environ.setdefault("MKL_CBWR", "AUTO")

__version__ = "0.1.0"
