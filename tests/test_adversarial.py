"""The shared adversarial stage (ugpnet.training.AdversarialStage) against hand-written equations.

Tiny nets on CPU: G is a 1x1 convolution, every critic C is linear, ``C(x) = <W, x> + b``, so the
R1 penalty has the closed form ``mean_n ||dC/dx_n||^2 = ||W||^2``. With SGD (lr ``eta``) one step
is ``p <- p - eta * dL/dp``; the losses are written out below with ``softplus`` (= BCE with
logits: ``BCE(x, 1) = softplus(-x)``, ``BCE(x, 0) = softplus(x)``), never with our functions.
"""
import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ugpnet.errors import ConfigError
from ugpnet.losses import d_relativistic_loss, g_relativistic_loss
from ugpnet.training import AdversarialStage, Critic, make_optimizer, make_scheduler

N, S = 3, 4  # batch size, image side


def softplus(x):
    return torch.log1p(torch.exp(x))


def linear_critic(side=S):
    torch.manual_seed(1 + side)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * side * side, 1))


def generator():
    torch.manual_seed(0)
    return nn.Conv2d(3, 3, 1)


def batch():
    g = torch.Generator().manual_seed(7)
    return {"lq": torch.rand(N, 3, S, S, generator=g), "gt": torch.rand(N, 3, S, S, generator=g),
            "y": 1}


def l1(fake, real):
    loss = (fake - real).abs().mean()
    return loss, {"l1": float(loss.detach())}


def crop(x, b):
    """A view: the 2x2 patch at row ``b["y"]`` (as a facial-component crop would be)."""
    return x[:, :, b["y"]:b["y"] + 2, :2]


# ----------------------------------------------------------------------------- the equations
def hand_d_loss(loss, r, f):
    """D loss of the logits of real ``r`` and fake ``f`` images."""
    if loss == "nonsaturating":  # StyleGAN2 logistic
        return softplus(-r).mean() + softplus(f).mean()
    # ESRGAN relativistic average, halves * 0.5, the other side's mean a constant
    return 0.5 * softplus(-(r - f.detach().mean())).mean() + \
        0.5 * softplus(f - r.detach().mean()).mean()


def hand_g_loss(loss, r, f):
    if loss == "nonsaturating":
        return softplus(-f).mean()
    r = r.detach()  # ESRGAN: (BCE(r - mean f, 0) + BCE(f - mean r, 1)) / 2
    return (softplus(r - f.mean()).mean() + softplus(-(f - r.mean())).mean()) / 2


def sees(spec, x, b):
    x = spec["view"](x, b) if spec.get("view") else x
    lo, hi = spec["range"]
    return x * (hi - lo) + lo


def sgd(params, loss, lr):
    params = list(params)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    with torch.no_grad():
        for p, g in zip(params, grads):
            if g is not None:
                p -= lr * g


def reference(G, specs, b, it, loss, order, adv_weight, g_lr):
    """One iteration by hand: D steps (loss + lazy R1 ``gamma/2 * every * ||W||^2``) and the G
    step ``L1 + adv_weight * sum weight_C * L_G(C)``, in ``order``; returns the logged values."""
    G = copy.deepcopy(G)
    specs = [{**s, "D": copy.deepcopy(s["D"])} for s in specs]
    fake = G(b["lq"])
    logs = {}

    def d_steps(fake):
        for s in specs:
            D = s["D"]
            r, f = D(sees(s, b["gt"], b)), D(sees(s, fake.detach(), b))
            L = hand_d_loss(loss, r, f)
            logs[f"d_loss_{s['name']}"] = float(L.detach())
            if s["gamma"] > 0 and it % s["every"] == 0:
                r1 = D[1].weight.pow(2).sum()
                logs[f"r1_{s['name']}"] = float(r1.detach())
                L = L + s["gamma"] / 2 * s["every"] * r1
            sgd(D.parameters(), L, s["lr"])

    def g_step(fake):
        adv = 0.0
        for s in specs:
            D = s["D"]
            term = s["weight"] * hand_g_loss(loss, D(sees(s, b["gt"], b)), D(sees(s, fake, b)))
            logs[f"adversarial_{s['name']}"] = float(term.detach())
            adv = adv + term
        L = (fake - b["gt"]).abs().mean() + adv_weight * adv
        logs["adversarial"], logs["loss"] = float(adv.detach()), float(L.detach())
        sgd(G.parameters(), L, g_lr)

    if order == "d_first":
        d_steps(fake)
        g_step(fake)
    else:
        g_step(fake)
        d_steps(fake)
    return G, [s["D"] for s in specs], logs


def make_stage(G, specs, loss, order, adv_weight, g_lr, **kw):
    critics = [Critic(s["D"], torch.optim.SGD(s["D"].parameters(), lr=s["lr"]), weight=s["weight"],
                      input_range=s["range"], view=s.get("view"), r1_gamma=s["gamma"],
                      r1_every=s["every"], name=s["name"]) for s in specs]
    return AdversarialStage(G, torch.optim.SGD(G.parameters(), lr=g_lr), critics, recon=l1,
                            adv_weight=adv_weight, loss=loss, order=order, **kw)


def assert_close_modules(a, b):
    for (k, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6), k


def one_critic(gamma=4.0, every=2, rng=(-1, 1)):
    return [{"D": linear_critic(), "lr": 0.05, "weight": 1.0, "range": rng, "gamma": gamma,
             "every": every, "name": "d"}]


# ----------------------------------------------------------------------------- one critic
@pytest.mark.parametrize("loss", ["nonsaturating", "relativistic"])
@pytest.mark.parametrize("order", ["d_first", "g_first"])
@pytest.mark.parametrize("it", [0, 1], ids=["r1_due", "r1_not_due"])
def test_step_follows_the_equations(loss, order, it):
    specs = one_critic()
    G_ref, (D_ref,), logs = reference(generator(), specs, batch(), it, loss, order, 0.3, 0.1)
    G = generator()
    stage = make_stage(G, one_critic(), loss, order, 0.3, 0.1)
    out = stage.step(batch(), it)
    assert_close_modules(stage.critics[0].net, D_ref)
    assert_close_modules(G, G_ref)
    assert out["d_loss"] == pytest.approx(logs["d_loss_d"], rel=1e-5)
    assert out["adversarial"] == pytest.approx(logs["adversarial"], rel=1e-5)
    assert out["loss"] == pytest.approx(logs["loss"], rel=1e-5)
    with torch.no_grad():
        expect_l1 = (generator()(batch()["lq"]) - batch()["gt"]).abs().mean()
    assert out["l1"] == pytest.approx(float(expect_l1))
    assert ("r1" in out) == (it == 0)
    if it == 0:
        assert out["r1"] == pytest.approx(logs["r1_d"], rel=1e-5)
    assert out["lr"] == 0.1


def test_d_first_and_g_first_differ_in_which_critic_g_sees():
    """D first: G is trained against the updated critic; G first: against the old one, and the
    critic then judges the fake made before G's update."""
    outs = {}
    for order in ("d_first", "g_first"):
        G = generator()
        stage = make_stage(G, one_critic(gamma=0.0), "nonsaturating", order, 1.0, 0.1)
        D0 = copy.deepcopy(stage.critics[0].net)
        fake0 = generator()(batch()["lq"])
        out = stage.step(batch(), 0)
        D = D0 if order == "g_first" else stage.critics[0].net
        with torch.no_grad():
            assert out["adversarial"] == pytest.approx(float(softplus(-D(2 * fake0 - 1)).mean()),
                                                       rel=1e-5)
        outs[order] = out
    assert outs["d_first"]["d_loss"] == pytest.approx(outs["g_first"]["d_loss"], rel=1e-6)
    assert outs["d_first"]["adversarial"] != pytest.approx(outs["g_first"]["adversarial"], rel=1e-6)


# ----------------------------------------------------------------------------- relativistic
def test_relativistic_losses_are_esrgans():
    """Against the formula and against BasicSR's ESRGANModel procedure (BCEWithLogitsLoss, D's
    real and fake halves * 0.5 in two backward passes, the other side's logits detached)."""
    torch.manual_seed(3)
    D = linear_critic()
    real, fake = torch.rand(N, 3, S, S), torch.rand(N, 3, S, S, requires_grad=True)
    bce = nn.BCEWithLogitsLoss()
    r, f = D(real), D(fake)
    one, zero = torch.ones_like(r), torch.zeros_like(r)
    # G (BasicSR: real_d_pred = net_d(gt).detach(), loss (l_g_real + l_g_fake) / 2)
    expect_g = (bce(r.detach() - f.mean(), zero) + bce(f - r.detach().mean(), one)) / 2
    got_g = g_relativistic_loss(r, f)
    assert torch.allclose(got_g, expect_g, rtol=1e-6)
    assert torch.allclose(got_g, hand_g_loss("relativistic", r, f), rtol=1e-5)
    inputs = [fake, *D.parameters()]  # the real logits are a constant for G (detached)
    for g, e in zip(torch.autograd.grad(got_g, inputs, retain_graph=True),
                    torch.autograd.grad(expect_g, inputs, retain_graph=True)):
        assert torch.allclose(g, e, rtol=1e-5, atol=1e-8)
    # D: BasicSR backpropagates the real half, then the fake half, into the same gradients
    D.zero_grad()
    fake_d = D(fake.detach()).detach()
    (bce(D(real) - fake_d.mean(), one) * 0.5).backward()
    real_d = D(real).detach()
    (bce(D(fake.detach()) - real_d.mean(), zero) * 0.5).backward()
    expect = [p.grad.clone() for p in D.parameters()]
    D.zero_grad()
    got_d = d_relativistic_loss(D(real), D(fake.detach()))
    got_d.backward()
    for p, e in zip(D.parameters(), expect):
        assert torch.allclose(p.grad, e, rtol=1e-5, atol=1e-7)
    assert torch.allclose(got_d, hand_d_loss("relativistic", D(real), D(fake.detach())),
                          rtol=1e-5)


# ----------------------------------------------------------------------------- several critics
def test_several_critics_each_step_their_own_optimiser():
    """Two critics, the second on a crop (a view of the batch) in [0, 1] with its own lr, G-loss
    weight and R1: each is updated by its own loss and optimiser; G by the weighted sum."""
    def specs():
        return [{"D": linear_critic(), "lr": 0.05, "weight": 1.0, "range": (-1, 1),
                 "gamma": 2.0, "every": 1, "name": "face"},
                {"D": linear_critic(2), "lr": 0.2, "weight": 0.5, "range": (0, 1), "view": crop,
                 "gamma": 0.0, "every": 1, "name": "eye"}]
    G_ref, D_refs, logs = reference(generator(), specs(), batch(), 0, "nonsaturating", "d_first",
                                    0.7, 0.1)
    G = generator()
    stage = make_stage(G, specs(), "nonsaturating", "d_first", 0.7, 0.1)
    out = stage.step(batch(), 0)
    for c, D_ref in zip(stage.critics, D_refs):
        assert_close_modules(c.net, D_ref)
    assert_close_modules(G, G_ref)
    for key in ("d_loss_face", "r1_face", "d_loss_eye", "adversarial_face", "adversarial_eye",
                "adversarial", "loss"):
        assert out[key] == pytest.approx(logs[key], rel=1e-5), key
    assert "r1_eye" not in out and "d_loss" not in out
    state = stage.state()
    assert {"g", "opt_g", "face", "opt_face", "eye", "opt_eye"} == set(state)
    with pytest.raises(ConfigError, match="collide"):
        make_stage(generator(), [{**specs()[0], "name": "g"}], "nonsaturating", "d_first", 1, 0.1)


def test_adv_weight_zero_leaves_the_critics_alone():
    G = generator()
    stage = make_stage(G, one_critic(), "nonsaturating", "d_first", 0.0, 0.1)
    D0 = copy.deepcopy(stage.critics[0].net)
    out = stage.step(batch(), 0)
    assert set(out) == {"loss", "l1", "lr"}
    for p, q in zip(stage.critics[0].net.parameters(), D0.parameters()):
        assert torch.equal(p, q) and p.grad is None


# ----------------------------------------------------------------------------- images
def test_fresh_fake_draws_once_for_d_and_once_for_g():
    """StyleGAN2 pretraining: the D step judges the first draw (made without a graph), the G
    step the second."""
    G = generator()
    draws = []

    def forward(b, it):
        z = torch.randn(N, 3, S, S)
        draws.append((z, torch.is_grad_enabled()))
        return G(z), b["gt"]
    stage = make_stage(G, one_critic(gamma=0.0), "nonsaturating", "d_first", 1.0, 0.1,
                       forward=forward, fresh_fake=True)
    D0 = copy.deepcopy(stage.critics[0].net)
    torch.manual_seed(5)
    out = stage.step(batch(), 0)
    assert [g for _, g in draws] == [False, True]
    torch.manual_seed(5)
    z_d, z_g = torch.randn(N, 3, S, S), torch.randn(N, 3, S, S)
    assert torch.equal(draws[0][0], z_d) and torch.equal(draws[1][0], z_g)
    G0 = generator()
    with torch.no_grad():
        r, f = D0(2 * batch()["gt"] - 1), D0(2 * G0(z_d) - 1)
        assert out["d_loss"] == pytest.approx(float(hand_d_loss("nonsaturating", r, f)), rel=1e-5)
        D1 = stage.critics[0].net
        adv = softplus(-D1(2 * G0(z_g) - 1)).mean()
        assert out["adversarial"] == pytest.approx(float(adv), rel=1e-5)


def test_frozen_modules_get_no_gradient_and_stay_in_eval():
    G = generator()
    torch.manual_seed(9)
    pre = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Dropout(0.5))  # e.g. UGPNet's restoration

    stage = make_stage(G, one_critic(), "nonsaturating", "d_first", 0.5, 0.1,
                       forward=lambda b, it: (G(pre(b["lq"])), b["gt"]), frozen=[pre])
    before = copy.deepcopy(pre.state_dict())
    pre.train()  # as if something switched it: the stage puts it back to eval
    for it in range(3):
        stage.step(batch(), it)
    assert not pre.training
    for k, p in pre.named_parameters():
        assert p.grad is None and not p.requires_grad and torch.equal(p, before[k]), k
    assert all(p.grad is not None for p in G.parameters())
    assert stage.modules == [G, stage.critics[0].net]


# ----------------------------------------------------------------------------- EMA
def test_ema_is_a_lerp_and_is_what_is_evaluated_and_exported():
    beta = 0.8
    G = generator()
    stage = make_stage(G, one_critic(), "nonsaturating", "d_first", 0.5, 0.1, ema_beta=beta)
    ema0 = copy.deepcopy(G)
    stage.step(batch(), 0)
    for (k, e), e0, g in zip(stage.ema.named_parameters(), ema0.parameters(), G.parameters()):
        assert torch.allclose(e, beta * e0 + (1 - beta) * g, rtol=1e-6, atol=1e-7), k
        assert not torch.equal(e, g) and not e.requires_grad
    lq = batch()["lq"]
    with torch.no_grad():
        assert torch.equal(stage.predict(lq), stage.ema(lq))
        assert not torch.equal(stage.predict(lq), G(lq))
    assert all(torch.equal(v, stage.ema.state_dict()[k]) for k, v in stage.weights().items())
    assert not stage.ema.training and stage.ema not in stage.modules
    assert "g_ema" in stage.state()


# ----------------------------------------------------------------------------- resume
def resumable_stage():
    """Adam, a cosine schedule, EMA, two critics (lazy R1 every 2 on one), relativistic."""
    torch.manual_seed(11)
    G = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 3, 1))
    train = {"lr": 1e-2, "total_iters": 8, "lr_schedule": "cosine", "betas": (0.5, 0.99)}
    opt_g = make_optimizer([{"params": G[0].parameters(), "lr": 1e-2},
                            {"params": G[2].parameters(), "lr": 3e-3}], train)
    critics = []
    for name, side, view in (("d", S, None), ("part", 2, crop)):
        D = linear_critic(side)
        critics.append(Critic(D, make_optimizer(D.parameters(), train, lr=2e-3), weight=0.5,
                              view=view, r1_gamma=1.0 if name == "d" else 0.0, r1_every=2,
                              name=name))
    return AdversarialStage(G, opt_g, critics, recon=l1, adv_weight=0.1, loss="relativistic",
                            scheduler=make_scheduler(opt_g, train), ema_beta=0.9)


def batches(n):
    g = torch.Generator().manual_seed(3)
    return [{"lq": torch.rand(N, 3, S, S, generator=g), "gt": torch.rand(N, 3, S, S, generator=g),
             "y": it % 3} for it in range(n)]


def test_resume_is_exact():
    k = 3
    straight = resumable_stage()
    for it, b in enumerate(batches(2 * k)):
        straight.step(b, it)
    first = resumable_stage()
    for it, b in enumerate(batches(k)):
        first.step(b, it)
    buf = io.BytesIO()
    torch.save(first.state(), buf)
    buf.seek(0)
    del first
    resumed = resumable_stage()
    resumed.load_state(torch.load(buf, weights_only=True))
    for it, b in list(enumerate(batches(2 * k)))[k:]:
        resumed.step(b, it)
    a, b = straight.state(), resumed.state()
    assert set(a) == {"g", "opt_g", "sched", "d", "opt_d", "part", "opt_part", "g_ema"} == set(b)
    for net in ("g", "d", "part", "g_ema"):
        for key, v in a[net].items():
            assert torch.equal(v, b[net][key]), (net, key)
    for opt in ("opt_g", "opt_d", "opt_part"):
        for i, s in a[opt]["state"].items():
            for key, v in s.items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(b[opt]["state"][i][key]))
    assert a["sched"] == b["sched"]
    assert all(torch.equal(v, b["g_ema"][k]) for k, v in resumed.weights().items())


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="order"):
        make_stage(generator(), one_critic(), "nonsaturating", "both", 1.0, 0.1)
    with pytest.raises(ConfigError, match="relativistic"):
        make_stage(generator(), one_critic(), "hinge", "d_first", 1.0, 0.1)


def test_bce_helper_equals_torch():
    """The written-out softplus form used above is BCE with logits."""
    x = torch.randn(10)
    bce = F.binary_cross_entropy_with_logits
    assert torch.allclose(softplus(-x).mean(), bce(x, torch.ones(10)))
    assert torch.allclose(softplus(x).mean(), bce(x, torch.zeros(10)))
