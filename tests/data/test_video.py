"""Frames of tiny videos written here with PyAV, at the windows the official AudioSet loader maps them to."""
from __future__ import annotations

import numpy as np
import pytest

from vitlens_cli.data.video import read_frame
from vitlens_cli.errors import VitlensError

PALETTE = ((230, 30, 30), (30, 230, 30), (30, 30, 230), (230, 230, 30), (30, 230, 230), (230, 30, 230),
           (240, 240, 240), (120, 60, 0))
_W, _H = 64, 48


def write_video(path, seconds, fps=4, codec="mpeg4", colours=PALETTE, numbered=True, faststart=False):
    """``seconds`` s at ``fps`` of 64 x 48 frames, yuv420p: the top half the colour of its second
    (``colours[floor(t)]``), with ``numbered`` the bottom half grey ``20 · (frame index mod 12)``, else the
    same colour. Keyframes are 2 s apart (no scene-cut ones), so most frames are reached by decoding
    forward; mpeg4 has B-frames (packets out of presentation order), libx264 is lossless (qp 0). With
    ``faststart`` the index (moov) comes before the frames, as streamed files have it, else after them."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    if codec == "libx264":
        options = {"qp": "0", "x264-params": f"keyint={2 * fps}:min-keyint={2 * fps}:scenecut=0"}
    else:
        options = {"b": "4M", "g": str(2 * fps), "bf": "2", "sc_threshold": "1000000000"}
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as out:
        stream = out.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = _W, _H, "yuv420p"
        for n in range(int(seconds * fps)):
            rgb = np.empty((_H, _W, 3), np.uint8)
            rgb[:] = colours[n // fps]
            if numbered:
                rgb[_H // 2:] = 20 * (n % 12)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def second_of(rgb: np.ndarray) -> int:
    """Which second's colour the frame's top half shows (the nearest of the palette)."""
    mean = rgb[4:_H // 2 - 4, 4:-4].reshape(-1, 3).mean(0)
    return int(np.argmin([np.abs(mean - np.array(c)).max() for c in PALETTE]))


def number_of(rgb: np.ndarray) -> int:
    return int(round(rgb[_H // 2 + 4:-4, 4:-4].mean() / 20))


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_a_window_pairs_the_frame_of_its_start_second(tmp_path, codec):
    video = write_video(tmp_path / "clip.mp4", 3, codec=codec)
    for start in (0.0, 0.6, 1.0, 1.9, 2.3):
        rgb = read_frame(video, start)
        assert rgb.shape == (_H, _W, 3) and rgb.dtype == np.uint8
        assert second_of(rgb) == int(start)
        # codec tolerance: the palette is 200 apart per channel, the numbering 20
        assert np.abs(rgb[4:_H // 2 - 4, 4:-4].astype(int) - PALETTE[int(start)]).max() < 40


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_frame_index_is_decord_get_clip_first_at_the_boundaries(tmp_path, codec):
    """decord_get_clip: max(0, int(start · fps)) at 4 fps; a window starting past the end takes the last."""
    video = write_video(tmp_path / "clip.mp4", 3, codec=codec)
    expected = {0.0: 0, 0.2499: 0, 0.25: 1, 0.5: 2, 0.9999: 3, 1.0: 4, 2.7499: 10, 2.75: 11, 2.99: 11, 3.0: 11,
                9.5: 11, -0.5: 0}
    got = {start: number_of(read_frame(video, start)) for start in expected}
    assert got == expected
    # each frame at its own time, the mpeg4 B-frames shown before the keyframe decoded ahead of them included
    assert [number_of(read_frame(video, k / 4)) for k in range(12)] == list(range(12))


def test_a_seek_that_lands_past_the_frame_decodes_it_from_the_start(tmp_path, monkeypatch):
    from vitlens_cli.data import video as video_module

    video = write_video(tmp_path / "clip.mp4", 3)
    real, seeks = video_module._decode_to, []

    def overshooting(container, stream, seek, target):  # the first seek lands on the last keyframe
        seeks.append(seek)
        return real(container, stream, 10**12 if len(seeks) == 1 else seek, target)

    monkeypatch.setattr(video_module, "_decode_to", overshooting)
    assert number_of(read_frame(video, 1.0)) == 4 and len(seeks) == 2


def test_frames_are_read_the_same_way_each_time(tmp_path):
    video = write_video(tmp_path / "clip.mp4", 3)
    assert np.array_equal(read_frame(video, 1.3), read_frame(video, 1.3))
    assert not np.array_equal(read_frame(video, 1.3), read_frame(video, 2.3))


def test_unreadable_videos_are_named(tmp_path):
    import soundfile

    with pytest.raises(VitlensError, match=r"missing\.mp4: no such file"):
        read_frame(tmp_path / "missing.mp4", 0.0)
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(VitlensError, match=r"text\.mp4: not a decodable video"):
        read_frame(tmp_path / "text.mp4", 0.0)
    data = write_video(tmp_path / "cut.mp4", 3).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # the index (moov) is written last: lost
    with pytest.raises(VitlensError, match=r"cut\.mp4: not a decodable video"):
        read_frame(tmp_path / "cut.mp4", 0.0)
    data = write_video(tmp_path / "cut.mp4", 3, faststart=True).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # the index kept, half the frames gone
    with pytest.raises(VitlensError, match=r"cut\.mp4: truncated: [1-9] of 12 video frames present"):
        read_frame(tmp_path / "cut.mp4", 0.0)
    # FFmpeg probes the content, not the name: a WAV file called .mp4 opens, with no video in it
    soundfile.write(str(tmp_path / "sound.mp4"), np.zeros(1600, np.float32), 16000, format="WAV")
    with pytest.raises(VitlensError, match=r"sound\.mp4: no video stream"):
        read_frame(tmp_path / "sound.mp4", 0.0)
