"""Pretrained-weight loaders: synthetic checkpoints in each official layout, safe unpickling.

The official-layout state dicts are produced here with an independent renaming table (written
from the official code's module names), never with the loader's own key maps.
"""

import argparse
import contextlib
import os
import pickle
import re
import sys
import types
from collections import OrderedDict

import pytest
import torch

from ugpnet.errors import CheckpointError
from ugpnet.models.synthesis import (
    Discriminator,
    Generator,
    build_synthesis_module,
    load_official_synmodule,
    load_stylegan2,
    read_nvidia_pickle,
)

G_ARGS = dict(size=32, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16, basecode_size=8)


def randomized(module, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for t in module.state_dict(keep_vars=True).values():  # persistent tensors only
            if t.dtype.is_floating_point:
                t.copy_(torch.randn_like(t))
    return module


def rename(state, rules):
    out = {}
    for name, t in state.items():
        for pattern, repl in rules:
            m = re.fullmatch(pattern, name)
            if m:
                new = repl(m) if callable(repl) else m.expand(repl)
                out[new] = t.clone()
                break
        else:
            raise AssertionError(f"test table misses {name}")
    return out


# ----------------------------------------------------------------------------- official layouts
# rosinality/stylegan2-pytorch model.py: style.{1..} (0 is PixelNorm), input.input, StyledConv
# (conv.weight [1,O,I,k,k], conv.modulation, noise.weight, activate.bias), ToRGB (conv.*, bias
# [1,3,1,1]), noises.noise_{j}; blur kernels are buffers (conv.blur.kernel, upsample.kernel).
def to_rosinality_g(g):
    rules = [
        (r"mapping\.fc(\d+)\.(weight|bias)", lambda m: f"style.{int(m[1]) + 1}.{m[2]}"),
        (r"const", "input.input"),
        (r"(conv1|convs\.\d+)\.conv\.weight", r"\1.conv.weight"),
        (r"(conv1|convs\.\d+)\.conv\.affine\.(weight|bias)", r"\1.conv.modulation.\2"),
        (r"(conv1|convs\.\d+)\.noise_strength", r"\1.noise.weight"),
        (r"(conv1|convs\.\d+)\.bias", r"\1.activate.bias"),
        (r"(to_rgb1|to_rgbs\.\d+)\.conv\.weight", r"\1.conv.weight"),
        (r"(to_rgb1|to_rgbs\.\d+)\.conv\.affine\.(weight|bias)", r"\1.conv.modulation.\2"),
        (r"(to_rgb1|to_rgbs\.\d+)\.bias", r"\1.bias"),
        (r"noises\.noise_(\d+)", r"noises.noise_\1"),
    ]
    sd = rename(g.state_dict(), rules)
    for k in list(sd):
        if k.endswith("conv.weight"):
            sd[k] = sd[k].unsqueeze(0)
        if re.fullmatch(r"(to_rgb1|to_rgbs\.\d+)\.bias", k):
            sd[k] = sd[k].view(1, 3, 1, 1)
    blur = torch.tensor([1.0, 3, 3, 1])
    blur = blur[:, None] * blur[None, :] / 64
    for k in range(len(g.to_rgbs)):
        sd[f"convs.{2 * k}.conv.blur.kernel"] = blur * 4
        sd[f"to_rgbs.{k}.upsample.kernel"] = blur * 4
    return sd


# BasicSR stylegan2_arch.py: style_mlp.{1..}, constant_input.weight, style_conv1 / style_convs.{j}
# (modulated_conv.weight [1,O,I,k,k], modulated_conv.modulation, weight = noise strength,
# activate.bias), to_rgb1 / to_rgbs (modulated_conv.*, bias [1,3,1,1]), noises.noise{j}.
def to_basicsr_g(g):
    rules = [
        (r"mapping\.fc(\d+)\.(weight|bias)", lambda m: f"style_mlp.{int(m[1]) + 1}.{m[2]}"),
        (r"const", "constant_input.weight"),
        (r"conv1\.conv\.weight", "style_conv1.modulated_conv.weight"),
        (r"conv1\.conv\.affine\.(weight|bias)", r"style_conv1.modulated_conv.modulation.\1"),
        (r"conv1\.noise_strength", "style_conv1.weight"),
        (r"conv1\.bias", "style_conv1.activate.bias"),
        (r"convs\.(\d+)\.conv\.weight", r"style_convs.\1.modulated_conv.weight"),
        (r"convs\.(\d+)\.conv\.affine\.(weight|bias)", r"style_convs.\1.modulated_conv.modulation.\2"),
        (r"convs\.(\d+)\.noise_strength", r"style_convs.\1.weight"),
        (r"convs\.(\d+)\.bias", r"style_convs.\1.activate.bias"),
        (r"(to_rgb1|to_rgbs\.\d+)\.conv\.weight", r"\1.modulated_conv.weight"),
        (r"(to_rgb1|to_rgbs\.\d+)\.conv\.affine\.(weight|bias)", r"\1.modulated_conv.modulation.\2"),
        (r"(to_rgb1|to_rgbs\.\d+)\.bias", r"\1.bias"),
        (r"noises\.noise_(\d+)", r"noises.noise\1"),
    ]
    sd = rename(g.state_dict(), rules)
    for k in list(sd):
        if k.endswith("modulated_conv.weight"):
            sd[k] = sd[k].unsqueeze(0)
        if re.fullmatch(r"(to_rgb1|to_rgbs\.\d+)\.bias", k):
            sd[k] = sd[k].view(1, 3, 1, 1)
    return sd


# NVIDIA stylegan2-ada-pytorch training/networks.py: mapping.fc{i}, mapping.w_avg,
# synthesis.b{res}.{const [C,4,4], conv0 (up), conv1, torgb, resample_filter}; SynthesisLayer:
# weight [O,I,k,k], affine, noise_strength [], bias, noise_const [r,r], resample_filter.
def to_nvidia_g(g):
    def style(m):
        j = int(m[1])
        res = 2 ** (j // 2 + 3)
        layer = "conv0" if j % 2 == 0 else "conv1"
        tail = {"conv.weight": "weight", "conv.affine.weight": "affine.weight", "conv.affine.bias": "affine.bias",
                "noise_strength": "noise_strength", "bias": "bias"}[m[2]]
        return f"synthesis.b{res}.{layer}.{tail}"

    def noise(m):
        j = int(m[1])
        if j == 0:
            return "synthesis.b4.conv1.noise_const"
        res = 2 ** ((j - 1) // 2 + 3)
        return f"synthesis.b{res}.{'conv0' if j % 2 == 1 else 'conv1'}.noise_const"

    def rgb(m):
        res = 4 if m[1] == "to_rgb1" else 2 ** (int(m[1].split(".")[1]) + 3)
        tail = {"conv.weight": "weight", "conv.affine.weight": "affine.weight", "conv.affine.bias": "affine.bias",
                "bias": "bias"}[m[2]]
        return f"synthesis.b{res}.torgb.{tail}"

    rules = [
        (r"mapping\.fc(\d+)\.(weight|bias)", r"mapping.fc\1.\2"),
        (r"const", "synthesis.b4.const"),
        (r"conv1\.(conv\.weight|conv\.affine\.weight|conv\.affine\.bias|noise_strength|bias)",
         lambda m: "synthesis.b4.conv1." + {"conv.weight": "weight", "conv.affine.weight": "affine.weight",
                                            "conv.affine.bias": "affine.bias", "noise_strength": "noise_strength",
                                            "bias": "bias"}[m[1]]),
        (r"convs\.(\d+)\.(conv\.weight|conv\.affine\.weight|conv\.affine\.bias|noise_strength|bias)", style),
        (r"(to_rgb1|to_rgbs\.\d+)\.(conv\.weight|conv\.affine\.weight|conv\.affine\.bias|bias)", rgb),
        (r"noises\.noise_(\d+)", noise),
    ]
    sd = rename(g.state_dict(), rules)
    for k in list(sd):
        if k == "synthesis.b4.const":
            sd[k] = sd[k][0]
        elif k.endswith("noise_const"):
            sd[k] = sd[k][0, 0]
        elif k.endswith("noise_strength"):
            sd[k] = sd[k].reshape([])
    filt = torch.tensor([1.0, 3, 3, 1]) / 8
    for k in list(sd):
        if k.endswith(".weight") and (".conv0." in k or ".conv1." in k or ".torgb." in k) and "affine" not in k:
            sd[k.rsplit(".", 1)[0] + ".resample_filter"] = filt[:, None] * filt[None, :]
    sd["mapping.w_avg"] = torch.randn(16)
    return sd


def d_rules(first, seq_prefix):
    return [
        (r"from_rgb\.weight", f"{first}.0.weight"),
        (r"from_rgb\.bias", f"{first}.1.bias"),
        (r"blocks\.(\d+)\.conv1\.weight", lambda m: f"{seq_prefix}.{int(m[1]) + 1}.conv1.0.weight"),
        (r"blocks\.(\d+)\.conv1\.bias", lambda m: f"{seq_prefix}.{int(m[1]) + 1}.conv1.1.bias"),
        (r"blocks\.(\d+)\.conv2\.weight", lambda m: f"{seq_prefix}.{int(m[1]) + 1}.conv2.1.weight"),
        (r"blocks\.(\d+)\.conv2\.bias", lambda m: f"{seq_prefix}.{int(m[1]) + 1}.conv2.2.bias"),
        (r"blocks\.(\d+)\.skip\.weight", lambda m: f"{seq_prefix}.{int(m[1]) + 1}.skip.1.weight"),
        (r"final_conv\.weight", "final_conv.0.weight"),
        (r"final_conv\.bias", "final_conv.1.bias"),
        (r"final_fc\.(weight|bias)", r"final_linear.0.\1"),
        (r"final_out\.(weight|bias)", r"final_linear.1.\1"),
    ]


def to_rosinality_d(d):
    sd = rename(d.state_dict(), d_rules("convs.0", "convs"))
    for k in range(len(d.blocks)):
        sd[f"convs.{k + 1}.conv2.0.kernel"] = torch.ones(4, 4) / 16
        sd[f"convs.{k + 1}.skip.0.kernel"] = torch.ones(4, 4) / 16
    return sd


def to_basicsr_d(d):
    return rename(d.state_dict(), d_rules("conv_body.0", "conv_body"))


def to_nvidia_d(d):
    size = d.size

    def blk(m, layer):
        return f"b{size // 2 ** int(m[1])}.{layer}.{m[2]}"

    rules = [
        (r"from_rgb\.(weight|bias)", rf"b{size}.fromrgb.\1"),
        (r"blocks\.(\d+)\.conv1\.(weight|bias)", lambda m: blk(m, "conv0")),
        (r"blocks\.(\d+)\.conv2\.(weight|bias)", lambda m: blk(m, "conv1")),
        (r"blocks\.(\d+)\.skip\.(weight)", lambda m: blk(m, "skip")),
        (r"final_conv\.(weight|bias)", r"b4.conv.\1"),
        (r"final_fc\.(weight|bias)", r"b4.fc.\1"),
        (r"final_out\.(weight|bias)", r"b4.out.\1"),
    ]
    sd = rename(d.state_dict(), rules)
    filt = torch.ones(4, 4) / 16
    for r in [size // 2**k for k in range(len(d.blocks))]:
        sd[f"b{r}.resample_filter"] = filt
        sd[f"b{r}.conv1.resample_filter"] = filt
        sd[f"b{r}.skip.resample_filter"] = filt
    return sd


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def pair(seed_src=1, seed_dst=2):
    return (randomized(Generator(**G_ARGS), seed_src), Generator(**G_ARGS),
            randomized(Discriminator(32, channel_multiplier=1, channel_max=16), seed_src + 10),
            Discriminator(32, channel_multiplier=1, channel_max=16))


# ----------------------------------------------------------------------------- torch formats
def test_rosinality_checkpoint_round_trip(tmp_path):
    g_src, g_dst, d_src, d_dst = pair()
    latent_avg = torch.randn(16)
    ckpt = {"g_ema": to_rosinality_g(g_src), "d": to_rosinality_d(d_src), "latent_avg": latent_avg,
            "args": argparse.Namespace(size=32, channel_multiplier=1)}
    path = tmp_path / "rosinality.pt"
    torch.save(ckpt, path)
    rep = load_stylegan2(path, g_dst, d_dst)
    assert rep.format == "rosinality"
    assert_same_state(g_src, g_dst)
    assert_same_state(d_src, d_dst)
    torch.testing.assert_close(rep.w_avg, latent_avg.view(1, -1))
    with torch.no_grad():
        w = torch.randn(2, 16)
        torch.testing.assert_close(g_src(w=w, noise="const"), g_dst(w=w, noise="const"))


def test_basicsr_separate_g_and_d_files(tmp_path):
    g_src, g_dst, d_src, d_dst = pair(3, 4)
    g_path, d_path = tmp_path / "net_g.pth", tmp_path / "net_d.pth"
    torch.save({"params": to_basicsr_g(randomized(Generator(**G_ARGS), 9)), "params_ema": to_basicsr_g(g_src)}, g_path)
    torch.save({"params": to_basicsr_d(d_src)}, d_path)
    assert load_stylegan2(g_path, g_dst).format == "basicsr"
    load_stylegan2(d_path, discriminator=d_dst)
    assert_same_state(g_src, g_dst)
    assert_same_state(d_src, d_dst)
    with pytest.raises(CheckpointError, match="no discriminator"):
        load_stylegan2(g_path, discriminator=d_dst)


def test_wrong_file_reports_missing_and_unexpected_keys(tmp_path):
    g_src = randomized(Generator(**G_ARGS), 0)
    path = tmp_path / "net_g.pth"
    torch.save({"params_ema": to_basicsr_g(g_src)}, path)
    bigger = Generator(size=64, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16, basecode_size=8)
    with pytest.raises(CheckpointError, match=r"missing \(\d+\): .*style_convs\.6"):
        load_stylegan2(path, bigger)
    wider = Generator(**{**G_ARGS, "channel_max": 32})
    with pytest.raises(CheckpointError, match=r"shape mismatch \(\d+\): .*file \(.*\) vs model"):
        load_stylegan2(path, wider)
    rosi = tmp_path / "rosi.pt"
    torch.save({"g_ema": to_rosinality_g(g_src)}, rosi)
    with pytest.raises(CheckpointError, match="no discriminator"):
        load_stylegan2(rosi, Generator(**G_ARGS), Discriminator(32, channel_multiplier=1, channel_max=16))
    junk = tmp_path / "junk.pt"
    torch.save({"foo": torch.zeros(1)}, junk)
    with pytest.raises(CheckpointError, match="unknown checkpoint layout"):
        load_stylegan2(junk, Generator(**G_ARGS))
    extra = to_basicsr_g(g_src)
    extra["style_mlp.9.weight"] = torch.zeros(16, 16)
    torch.save({"params_ema": extra}, path)
    with pytest.raises(CheckpointError, match=r"unexpected \(1\): style_mlp\.9\.weight"):
        load_stylegan2(path, Generator(**G_ARGS))
    with pytest.raises(CheckpointError, match="not found"):
        load_stylegan2(tmp_path / "absent.pt", Generator(**G_ARGS))
    text = tmp_path / "notes.pkl"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a readable network pickle"):
        load_stylegan2(text, Generator(**G_ARGS))


def test_torch_file_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "evil.pt"
    torch.save({"g_ema": Evil()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_stylegan2(path, Generator(**G_ARGS))
    assert not (tmp_path / "pwned").exists()


def test_official_ugpnet_synmodule_checkpoint(tmp_path):
    src = build_synthesis_module(**G_ARGS, encoder_channel_max=16)
    randomized(src, 5)
    for mod in src.modules():  # keep BN variances positive
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_var.uniform_(0.5, 1.5)
            mod.num_batches_tracked.fill_(7)
    d_src = randomized(Discriminator(32, channel_multiplier=1, channel_max=16), 6)
    fencoder = rename(src.encoder.f_encoder.state_dict(), [
        (r"blocks\.(\d+)\.convs\.(\d+)\.(weight|bias)", r"downblocks.\1.conv.\2.\3"),
        (r"blocks\.(\d+)\.norms\.(\d+)\.(\w+)", r"downblocks.\1.bn.\2.\3"),
        (r"out_conv\.(weight|bias)", r"conv1x1.\1"),
    ])
    wmodule = rename(src.encoder.map2style.state_dict(), [
        (r"convs\.(\d+)\.(weight|bias)", lambda m: f"convs.{2 * int(m[1])}.{m[2]}"),  # Sequential(conv, lrelu)*
        (r"heads\.(\d+)\.(weight|bias)", r"linear.\1.\2"),
    ])
    path = tmp_path / "synmodule_40000.pth"
    torch.save({"generator": to_basicsr_g(src.generator), "fencoder": fencoder, "wmodule": wmodule,
                "discriminator": to_basicsr_d(d_src)}, path)
    dst = build_synthesis_module(**G_ARGS, encoder_channel_max=16)
    d_dst = Discriminator(32, channel_multiplier=1, channel_max=16)
    rep = load_official_synmodule(path, dst, d_dst)
    assert rep.format == "ugpnet-synmodule"
    assert_same_state(src, dst)
    assert_same_state(d_src, d_dst)
    src.eval(), dst.eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(src(x)[0], dst(x)[0])
    torch.save({"generator": to_basicsr_g(src.generator)}, path)
    with pytest.raises(CheckpointError, match="missing \\['fencoder', 'wmodule'\\]"):
        load_official_synmodule(path, dst)


# ----------------------------------------------------------------------------- NVIDIA pickles
BUFFER_NAMES = {"resample_filter", "noise_const", "w_avg"}


class _FakePersistent:
    """Pickles like an object of a torch_utils.persistence-decorated class."""

    def __init__(self, class_name, state, module_src, reconstruct):
        self.class_name, self.state, self.module_src, self.reconstruct = class_name, state, module_src, reconstruct

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name, state=self.state)
        return (self.reconstruct, (meta,))


@contextlib.contextmanager
def fake_nvidia_modules():
    """Temporarily register stand-ins for NVIDIA's modules so pickle can reference them by name."""
    names = ["torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"]
    assert not any(n in sys.modules for n in names)
    mods = {n: types.ModuleType(n) for n in names}

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - must never run while loading
        raise AssertionError("NVIDIA reconstruct called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    easydict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    mods["dnnlib.util"].EasyDict = easydict
    sys.modules.update(mods)
    try:
        yield _reconstruct_persistent_obj, easydict
    finally:
        for n in names:
            sys.modules.pop(n, None)


def nvidia_tree(flat, class_name, module_src, reconstruct, easydict, kwargs):
    nested = {}
    for name, t in flat.items():
        node = nested
        parts = name.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = t

    def build(node, cls):
        params, buffers, modules = OrderedDict(), OrderedDict(), OrderedDict()
        for k, v in node.items():
            if isinstance(v, dict):
                modules[k] = build(v, "SynthesisLayer")
            elif k in BUFFER_NAMES:
                buffers[k] = v
            else:
                params[k] = torch.nn.Parameter(v, requires_grad=True)
        state = {"training": False, "_parameters": params, "_buffers": buffers,
                 "_non_persistent_buffers_set": set(), "_modules": modules, "_forward_hooks": OrderedDict()}
        return _FakePersistent(cls, state, module_src, reconstruct)

    root = build(nested, class_name)
    root.state["_init_kwargs"] = easydict(kwargs)
    root.state["_init_args"] = ()
    return root


def write_fake_nvidia_pickle(path, g_flat, d_flat, module_src, protocol):
    with fake_nvidia_modules() as (reconstruct, easydict):
        data = {
            "G": nvidia_tree(g_flat, "Generator", module_src, reconstruct, easydict, {"z_dim": 16, "w_dim": 16}),
            "G_ema": nvidia_tree(g_flat, "Generator", module_src, reconstruct, easydict,
                                 {"z_dim": 16, "w_dim": 16, "mapping_kwargs": easydict(num_layers=2)}),
            "D": nvidia_tree(d_flat, "Discriminator", module_src, reconstruct, easydict, {"img_resolution": 32}),
            "augment_pipe": None,
            "training_set_kwargs": easydict(path="ffhq.zip", resolution=32),
        }
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4])
def test_nvidia_pickle_round_trip_without_executing_code(tmp_path, protocol):
    g_src, g_dst, d_src, d_dst = pair(7, 8)
    marker = tmp_path / "module_src_executed"
    module_src = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\n"
    g_flat, d_flat = to_nvidia_g(g_src), to_nvidia_d(d_src)
    path = tmp_path / "network-snapshot.pkl"
    write_fake_nvidia_pickle(path, g_flat, d_flat, module_src, protocol)
    rep = load_stylegan2(path, g_dst, d_dst)
    assert rep.format == "nvidia-pkl"
    assert_same_state(g_src, g_dst)
    assert_same_state(d_src, d_dst)
    torch.testing.assert_close(rep.w_avg, g_flat["mapping.w_avg"].view(1, -1))
    # nothing foreign was imported or executed
    assert not marker.exists()
    for name in ("torch_utils", "torch_utils.persistence", "training", "dnnlib", "dnnlib.util"):
        assert name not in sys.modules
    pk = read_nvidia_pickle(path)
    assert pk.class_names == {"G_ema": "Generator", "G": "Generator", "D": "Discriminator"}
    assert pk.init_kwargs["G_ema"]["mapping_kwargs"] == {"num_layers": 2}
    assert "dnnlib.util.EasyDict" in pk.placeholders


def test_nvidia_pickle_with_foreign_callable_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for payload in ({"G_ema": Evil()}, {"G_ema": [Evil()]}):
        path = tmp_path / "evil.pkl"
        path.write_bytes(pickle.dumps(payload, protocol=4))
        with pytest.raises(CheckpointError, match="refusing to load.*system"):
            load_stylegan2(path, Generator(**G_ARGS))
    assert not marker.exists()

    class EvalCall:
        def __reduce__(self):
            return (eval, ("1 + 1",))

    path = tmp_path / "eval.pkl"
    path.write_bytes(pickle.dumps({"G_ema": EvalCall()}))
    with pytest.raises(CheckpointError, match="builtins.eval"):
        read_nvidia_pickle(path)


def test_nvidia_pickle_wrong_network(tmp_path):
    g_src, _, d_src, _ = pair()
    path = tmp_path / "net.pkl"
    write_fake_nvidia_pickle(path, to_nvidia_g(g_src), to_nvidia_d(d_src), "", 4)
    bigger = Generator(size=64, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16, basecode_size=8)
    with pytest.raises(CheckpointError, match=r"missing \(\d+\): .*synthesis\.b64"):
        load_stylegan2(path, bigger)
    sg3 = dict(to_nvidia_g(g_src))
    sg3["synthesis.input.weight"] = torch.zeros(1)
    write_fake_nvidia_pickle(path, sg3, to_nvidia_d(d_src), "", 4)
    with pytest.raises(CheckpointError, match="StyleGAN3"):
        load_stylegan2(path, Generator(**G_ARGS))


def test_cuda_saved_legacy_storage_loads_on_cpu():
    """Release pickles (torch 1.x, saved on GPU) embed legacy-format storages tagged
    'torch.cuda.FloatStorage' / 'cuda:0'; they must load on a CPU-only machine."""
    import warnings

    from ugpnet.checkpoints.unpickler import _safe_load_storage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        blob = torch.arange(6.0).storage().__reduce__()[1][0]  # (_load_from_bytes, (bytes,))
    blob = blob.replace(b"ctorch\nFloatStorage\n", b"ctorch.cuda\nFloatStorage\n")
    i = blob.find(b"X\x03\x00\x00\x00cpu")
    assert i > 0
    blob = blob[:i] + b"X\x06\x00\x00\x00cuda:0" + blob[i + 8 :]
    storage = _safe_load_storage(blob)
    assert list(storage) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    with pytest.raises(CheckpointError):
        _safe_load_storage(b"not a storage")
