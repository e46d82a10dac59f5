"""Data pipelines: PySlowFast-exact clip sampling, PyAV decoding, JPEG-frame TFRecords, AVA.

The package exports what its modules declare public (their `__all__`).
"""

from keras_slowfast.data.ava import ava_dataset
from keras_slowfast.data.ava import (
    scale_short_side as scale_short_side,  # deprecated: use resize_short_side
)
from keras_slowfast.data.ava_annotations import (
    AVA_FPS,
    AVA_NUM_CLASSES,
    AVAAnnotations,
    AVAKeyframe,
    ava_sequence,
    load_ava_annotations,
    read_box_csvs,
    read_frame_lists,
)
from keras_slowfast.data.ava_extract import (
    ExtractionResult,
    extract_ava_frames,
    read_video_paths,
)
from keras_slowfast.data.ava_transforms import ava_transform
from keras_slowfast.data.ava_video import (
    count_frames_at_fps,
    iter_frames_at_fps,
    read_frames_at_fps,
)
from keras_slowfast.data.kinetics import kinetics_dataset, read_video_list
from keras_slowfast.data.sampling import (
    VideoInfo,
    frame_indices_from_timestamps,
    segment_indices,
    slow_pathway_indices,
    start_end_index,
    temporal_sample_indices,
    torch_linspace,
)
from keras_slowfast.data.tfrecord import (
    frame_indices_from_timestamps_tf,
    frame_tfrecord_dataset,
    torch_linspace_tf,
    write_frame_tfrecords,
)
from keras_slowfast.data.transforms import (
    KINETICS_MEAN,
    KINETICS_STD,
    normalize,
    resize_short_side,
    short_side_scale_size,
    uniform_crop_offset,
)
from keras_slowfast.data.video import (
    DecodeErrorCounter,
    VideoReadError,
    clip_frame_indices,
    decode_all_frames,
    decode_timestamps,
    is_stream_url,
    probe_video,
    read_clip,
    read_test_views,
)

__all__ = [
    # ava (which re-exports the names of ava_annotations and ava_transforms)
    "ava_dataset",
    # ava_annotations
    "AVA_FPS",
    "AVA_NUM_CLASSES",
    "AVAAnnotations",
    "AVAKeyframe",
    "ava_sequence",
    "load_ava_annotations",
    "read_box_csvs",
    "read_frame_lists",
    # ava_transforms
    "ava_transform",
    # ava_extract
    "ExtractionResult",
    "extract_ava_frames",
    "read_video_paths",
    # ava_video
    "count_frames_at_fps",
    "iter_frames_at_fps",
    "read_frames_at_fps",
    # kinetics
    "kinetics_dataset",
    "read_video_list",
    # sampling
    "VideoInfo",
    "frame_indices_from_timestamps",
    "segment_indices",
    "slow_pathway_indices",
    "start_end_index",
    "temporal_sample_indices",
    "torch_linspace",
    # tfrecord
    "frame_indices_from_timestamps_tf",
    "frame_tfrecord_dataset",
    "torch_linspace_tf",
    "write_frame_tfrecords",
    # transforms
    "KINETICS_MEAN",
    "KINETICS_STD",
    "normalize",
    "resize_short_side",
    "short_side_scale_size",
    "uniform_crop_offset",
    # video
    "DecodeErrorCounter",
    "VideoReadError",
    "clip_frame_indices",
    "decode_all_frames",
    "decode_timestamps",
    "is_stream_url",
    "probe_video",
    "read_clip",
    "read_test_views",
]
