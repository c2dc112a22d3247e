"""Where a training step of the spec model goes, op by op, against this machine's sgemm.

For each convolution of the spec model (batch 32, 256x256 input) it times the forward pass,
the backward pass for the filter and for the input, and the max-pool and dense layers, and
converts the times to GFLOP/s next to numpy's sgemm (OpenBLAS) measured in the same run:
the ceiling any convolution lowered to matrix products could reach on these cores.

    python bench/profile_step.py [--batch 32] [--json out.json]

TensorFlow's CPU kernels change with TF_ENABLE_ONEDNN_OPTS (oneDNN on or off), which must be
set before TensorFlow is imported: `make bench` runs this script once with each setting.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SIZE = 256
CONVS = [
    ("conv 1 (1->64, 256x256)", SIZE, 1, 64),
    ("conv 2 (64->128, 128x128)", SIZE // 2, 64, 128),
    ("conv 3 (128->256, 64x64)", SIZE // 4, 128, 256),
]


def best_of(function, repeats: int = 3) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def sgemm_gflops(n: int = 2048) -> float:
    a, b = np.random.rand(n, n).astype(np.float32), np.random.rand(n, n).astype(np.float32)
    return 2 * n**3 / best_of(lambda: a @ b) / 1e9


def profile(batch: int) -> dict:
    import tensorflow as tf

    rows = []

    def timed(name, flop, function):
        seconds = best_of(lambda: function().numpy())
        rows.append(
            {"op": name, "ms_per_image": 1000 * seconds / batch, "gflops": flop / seconds / 1e9 if flop else None}
        )

    for name, side, cin, cout in CONVS:
        x = tf.random.uniform((batch, side, side, cin))
        w = tf.random.normal((3, 3, cin, cout)) * 0.05
        dy = tf.random.normal((batch, side, side, cout))
        flop = 2 * batch * side * side * cin * cout * 9
        timed(f"{name} forward", flop, tf.function(lambda x=x, w=w: tf.nn.conv2d(x, w, 1, "SAME")))
        timed(
            f"{name} backward-filter",
            flop,
            tf.function(
                lambda x=x, dy=dy, cin=cin, cout=cout: tf.raw_ops.Conv2DBackpropFilter(
                    input=x, filter_sizes=[3, 3, cin, cout], out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME"
                )
            ),
        )
        if cin > 1:  # the first layer needs no gradient for its input
            timed(
                f"{name} backward-input",
                flop,
                tf.function(
                    lambda w=w, dy=dy, shape=x.shape: tf.raw_ops.Conv2DBackpropInput(
                        input_sizes=list(shape), filter=w, out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME"
                    )
                ),
            )
        y = tf.random.uniform((batch, side, side, cout))

        @tf.function
        def pool_forward_backward(y=y):
            with tf.GradientTape() as tape:
                tape.watch(y)
                pooled = tf.nn.max_pool2d(tf.nn.relu(y), 2, 2, "VALID")
            return tape.gradient(pooled, y)

        timed(f"{name} relu + max-pool forward+backward", None, pool_forward_backward)
    features = tf.random.uniform((batch, 32 * 32 * 256))
    kernel = tf.Variable(tf.random.normal((32 * 32 * 256, 128)) * 0.002)

    @tf.function
    def dense_forward_backward():
        with tf.GradientTape() as tape:
            out = tf.reduce_sum(tf.nn.relu(features @ kernel))
        return tape.gradient(out, kernel)

    timed("dense 262144->128 forward+backward", 3 * 2 * batch * 32 * 32 * 256 * 128, dense_forward_backward)
    total = sum(r["ms_per_image"] for r in rows)
    return {
        "batch": batch,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "ops": rows,
        "ms_per_image": total,
        "images_per_second_ops_only": 1000 / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    result = {"sgemm_gflops": sgemm_gflops(), **profile(args.batch)}
    print(
        f"TF_ENABLE_ONEDNN_OPTS={result['onednn']}, batch {args.batch}; "
        f"numpy sgemm: {result['sgemm_gflops']:.0f} GFLOP/s"
    )
    print("| op | ms/image | GFLOP/s | share of sgemm |")
    print("|---|---:|---:|---:|")
    for row in result["ops"]:
        gflops = row["gflops"]  # None for the memory-bound ops
        rate, share = (f"{gflops:.0f}", f"{gflops / result['sgemm_gflops']:.0%}") if gflops else ("", "")
        print(f"| {row['op']} | {row['ms_per_image']:.1f} | {rate} | {share} |")
    print(f"| all ops above | {result['ms_per_image']:.1f} | | {result['images_per_second_ops_only']:.1f} img/s |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
