"""Precise BN of a small model under MirroredStrategy on two virtual CPUs.

Usage: python precise_bn_mirrored.py FOLDER OUT_JSON  (FOLDER holds batches.npy)
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf


def main(folder, out):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(2)]
    )
    import keras

    from keras_slowfast import training

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        inputs = keras.Input((4, 6, 6, 3))
        x = keras.layers.Conv3D(5, 3, padding="same", name="conv1")(inputs)
        x = keras.layers.BatchNormalization(epsilon=1e-5, name="bn1")(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.Conv3D(4, (1, 3, 3), name="conv2")(x)
        x = keras.layers.BatchNormalization(epsilon=1e-5, name="bn2")(x)
        model = keras.Model(inputs, keras.layers.GlobalAveragePooling3D()(x))
    batches = np.load(os.path.join(folder, "batches.npy"))
    used = training.update_bn_stats(
        model, tf.data.Dataset.from_tensor_slices(batches), num_batches=10, strategy=strategy
    )
    assert used == len(batches), used
    bn1 = model.get_layer("bn1")
    replicas = [v.numpy() for v in bn1.moving_variance.value.values]
    report = {
        "conv1": [w.tolist() for w in model.get_layer("conv1").get_weights()],
        "bn1_mean": bn1.moving_mean.numpy().tolist(),
        "bn1_var": bn1.moving_variance.numpy().tolist(),
        "replicas_equal": len(replicas) == 2 and bool(np.array_equal(replicas[0], replicas[1])),
    }
    with open(out, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
