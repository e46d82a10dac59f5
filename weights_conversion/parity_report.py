"""Prints the parity of every reference fixture and checkpoint format.

For each folder of a fixtures directory (the layout of `golden/models`: checkpoints in
PySlowFast `.pyth`, legacy `.pyth`, Caffe2 `.pkl` and PyTorchVideo `.pyth` formats plus
`io.npz` with the reference's inputs and outputs), loads each checkpoint with
keras_slowfast and prints the maximum error of the outputs relative to the largest |logit|.

Usage:

    python weights_conversion/parity_report.py --fixtures ../shared/golden/models
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras_slowfast  # noqa: E402

PTV_ARCHS = {
    "ptv_slowfast_r50": "slowfast_r50",
    "ptv_slowfast_16x8_r101_50_50": "slowfast_16x8_r101_50_50",
    "ptv_slowfast_r50_detection": "slowfast_r50_detection",
}
FORMATS = ("pyslowfast.pyth", "pyslowfast_legacy.pyth", "caffe2.pkl", "pytorchvideo.pyth")


def _load(folder, fname):
    path = os.path.join(folder, fname)
    if fname == "pytorchvideo.pyth":
        arch = PTV_ARCHS[os.path.basename(folder)]
        return keras_slowfast.load_pytorchvideo(path, arch, include_preprocessing=False)
    config = os.path.join(folder, "config.yaml") if fname == "caffe2.pkl" else None
    return keras_slowfast.load_pyslowfast(path, config=config, include_preprocessing=False)


def _pack_boxes(rows, batch, height, width):
    per_image = [int((rows[:, 0] == b).sum()) for b in range(batch)]
    boxes = np.zeros((batch, max(per_image), 4), np.float32)
    slots, filled = [], [0] * batch
    for row in rows:
        b = int(row[0])
        boxes[b, filled[b]] = row[1:] / np.array([width, height, width, height], np.float32)
        slots.append((b, filled[b]))
        filled[b] += 1
    return boxes, slots


def report(folder, fname):
    io = np.load(os.path.join(folder, "io.npz"))
    model = _load(folder, fname)
    errors = {}
    for crop in ("train_crop", "test_crop"):
        if f"{crop}/fast" not in io.files:
            continue
        clip = np.transpose(io[f"{crop}/fast"].astype(np.float32), (0, 2, 3, 4, 1))
        expected = io[f"{crop}/output"].astype(np.float64)
        if f"{crop}/boxes" in io.files:
            boxes, slots = _pack_boxes(io[f"{crop}/boxes"], clip.shape[0], *clip.shape[2:4])
            out = model.predict({"clip": clip, "boxes": boxes}, verbose=0)
            out = np.stack([out[b, j] for b, j in slots])
        else:
            out = model.predict(clip, verbose=0)
        if f"{crop}/logits" in io.files:
            scale = np.abs(io[f"{crop}/logits"]).max()
        elif f"{crop}/boxes" in io.files:
            scale = np.abs(np.log(expected / (1 - expected))).max()
        else:
            scale = np.abs(expected).max()
        errors[crop] = float(np.abs(out - expected).max() / scale)
    return errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", required=True, help="folder of fixture folders")
    args = parser.parse_args(argv)
    print(f"{'fixture':<32}{'format':<24}{'train_crop':>12}{'test_crop':>12}{'s':>7}")
    for name in sorted(os.listdir(args.fixtures)):
        folder = os.path.join(args.fixtures, name)
        for fname in FORMATS:
            if not os.path.isfile(os.path.join(folder, fname)):
                continue
            start = time.perf_counter()
            errors = report(folder, fname)
            cells = "".join(
                f"{errors[c]:>12.1e}" if c in errors else f"{'-':>12}"
                for c in ("train_crop", "test_crop")
            )
            print(f"{name:<32}{fname:<24}{cells}{time.perf_counter() - start:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
