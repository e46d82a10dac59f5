"""detect.person_boxes: boxes read from AVA's CSV format, and the two person detectors."""

import cv2
import numpy as np
import pytest

from keras_slowfast.data.ava_video import read_frames_at_fps
from keras_slowfast.detect import person_boxes


def _hog_available():
    return hasattr(cv2, "HOGDescriptor") and hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector")


def test_opencv_detector_message_without_hog():
    if _hog_available():
        detector = person_boxes.OpenCVPersonDetector(score_thresh=0.0)
        boxes, scores = detector(np.zeros((256, 340, 3), np.uint8))
        assert boxes.shape[1:] == (4,) and len(boxes) == len(scores)
    else:
        with pytest.raises(ImportError, match="opencv-contrib-python-headless"):
            person_boxes.OpenCVPersonDetector()


def test_read_box_csv(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text(
        "video,sec,x1,y1,x2,y2,action,score\n"
        "a,902,0.1,0.2,0.3,0.4,1,0.5\n"
        "a,902,0.1,0.2,0.3,0.4,7,0.9\n"
        "a,902,0.5,0.2,0.7,0.4,,0.3\n"
        "b,3,0.5,0.2,0.7,0.4\n"
    )
    table = person_boxes.read_box_csv(path)
    assert sorted(table) == ["a", "b"]
    boxes, scores = table["a"][902]
    np.testing.assert_allclose(boxes, [[0.1, 0.2, 0.3, 0.4], [0.5, 0.2, 0.7, 0.4]], rtol=1e-6)
    np.testing.assert_allclose(scores, [0.9, 0.3], rtol=1e-6)
    assert np.isnan(table["b"][3][1]).all()
    boxes, _ = person_boxes.read_box_csv(path, video="a", score_thresh=0.5)["a"][902]
    assert len(boxes) == 1


def test_read_box_csv_names_the_line_of_a_bad_row(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("k00,1,0.1,0.1\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 1: a boxes row has 6 to 8 fields"):
        person_boxes.read_box_csv(bad)
    bad.write_text("k00,1,0.1,0.1,0.5,0.5\nk00,1.5,0.1,0.1,0.5,0.5\n")
    with pytest.raises(ValueError, match=r"line 2: `sec` must be a whole second"):
        person_boxes.read_box_csv(bad)


def _tiny_keras_hub_detector(keras_hub):
    from keras_hub.src.layers.modeling.non_max_supression import NonMaxSuppression

    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 8, 16, 16],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(None, None, 3),
    )
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=4, use_p5=False, image_shape=(None, None, 3)
    )
    converter = keras_hub.layers.RetinaNetImageConverter(image_size=(128, 128), scale=1 / 255.0)
    return keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone,
        num_classes=3,
        preprocessor=keras_hub.models.RetinaNetObjectDetectorPreprocessor(
            image_converter=converter
        ),
        bounding_box_format="yxyx",
        prediction_decoder=NonMaxSuppression(
            bounding_box_format="yxyx", from_logits=True, confidence_threshold=0.0
        ),
    )


def test_keras_hub_person_detector_plumbing(videos):
    # Random weights (no network here): this checks the plumbing, not detections.
    keras_hub = pytest.importorskip("keras_hub")
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    net = _tiny_keras_hub_detector(keras_hub)
    person = person_boxes.KerasHubPersonDetector(net, score_thresh=0.0, person_class_id=1)
    assert person.image_size == 128
    frame = read_frames_at_fps(videos / "bikes.mp4", [150])[0]  # 272 x 640
    boxes, scores = person(frame)
    # Independently: the frame padded to 640 x 640 at the top left, resized to 128, the
    # detector's class-1 boxes (y1, x1, y2, x2 in 128-pixel units) mapped back.
    square = np.zeros((640, 640, 3), np.uint8)
    square[:272] = frame
    small = cv2.resize(square, (128, 128), interpolation=cv2.INTER_LINEAR)
    raw = net.predict(small[None].astype(np.float32), verbose=0)
    n = int(raw["num_detections"][0])
    keep = raw["labels"][0][:n] == 1
    yxyx = raw["boxes"][0][:n][keep] * 5.0  # back to 640-pixel units
    expected = np.stack(
        [yxyx[:, 1] / 640, yxyx[:, 0] / 272, yxyx[:, 3] / 640, yxyx[:, 2] / 272], axis=1
    ).clip(0, 1)
    valid = (expected[:, 2] > expected[:, 0]) & (expected[:, 3] > expected[:, 1])
    order = np.argsort(-raw["confidence"][0][:n][keep][valid], kind="stable")
    np.testing.assert_allclose(boxes, expected[valid][order], atol=1e-5)
    np.testing.assert_allclose(scores, raw["confidence"][0][:n][keep][valid][order], atol=1e-6)
    assert np.all((0 <= boxes) & (boxes <= 1))


def test_docstring_examples():
    import doctest

    assert doctest.testmod(person_boxes).failed == 0
