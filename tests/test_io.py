import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ugpnet.errors import DataError
from ugpnet.io import (atomic_path, index_by_stem, list_images, listing, pair_by_stem, read_image,
                       to_tensor, to_uint8, write_png)


def _png16(path, arr16, color_type=2):
    h, w, _ = arr16.shape

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    raw = b"".join(b"\x00" + arr16[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_rgb_roundtrip_is_exact(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", img)
    assert np.array_equal(read_image(tmp_path / "a.png"), img)
    assert np.array_equal(to_uint8(to_tensor(img)), img)


def test_grayscale_is_replicated(tmp_path):
    Image.fromarray(np.full((4, 4), 77, np.uint8)).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (4, 4, 3) and (out == 77).all()


def test_16bit_rgb_uses_round_v_over_257(tmp_path):
    arr = np.array([[[4 * 257, 5 * 257 + 128, 6 * 257 - 129]]], dtype=np.uint16)
    _png16(tmp_path / "x.png", arr)
    assert read_image(tmp_path / "x.png").tolist() == [[[4, 5, 5]]]


def test_16bit_gray(tmp_path):
    Image.fromarray(np.full((3, 3), 200 * 257, np.uint16)).save(tmp_path / "g16.png")
    assert (read_image(tmp_path / "g16.png") == 200).all()


def test_transparent_rgba_is_refused_opaque_accepted(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    assert read_image(tmp_path / "opaque.png").shape == (4, 4, 3)
    rgba[0, 0, 3] = 10
    Image.fromarray(rgba).save(tmp_path / "t.png")
    with pytest.raises(DataError, match="t.png.*transparent"):
        read_image(tmp_path / "t.png")


def test_truncated_and_garbage_files_name_the_file(tmp_path):
    write_png(tmp_path / "ok.png", np.zeros((32, 32, 3), np.uint8) + 9)
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.png").write_bytes(b"not an image")
    for name in ("cut.png", "junk.png"):
        with pytest.raises(DataError, match=name):
            read_image(tmp_path / name)


def test_list_images_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "nope")
    with pytest.raises(DataError, match="no images"):
        list_images(tmp_path)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- pairing by stem
def _touch_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(folder / n)
    return folder


def test_listing_shows_ten_then_count():
    assert listing(["b", "a"]) == "b, a"
    assert listing([f"n{i}" for i in range(12)]) == ", ".join(f"n{i}" for i in range(10)) + ", ... (2 more)"
    assert listing([]) == ""


def test_pair_by_stem_pairs_across_extensions_sorted(tmp_path):
    a = _touch_images(tmp_path / "pred", ["b.png", "a.jpg", "c.bmp"])
    b = _touch_images(tmp_path / "gt", ["c.png", "a.png", "b.png"])
    pairs = pair_by_stem(a, b, "prediction folder", "ground-truth folder")
    assert [(s, pa.name, pb.name) for s, pa, pb in pairs] == [
        ("a", "a.jpg", "a.png"), ("b", "b.png", "b.png"), ("c", "c.bmp", "c.png")]


def test_pair_by_stem_lists_missing_and_extra_names(tmp_path):
    a = _touch_images(tmp_path / "lq", ["k.png", "x_extra.png"] + [f"e{i:02d}.png" for i in range(12)])
    b = _touch_images(tmp_path / "gt", ["k.png", "m_missing.png"])
    with pytest.raises(DataError) as e:
        pair_by_stem(a, b, "degraded folder", "ground-truth folder", hint="Re-run it.")
    msg = str(e.value)
    assert f"degraded folder '{a}' and ground-truth folder '{b}' do not hold the same image names" in msg
    assert (f"1 name(s) only in ground-truth folder '{b}' (missing from the degraded folder): "
            f"m_missing;") in msg
    extra = ", ".join([f"e{i:02d}" for i in range(10)]) + ", ... (3 more)"  # sorted: e00..e11, x_extra
    assert (f"13 name(s) only in degraded folder '{a}' (extra, not in the ground-truth folder): "
            f"{extra}.") in msg
    assert msg.endswith(" Re-run it.")


def test_duplicate_stems_are_refused(tmp_path):
    a = _touch_images(tmp_path / "a", ["x.png", "x.jpg"])
    b = _touch_images(tmp_path / "b", ["x.png"])
    with pytest.raises(DataError, match=r"folder A '.*a' holds two images named 'x' \('x.jpg' and 'x.png'\)"):
        pair_by_stem(a, b, "folder A", "folder B")
    with pytest.raises(DataError, match=r"would both be written as 'x.png'"):
        index_by_stem(list_images(a), "input", hint="they would both be written as '{stem}.png'.")
    assert index_by_stem(list_images(b), "b") == {"x": b / "x.png"}

