"""Converts a PySlowFast / PyTorchVideo / Caffe2 checkpoint to a Keras `.weights.h5`.

From a local file:

    python weights_conversion/convert_checkpoint.py SLOWFAST_8x8_R50.pkl \\
        --model slowfast_8x8_r50 --output slowfast_8x8_r50_k400.weights.h5

or from the published checkpoint of a variant (downloaded, converted and cached in
`$KERAS_HOME/models/keras_slowfast`, then copied to `--output`):

    python weights_conversion/convert_checkpoint.py --model slowfast_8x8_r50 --weights k400 \\
        --output slowfast_8x8_r50_k400.weights.h5

It prints the checkpoint format, the variant, how many tensors were transferred (strictly:
every tensor used once, every Keras weight assigned), the trainable parameter count (and
whether it equals the PyTorch model's published count for the full-size variants), and an
output check: the written file is loaded into a fresh model whose output must equal the
converted model's. With `--video`, the converted model also classifies that video.
"""

import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from keras_slowfast.models.variants import VARIANTS  # noqa: E402
from keras_slowfast.weights import registry  # noqa: E402

# Parameters of the full-size PyTorch models (BatchNorm statistics excluded).
PYTORCH_PARAMS = {
    "slowfast_4x16_r50": 34_480_216,
    "slowfast_8x8_r50": 34_566_488,
    "slowfast_nln_8x8_r50": 41_838_680,
    "slowfast_8x8_r101": 62_826_968,
    "slowfast_16x8_r101_50_50": 53_774_808,
    "slowfast_nln_16x8_r101_50_50": 60_080_088,
    "slow_8x8_r50": 32_454_096,
    "slow_4x16_r50": 32_454_096,  # the same network on 4 frames
    "ava_slowfast_32x2_r101_50_50": 59_342_488,
}


def _convert(args):
    if args.checkpoint:
        model, summary = registry.convert_checkpoint(args.checkpoint, args.output, args.model)
        return model, summary, args.checkpoint
    path, info = registry.fetch(args.model, args.weights)
    shutil.copyfile(path, args.output)
    model = registry.build(
        args.model, args.output, width_per_group=info["width_per_group"], classes=info["classes"]
    )
    return model, info, info["url"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", help="a .pyth or .pkl file (else --weights)")
    parser.add_argument("--model", required=True, choices=sorted(VARIANTS))
    parser.add_argument("--weights", default=None, help="a published weights name (k400, ava)")
    parser.add_argument("--output", required=True, help="the .weights.h5 file to write")
    parser.add_argument("--video", default=None, help="also classify this video (classifiers)")
    args = parser.parse_args(argv)
    if bool(args.checkpoint) == bool(args.weights):
        parser.error("give a checkpoint file or --weights, not both")

    model, summary, source = _convert(args)
    print(f"source:     {source}")
    print(f"format:     {summary['format']}")
    print(f"variant:    {summary['variant']}")
    print(f"tensors:    {summary['tensors']}")
    expected = PYTORCH_PARAMS.get(args.model)
    full_size = summary["width_per_group"] == 64 and summary["classes"] in (400, 80)
    note = ""
    if expected is not None and full_size:
        same = summary["params"] == expected
        note = " (= the PyTorch model's)" if same else f" (!= {expected:,})"
    print(f"parameters: {summary['params']:,}{note}")
    print(f"width:      {summary['width_per_group']}, classes: {summary['classes']}")
    print(f"written:    {args.output}")
    check = registry.check_weights_file(
        model,
        args.output,
        args.model,
        width_per_group=summary["width_per_group"],
        classes=summary["classes"],
    )
    ok = check["finite"] and check["max_abs_diff"] == 0.0 and not note.startswith(" (!=")
    print(
        f"check:      reloaded output {check['output_shape']}, max abs diff "
        f"{check['max_abs_diff']:.3g}, finite {check['finite']} -> {'OK' if ok else 'FAILED'}"
    )
    if args.video and VARIANTS[args.model]["kind"] == "classifier":
        from keras_slowfast.inference import classify_video
        from keras_slowfast.labels import decode_predictions

        probabilities = classify_video(model, args.video, args.model, views=30)
        for index, name, score in decode_predictions(probabilities[None], top=5)[0]:
            print(f"  {score:8.4f}  {name}  (class {index})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
