"""`vitlens show`: one PNG grid of the prepared inputs; bad files one line each, the good ones still drawn."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.robustness.harness import assert_clean_failure, assert_no_temp_files, invoke
from vitlens_cli.preview import LABEL_HEIGHT, grid_shape
from vitlens_cli.thumbnails import SIZE


def _pixels(path: Path) -> np.ndarray:
    img = Image.open(path)
    assert img.format == "PNG"
    return np.asarray(img.convert("RGB"), dtype=np.float64)


def _cell(px: np.ndarray, index: int, columns: int) -> np.ndarray:
    top, left = (index // columns) * (SIZE + LABEL_HEIGHT), (index % columns) * SIZE
    return px[top:top + SIZE, left:left + SIZE]


def _coloured(tile: np.ndarray) -> float:
    return float(((tile.max(axis=-1) - tile.min(axis=-1)) > 30).mean())


def test_grid_of_every_modality(fixtures, tmp_path):
    files = [fixtures / "clouds" / "owl_rgb.ply", fixtures / "meshes" / "chair_0002.off",
             fixtures / "depth" / "NYU0001_depth.png", fixtures / "audio" / "dog.flac",
             fixtures / "clouds" / "ycb_layout_test.h5"]
    out = tmp_path / "grid.png"
    res = invoke(["show", *files, "--modality", "depth", "--out", out], timeout=300)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == f"wrote {out}: 5 file(s), 3x2 grid"
    px = _pixels(out)
    assert px.shape[:2] == (2 * (SIZE + LABEL_HEIGHT), 3 * SIZE)
    tiles = [_cell(px, i, 3) for i in range(6)]
    for i, tile in enumerate(tiles[:5]):
        assert _coloured(tile) > 0.01 and len(np.unique(tile.reshape(-1, 3), axis=0)) > 32, files[i]
    assert (tiles[5] == 255).all()  # the unused cell stays white
    assert_no_temp_files(tmp_path)


@pytest.mark.parametrize("count,shape", [(1, (1, 1)), (2, (2, 1)), (4, (2, 2)), (5, (3, 2)), (10, (4, 3))])
def test_grid_shape(count, shape):
    columns, rows = grid_shape(count)
    assert (columns, rows) == shape and columns * rows >= count and columns * (rows - 1) < count


def test_image_is_shown_with_its_normalisation_undone(tmp_path):
    # A flat colour survives resize and crop; the tile shows it only if the CLIP mean/std are undone right.
    Image.new("RGB", (300, 260), (200, 30, 90)).save(tmp_path / "flat.png")
    out = tmp_path / "out.png"
    res = invoke(["show", tmp_path / "flat.png", "--modality", "image", "--out", out])
    assert res.exit_code == 0, res.stderr
    tile = _cell(_pixels(out), 0, 1)
    assert np.abs(tile[SIZE // 2, SIZE // 2] - (200, 30, 90)).max() <= 2


def test_audio_tone_lies_on_its_mel_bin(tmp_path):
    """A 1 kHz tone is the brightest row at the height of its mel bin (low frequencies at the bottom)."""
    import soundfile as sf

    rate = 16000
    t = np.arange(5 * rate) / rate
    sf.write(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * 1000 * t), rate)
    out = tmp_path / "out.png"
    res = invoke(["show", tmp_path / "tone.wav", "--out", out])
    assert res.exit_code == 0, res.stderr
    brightness = _cell(_pixels(out), 0, 1).sum(axis=-1)
    row = int(np.argmax(np.median(brightness, axis=1)))
    # Kaldi's mel bank: 128 bins evenly spaced in mel between 20 Hz and the Nyquist frequency.
    mel = lambda f: 1127 * math.log(1 + f / 700)  # noqa: E731
    centre_bin = (mel(1000) - mel(20)) / (mel(rate / 2) - mel(20)) * 129 - 1
    expected_row = (127 - centre_bin + 0.5) / 128 * SIZE
    assert abs(row - expected_row) <= 4, (row, expected_row)


def test_model_contract_is_applied(fixtures, tmp_path):
    # the tiny model's 3D contract and the released default draw different samplings of the same mesh
    mesh = fixtures / "meshes" / "chair_0002.off"
    res_default = invoke(["show", mesh, "--out", tmp_path / "a.png"], timeout=120)
    res_tiny = invoke(["show", mesh, "--model", "tiny", "--out", tmp_path / "b.png"], timeout=120)
    assert res_default.exit_code == res_tiny.exit_code == 0
    assert np.abs(_pixels(tmp_path / "a.png") - _pixels(tmp_path / "b.png")).mean() > 0.5


def _bad(tmp_path: Path, name: str, content: bytes | None) -> Path:
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("name,content,reason", [
    ("missing.ply", "absent", "no such file"),
    ("empty.ply", b"", "empty file"),
    ("noise.flac", b"\x00garbage" * 50, "audio"),
    ("folder.ply", None, "folder"),
    ("cloud.npy", np.zeros(3).tobytes(), "name the modality"),
    ("notes.xyz1", b"1 2 3\n", "unsupported file type"),
])
def test_bad_file_is_one_line_and_the_rest_is_drawn(fixtures, tmp_path, name, content, reason):
    bad = tmp_path / name if content == "absent" else _bad(tmp_path, name, content)
    out = tmp_path / "out.png"
    res = invoke(["show", fixtures / "meshes" / "chair_0002.off", bad, "--out", out], timeout=120)
    line = assert_clean_failure(res, exit_code=1, names=[str(bad), reason], prefix="skipped:")
    assert line.startswith(f"skipped: {bad}: ")
    assert _pixels(out).shape[:2] == (SIZE + LABEL_HEIGHT, SIZE)
    assert_no_temp_files(tmp_path)


def test_nothing_readable_writes_nothing(tmp_path):
    out = tmp_path / "out.png"
    res = invoke(["show", tmp_path / "a.ply", tmp_path / "b.flac", "--out", out])
    assert res.exit_code == 1
    assert [ln.split(":")[0] for ln in res.lines] == ["skipped", "skipped", "nothing to show"]
    assert not out.exists()


def test_unknown_model_is_one_error(fixtures, tmp_path):
    res = invoke(["show", fixtures / "meshes" / "chair_0002.off", "--model", "no-such", "--out", tmp_path / "o.png"])
    assert_clean_failure(res, exit_code=2, names=["no-such", "unknown model"])


def test_model_without_the_modality(fixtures, tmp_path):
    res = invoke(["show", fixtures / "audio" / "dog.flac", "--model", "tiny", "--out", tmp_path / "o.png"])
    assert_clean_failure(res, exit_code=1, names=["dog.flac", "no audio tower"], prefix="skipped:")


def test_output_folder_refused_before_work(fixtures, tmp_path):
    res = invoke(["show", fixtures / "meshes" / "chair_0002.off", "--out", tmp_path])
    assert_clean_failure(res, exit_code=2, names=[str(tmp_path), "folder"])
