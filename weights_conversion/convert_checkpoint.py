"""Converts a PySlowFast / PyTorchVideo / Caffe2 checkpoint to a Keras `.weights.h5`.

From a local file:

    python weights_conversion/convert_checkpoint.py SLOWFAST_8x8_R50.pkl \\
        --model slowfast_8x8_r50 --output slowfast_8x8_r50_k400.weights.h5

or from the published checkpoint of a preset (downloaded, converted and cached in
`$KERAS_HOME/models/keras_slowfast`, then copied to `--output`):

    python weights_conversion/convert_checkpoint.py --model slowfast_8x8_r50 --weights k400 \\
        --output slowfast_8x8_r50_k400.weights.h5

It prints the checkpoint format, the preset, how many tensors were transferred (strictly:
every tensor used once, every Keras weight assigned), the trainable parameter count (and
whether it equals the PyTorch model's count recorded in the presets table), and an
output check: the written file is loaded into a fresh model whose output must equal the
converted model's. With `--video`, the converted model also classifies that video.
"""

import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from keras_slowfast import hub, presets  # noqa: E402


def _convert(args):
    if args.checkpoint:
        model, summary = hub.convert_checkpoint(args.checkpoint, args.output, args.model)
        return model, summary, args.checkpoint
    preset = presets.find_preset(presets.get_preset(args.model).architecture, args.weights)
    path, info = hub.fetch(preset.name)
    shutil.copyfile(path, args.output)
    model = hub.build(
        preset.name, args.output, width_per_group=info["width_per_group"], classes=info["classes"]
    )
    return model, info, info["url"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", help="a .pyth or .pkl file (else --weights)")
    parser.add_argument(
        "--model",
        required=True,
        choices=presets.preset_names() + presets.architecture_names(),
        metavar="PRESET",
        help="a preset name or architecture key",
    )
    parser.add_argument("--weights", default=None, help="a published weights name (k400, ava)")
    parser.add_argument("--output", required=True, help="the .weights.h5 file to write")
    parser.add_argument("--video", default=None, help="also classify this video (classifiers)")
    args = parser.parse_args(argv)
    if bool(args.checkpoint) == bool(args.weights):
        parser.error("give a checkpoint file or --weights, not both")

    model, summary, source = _convert(args)
    print(f"source:     {source}")
    print(f"format:     {summary['format']}")
    print(f"preset:     {summary['preset']}")
    print(f"tensors:    {summary['tensors']}")
    preset = presets.get_preset(summary["preset"])
    expected = preset.params
    full_size = summary["width_per_group"] == 64 and summary["classes"] == preset.classes
    note = ""
    if expected is not None and full_size:
        same = summary["params"] == expected
        note = " (= the PyTorch model's)" if same else f" (!= {expected:,})"
    print(f"parameters: {summary['params']:,}{note}")
    print(f"width:      {summary['width_per_group']}, classes: {summary['classes']}")
    print(f"written:    {args.output}")
    check = hub.check_weights_file(
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
    if args.video and preset.kind == presets.CLASSIFIER:
        from keras_slowfast.inference import classify_video
        from keras_slowfast.labels import decode_predictions

        probabilities = classify_video(model, args.video, preset.name)
        for index, name, score in decode_predictions(probabilities[None], top=5)[0]:
            print(f"  {score:8.4f}  {name}  (class {index})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
