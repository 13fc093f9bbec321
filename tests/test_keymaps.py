"""Checkpoint key maps with SYNTHETIC state dicts in each official layout.

Each official layout is produced from our own state dict by an independent rename table written
here (from the official sources: UGPNet models/resmodule.py, models/fusmodule.py,
archs/RRDBNet.py; xinntao/ESRGAN RRDBNet_arch.py and the old architecture.py layout as converted
by its transer_RRDB_models.py), saved with torch.save, loaded back through ugpnet.models.keymaps
and compared tensor by tensor.
"""
import re
import sys

import pytest
import torch

from ugpnet.checkpoints import load_state_dict_strict
from ugpnet.errors import CheckpointError
from ugpnet.models import keymaps as km
from ugpnet.models.backbones import HINet, NAFNet, RRDBNet, UNet
from ugpnet.models.fusion import FusionModule
from ugpnet.models.restoration import RestorationModule

TINY_NAF = dict(width=8, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 1], dec_blk_nums=[1, 1, 1, 1])
TINY_RRDB = dict(num_feat=16, num_block=2, num_grow_ch=8, scale=8)


def randomized(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return module


def fresh_copy_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ------------------------------------------------------------------ independent rename tables
def to_esrgan(key: str) -> str:
    """ours (BasicSR) -> xinntao/ESRGAN RRDBNet_arch.py"""
    parts = key.split(".")
    if parts[0] == "body":
        parts[0] = "RRDB_trunk"
        parts[2] = parts[2].upper()  # rdb1 -> RDB1
    table = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2",
             "conv_up3": "upconv3", "conv_hr": "HRconv"}
    parts[0] = table.get(parts[0], parts[0])
    return ".".join(parts)


def to_esrgan_old(key: str, num_block: int, num_up: int) -> str:
    """ours -> ESRGAN old arch (model.N sequential)"""
    parts = key.split(".")
    name, param = parts[0], parts[-1]
    if name == "body":
        return f"model.1.sub.{parts[1]}.{parts[2].upper()}.{parts[3]}.0.{param}"
    index = {"conv_first": 0, "conv_hr": 3 * num_up + 2, "conv_last": 3 * num_up + 4}
    for k in range(1, num_up + 1):
        index[f"conv_up{k}"] = 3 * k
    if name == "conv_body":
        return f"model.1.sub.{num_block}.{param}"
    return f"model.{index[name]}.{param}"


def to_official_resmodule(key: str) -> str:
    """ours -> UGPNet ResModule (regression + ResidualEncoder)"""
    if key.startswith("backbone."):
        return "regression." + key[len("backbone."):]
    if key.startswith("structure_encoder."):
        return "encoder.input_encoder." + key[len("structure_encoder."):]
    if key.startswith("merging_net.blocks."):
        return "encoder.merge_decoder." + key[len("merging_net.blocks."):]
    if key.startswith("merging_net.to_image.conv."):
        return "encoder.to_img.body.0." + key[len("merging_net.to_image.conv."):]
    raise AssertionError(key)


def to_official_fusmodule(key: str) -> str:
    """ours -> UGPNet FusionNet"""
    if key.startswith("in_conv."):
        return "conv." + key[len("in_conv."):]
    if key.startswith("out_conv."):
        return "last." + key[len("out_conv."):]
    _, n, conv, param = key.split(".")
    return f"body.{n}.body.{ {'conv1': 0, 'conv2': 2}[conv] }.{param}"


def renamed(module, fn):
    return {fn(k): v.clone() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------ tests
def test_official_key_names_exist():
    """Sample names taken from the official sources must be ours verbatim (identity maps)."""
    naf = set(NAFNet(**TINY_NAF).state_dict())
    assert {"intro.weight", "encoders.0.0.sca.1.weight", "downs.0.weight", "ups.0.0.weight",
            "middle_blks.0.norm2.bias", "decoders.3.0.beta", "ending.weight"} <= naf
    hin = set(HINet(wf=8, hin_position_left=3, hin_position_right=4).state_dict())
    assert {"conv_01.weight", "conv_02.bias", "down_path_1.3.norm.weight",
            "down_path_2.0.csff_enc.weight", "down_path_2.3.csff_dec.bias",
            "down_path_1.0.downsample.weight", "up_path_2.0.up.weight",
            "up_path_1.3.conv_block.identity.weight", "skip_conv_2.3.bias", "sam12.conv3.weight",
            "cat12.weight", "last.bias"} <= hin
    assert "down_path_1.0.norm.weight" not in hin and "down_path_1.4.downsample.weight" not in hin
    rr = set(RRDBNet(**TINY_RRDB).state_dict())
    assert {"conv_first.weight", "body.1.rdb3.conv5.bias", "conv_body.weight", "conv_up1.weight",
            "conv_up2.weight", "conv_up3.weight", "conv_hr.weight", "conv_last.bias"} <= rr
    assert "conv_up4.weight" not in rr


@pytest.mark.parametrize("wrapper", ["raw", "params", "params_ema", "state_dict", "module"])
@pytest.mark.parametrize("cls,kw", [(NAFNet, TINY_NAF), (HINet, dict(wf=8)),
                                    (UNet, dict(base_channels=8, depth=2)), (RRDBNet, TINY_RRDB)])
def test_pretrained_backbone_roundtrip(tmp_path, cls, kw, wrapper):
    src = randomized(cls(**kw))
    sd = src.state_dict()
    if wrapper == "module":
        obj = {f"module.{k}": v for k, v in sd.items()}
    elif wrapper == "raw":
        obj = sd
    else:
        obj = {wrapper: sd, "iter": torch.tensor(7)}
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    dst = cls(**kw)
    km.load_pretrained_backbone(path, dst)
    fresh_copy_equal(src, dst)


def test_params_ema_preferred_over_params(tmp_path):
    a, b = randomized(NAFNet(**TINY_NAF), 1), randomized(NAFNet(**TINY_NAF), 2)
    torch.save({"params": a.state_dict(), "params_ema": b.state_dict()}, tmp_path / "w.pth")
    dst = NAFNet(**TINY_NAF)
    km.load_pretrained_backbone(tmp_path / "w.pth", dst)
    fresh_copy_equal(b, dst)
    km.load_pretrained_backbone(tmp_path / "w.pth", dst, prefer=("params",))
    fresh_copy_equal(a, dst)


@pytest.mark.parametrize("layout", ["basicsr", "esrgan", "esrgan_old"])
def test_rrdbnet_layouts(tmp_path, layout):
    src = randomized(RRDBNet(**TINY_RRDB))
    if layout == "basicsr":
        sd = {"params_ema": src.state_dict()}
    elif layout == "esrgan":
        sd = renamed(src, to_esrgan)
        assert "RRDB_trunk.1.RDB3.conv5.weight" in sd and "upconv3.bias" in sd
    else:
        sd = renamed(src, lambda k: to_esrgan_old(k, 2, 3))
        assert "model.1.sub.0.RDB1.conv1.0.weight" in sd and "model.1.sub.2.weight" in sd
        assert "model.13.weight" in sd  # conv_last at x8
    torch.save(sd, tmp_path / "rrdb.pth")
    dst = RRDBNet(**TINY_RRDB)
    km.load_pretrained_backbone(tmp_path / "rrdb.pth", dst)
    fresh_copy_equal(src, dst)


def test_esrgan_old_arch_x4():
    src = randomized(RRDBNet(num_feat=8, num_block=3, num_grow_ch=4, scale=4))
    sd = renamed(src, lambda k: to_esrgan_old(k, 3, 2))
    assert {"model.3.weight", "model.6.weight", "model.8.weight", "model.10.weight"} <= set(sd)
    dst = RRDBNet(num_feat=8, num_block=3, num_grow_ch=4, scale=4)
    load_state_dict_strict(dst, km.rrdbnet_keymap(sd), "old")
    fresh_copy_equal(src, dst)


@pytest.mark.parametrize("backbone", ["nafnet", "hinet"])
def test_official_resmodule_roundtrip(tmp_path, backbone):
    make = (lambda: NAFNet(**TINY_NAF)) if backbone == "nafnet" else (lambda: HINet(wf=8))
    src = randomized(RestorationModule(make()))
    sd = renamed(src, to_official_resmodule)
    assert "encoder.merge_decoder.1.conv.2.weight" in sd and "encoder.to_img.body.0.bias" in sd
    assert "encoder.input_encoder.conv.0.weight" in sd
    path = tmp_path / "resmodule_best_20000.pth"
    torch.save(sd, path)
    dst = RestorationModule(make())
    km.load_official_restoration(path, dst)
    fresh_copy_equal(src, dst)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(src.eval()(x)[0], dst.eval()(x)[0])


def test_official_rrdb_resmodule_roundtrip(tmp_path):
    src = randomized(RestorationModule(RRDBNet(**TINY_RRDB)))
    torch.save({"params_ema": src.backbone.state_dict(), "params": {}}, tmp_path / "rrdb.pth")
    dst = RestorationModule(RRDBNet(**TINY_RRDB))
    km.load_official_restoration(tmp_path / "rrdb.pth", dst)
    fresh_copy_equal(src, dst)


def test_backbone_from_resmodule_file(tmp_path):
    src = randomized(RestorationModule(NAFNet(**TINY_NAF)))
    torch.save(renamed(src, to_official_resmodule), tmp_path / "res.pth")
    dst = NAFNet(**TINY_NAF)
    km.load_pretrained_backbone(tmp_path / "res.pth", dst)
    fresh_copy_equal(src.backbone, dst)


def test_official_fusmodule_roundtrip(tmp_path):
    src = randomized(FusionModule(num_blocks=3))
    sd = renamed(src, to_official_fusmodule)
    assert {"conv.weight", "body.2.body.0.weight", "body.2.body.2.bias", "last.weight"} <= set(sd)
    torch.save(sd, tmp_path / "fusmodule_best.pth")
    dst = FusionModule(num_blocks=3)
    km.load_official_fusion(tmp_path / "fusmodule_best.pth", dst)
    fresh_copy_equal(src, dst)
    # our own state dicts pass unchanged
    ours = km.official_fusmodule_to_fusion(src.state_dict())
    assert ours.keys() == src.state_dict().keys()
    assert all(torch.equal(ours[k], v) for k, v in src.state_dict().items())


def test_missing_file_message(tmp_path):
    with pytest.raises(CheckpointError, match=r"pretrained NAFNet weights not found at .*nope\.pth: "
                                              r"download NAFNet-GoPro-width32\.pth"):
        km.load_pretrained_backbone(tmp_path / "nope.pth", NAFNet(**TINY_NAF))
    with pytest.raises(CheckpointError, match="rrdbnet_x8_bicubic.pth"):
        km.load_pretrained_backbone(tmp_path / "nope.pth", RRDBNet(**TINY_RRDB))


def test_wrong_file_lists_keys(tmp_path):
    torch.save({"params": randomized(HINet(wf=8)).state_dict()}, tmp_path / "hinet.pth")
    with pytest.raises(CheckpointError) as e:
        km.load_pretrained_backbone(tmp_path / "hinet.pth", NAFNet(**TINY_NAF))
    msg = str(e.value)
    assert "hinet.pth" in msg and "does not fit NAFNet" in msg
    assert re.search(r"missing \(\d+\): intro\.weight", msg)
    assert re.search(r"unexpected \(\d+\): conv_01\.weight", msg)
    assert "more)" in msg  # only the first 10 listed


def test_shape_mismatch_is_reported(tmp_path):
    torch.save(NAFNet(**{**TINY_NAF, "width": 16}).state_dict(), tmp_path / "w16.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatch \(\d+\): .*file \(16, 3, 3, 3\) "
                                              r"vs model \(8, 3, 3, 3\)"):
        km.load_pretrained_backbone(tmp_path / "w16.pth", NAFNet(**TINY_NAF))


def test_unreadable_and_non_state_dict_files(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth: cannot be read"):
        km.load_pretrained_backbone(tmp_path / "junk.pth", NAFNet(**TINY_NAF))
    torch.save({"optimizer": {"lr": 1.0}}, tmp_path / "opt.pth")
    with pytest.raises(CheckpointError, match="no state dict found"):
        km.load_pretrained_backbone(tmp_path / "opt.pth", NAFNet(**TINY_NAF))


def test_num_batches_tracked_may_be_missing():
    from ugpnet.models.blocks import ConvBlock

    src = randomized(ConvBlock(3, 4, batch_norm=True))
    for k, v in src.state_dict().items():  # running statistics too, so a skipped copy shows
        if k.endswith(("running_mean", "running_var")):
            v.copy_(torch.rand(v.shape) + 0.5)
    sd = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(sd) < len(src.state_dict())
    dst = ConvBlock(3, 4, batch_norm=True)
    load_state_dict_strict(dst, sd, "old bn file")
    got = dst.state_dict()
    for k in sd:
        assert torch.equal(got[k], sd[k]), k
    # only the counter is tolerated: any other missing entry is an error
    del sd[next(k for k in sd if k.endswith("running_var"))]
    with pytest.raises(CheckpointError, match="missing .*running_var"):
        load_state_dict_strict(ConvBlock(3, 4, batch_norm=True), sd, "old bn file")


def test_safetensors(tmp_path):
    import safetensors.torch as st  # a dependency (pyproject.toml): this test always runs
    src = randomized(NAFNet(**TINY_NAF))
    st.save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    dst = NAFNet(**TINY_NAF)
    km.load_pretrained_backbone(tmp_path / "w.safetensors", dst)
    fresh_copy_equal(src, dst)


def test_safetensors_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "w.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    monkeypatch.setitem(sys.modules, "safetensors", None)  # import safetensors -> ImportError
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(CheckpointError, match=r"w\.safetensors.*needs the 'safetensors' package"):
        km.load_pretrained_backbone(tmp_path / "w.safetensors", NAFNet(**TINY_NAF))


def test_find_official_files(tmp_path):
    for name in ("resmodule_best_18000.pth", "resmodule_best_20000.pth", "synmodule_40000.pth",
                 "fusmodule_best.pth", "fusmodule_2000.pth"):
        (tmp_path / name).write_bytes(b"")
    found = km.find_official_files(tmp_path)
    assert found["resmodule"].name == "resmodule_best_20000.pth"
    assert found["synmodule"].name == "synmodule_40000.pth"
    assert found["fusmodule"].name == "fusmodule_best.pth"
    (tmp_path / "synmodule_40000.pth").unlink()
    with pytest.raises(CheckpointError, match="no synthesis module"):
        km.find_official_files(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        km.find_official_files(tmp_path / "missing")


def test_load_official_ugpnet_folder(tmp_path, monkeypatch):
    import ugpnet.models.synthesis.loading as syn_loading

    res = randomized(RestorationModule(NAFNet(**TINY_NAF)))
    fus = randomized(FusionModule(num_blocks=2))
    torch.save(renamed(res, to_official_resmodule), tmp_path / "resmodule_best_20000.pth")
    torch.save(renamed(fus, to_official_fusmodule), tmp_path / "fusmodule_best.pth")
    (tmp_path / "synmodule_40000.pth").write_bytes(b"")
    calls = []
    monkeypatch.setattr(syn_loading, "load_official_synmodule",
                        lambda path, module: calls.append((path.name, module)))
    model = torch.nn.Module()
    model.restoration = RestorationModule(NAFNet(**TINY_NAF))
    model.synthesis = torch.nn.Identity()
    model.fusion = FusionModule(num_blocks=2)
    km.load_official_ugpnet(tmp_path, model)
    fresh_copy_equal(res, model.restoration)
    fresh_copy_equal(fus, model.fusion)
    assert calls == [("synmodule_40000.pth", model.synthesis)]
