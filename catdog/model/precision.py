"""The numeric precision the model trains and predicts in: bfloat16 where the hardware has it.

Keras' `mixed_bfloat16` policy computes in bfloat16 and keeps the variables (and Adam) in
float32; the sigmoid output stays float32. Where the CPU has native bfloat16 instructions
(avx512_bf16, amx_bf16) oneDNN uses them: on a Zen 4 EPYC the spec model trained at 2x the
float32 speed (README). Elsewhere TensorFlow emulates bfloat16, correct but slower than
float32, so `auto` picks float32 there. `ONEDNN_VERBOSE=1` shows the kernels that really run.
"""

from __future__ import annotations

from pathlib import Path

FLOAT32, MIXED_BFLOAT16 = "float32", "mixed_bfloat16"
PRECISIONS = ("auto", FLOAT32, MIXED_BFLOAT16)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The CPU's native bfloat16 instruction sets, from /proc/cpuinfo (or the text given)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return [flag for flag in BF16_CPU_FLAGS if flag in flags]


def gpu_with_bf16() -> str | None:
    """A visible GPU that computes bfloat16 natively (compute capability 8.0+, Ampere on), if any."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        if details.get("compute_capability", (0, 0)) >= (8, 0):
            return details.get("device_name", gpu.name)
    return None


def resolve(choice: str, cpuinfo: str | None = None, gpu: str | None = None) -> tuple[str, str]:
    """(Keras dtype policy, why) for `train.precision` (or `catdog predict --precision`)."""
    if choice != "auto":
        return choice, f"{choice} as asked"
    if gpu:
        return MIXED_BFLOAT16, f"auto: the GPU {gpu} computes bfloat16 natively"
    flags = cpu_bf16_flags(cpuinfo)
    if flags:
        return MIXED_BFLOAT16, f"auto: this CPU has {', '.join(flags)}"
    return FLOAT32, (
        f"auto: this CPU has no {' or '.join(BF16_CPU_FLAGS)}, so bfloat16 would be emulated (slower than float32)"
    )
