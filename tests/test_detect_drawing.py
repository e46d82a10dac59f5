"""detect.drawing: boxes and label lines on a frame, and the annotated video's frames."""

import av
import numpy as np

from keras_slowfast.detect import drawing
from keras_slowfast.detect.action_detections import ActionDetections

RED, BLUE = (255, 64, 64), (64, 200, 255)  # the first two colours of the palette


def _decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, stream.average_rate


def test_draw_detections_outlines_boxes_and_labels_them():
    frame = np.zeros((240, 320, 3), np.uint8)
    boxes = np.array([[0.1, 0.5, 0.4, 0.9], [0.6, 0.5, 0.9, 0.9]])
    out = drawing.draw_detections(frame, boxes, [["stand 0.90"], []])
    assert out is frame  # in place
    # Box edges at round(v * (side - 1)): box 0 x 32..128, y 120..215; box 1 x 191..287.
    assert (frame[215, 40:120] == RED).all() and (frame[215, 200:280] == BLUE).all()
    assert (frame[130:205, 40:120] == 0).all() and (frame[130:205, 200:280] == 0).all()
    # Box 0's label: a block of its colour, with dark text, above its top edge.
    block = frame[105:118, 34:60]
    assert (block == RED).all(axis=-1).mean() > 0.3 and (block.max(axis=-1) < 60).any()
    # Box 1 has no label: nothing above it.
    assert (frame[:118, 191:290] == 0).all()


def test_draw_detections_puts_the_label_inside_a_box_at_the_top():
    frame = np.zeros((240, 320, 3), np.uint8)
    drawing.draw_detections(frame, np.array([[0.1, 0.0, 0.5, 0.5]]), [["sit 0.50"]])
    # No room above: the block starts under the top edge, inside the box.
    inside = frame[4:14, 34:60]
    assert (inside == RED).all(axis=-1).mean() > 0.3 and (inside.max(axis=-1) < 60).any()


def test_write_annotated_video_draws_each_second_on_its_nearest_frames(videos, tmp_path):
    video = videos / "k00.mp4"  # 300 frames at 30 fps: 10 keyframes
    found = ActionDetections(
        video="k00",
        seconds=np.array([2, 9], np.int64),
        boxes=np.array([[0.2, 0.2, 0.6, 0.8], [0.3, 0.1, 0.7, 0.85]], np.float32),
        scores=np.array([[0.9, 0.1], [0.2, 0.8]], np.float32),
        class_names=["stand", "sit"],
        top_k=1,
        score_thresh=0.0,
        keyframes=10,
    )
    path = tmp_path / "annotated.mp4"
    assert drawing.write_annotated_video(video, found, path, progress=False) == str(path)
    src, src_rate = _decode(video)
    out, out_rate = _decode(path)
    assert out.shape == src.shape and out_rate == src_rate
    diff = np.abs(out.astype(np.int16) - src).max(axis=-1)
    # Bottom edges: box 0 at y round(0.8 * 255) = 204, box 1 at y round(0.85 * 255) = 217.
    edge0 = diff[:, 203:206, 80:190].mean(axis=(1, 2))
    edge1 = diff[:, 216:219, 110:225].mean(axis=(1, 2))
    # Frame i (time i / 30 s) shows second floor(i / 30 + 0.5): second 2 is frames 45-74;
    # second 9, the last keyframe, also takes the frames past 9.5 s: frames 255-299.
    assert np.flatnonzero(edge0 > 40).tolist() == list(range(45, 75))
    assert np.flatnonzero(edge1 > 40).tolist() == list(range(255, 300))
    assert max(edge0[:45].max(), edge0[75:].max(), edge1[:255].max()) < 15  # re-encoding only


def test_docstring_examples():
    import doctest

    assert doctest.testmod(drawing).failed == 0
