"""The registered models: shapes, parameter counts, init, LRN, ablation options, torchvision parity."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import alexnet
from alexnet.errors import BadOptionError, UnknownModelError, UserError
from alexnet.models import (
    LocalResponseNorm,
    count_parameters,
    create_model,
    list_models,
    model_info,
    summarize,
)

ALL = list_models()


def test_registry_lists_every_model():
    assert set(ALL) >= {"alexnet", "alexnet_caffe", "caffenet", "alexnet_owt", "cifar_4layer"}


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_tiny_batch(name):
    torch.manual_seed(0)
    info = model_info(name)
    model = create_model(name, num_classes=7)
    x = torch.randn(2, 3, info.input_size, info.input_size)
    out = model(x)
    assert out.shape == (2, 7)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ALL)
def test_features_and_head_compose_to_forward(name):
    torch.manual_seed(0)
    info = model_info(name)
    model = create_model(name).eval()
    x = torch.randn(1, 3, info.input_size, info.input_size)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert torch.allclose(model.forward_head(feats), model(x))
        pre = model.forward_head(feats, pre_logits=True)
    if info.default_num_classes == 1000:
        assert pre.shape == (1, 4096)  # fc7 activations, after ReLU
        assert (pre >= 0).all()


@pytest.mark.parametrize("name,expected", [
    ("alexnet", 60_965_224), ("alexnet_caffe", 60_965_224), ("caffenet", 60_965_224),
    ("alexnet_owt", 61_100_840), ("cifar_4layer", 89_578),
])
def test_parameter_counts(name, expected):
    assert count_parameters(create_model(name)) == expected


def test_paper_per_layer_shapes_and_params():
    rows = {r.name: r for r in summarize(create_model("alexnet"), 224)}
    expected = {
        "conv1": ((96, 55, 55), 34_944), "pool1": ((96, 27, 27), 0),
        "conv2": ((256, 27, 27), 307_456), "pool2": ((256, 13, 13), 0),
        "conv3": ((384, 13, 13), 885_120), "conv4": ((384, 13, 13), 663_936),
        "conv5": ((256, 13, 13), 442_624), "pool5": ((256, 6, 6), 0),
        "fc6": ((4096,), 37_752_832), "fc7": ((4096,), 16_781_312), "fc8": ((1000,), 4_097_000),
    }
    for name, (shape, params) in expected.items():
        assert rows[name].output_shape == shape, name
        assert rows[name].params == params, name
    # about 0.72 GMAC per image (docs/PAPER.md)
    assert abs(sum(r.macs for r in rows.values()) / 1e9 - 0.724) < 0.001


@pytest.mark.parametrize("size", [224, 227])
def test_conv1_gives_55_for_224_and_227(size):
    model = create_model("alexnet")
    assert model.features[:2](torch.zeros(1, 3, size, size)).shape == (1, 96, 55, 55)


def test_caffe_models_take_227():
    for name in ("alexnet_caffe", "caffenet"):
        rows = {r.name: r for r in summarize(create_model(name), 227)}
        assert rows["conv1"].output_shape == (96, 55, 55)
        assert rows["pool5"].output_shape == (256, 6, 6)


def test_tower_groups():
    model = create_model("alexnet")
    groups = [getattr(model.features, f"conv{i}").groups for i in range(1, 6)]
    assert groups == [1, 2, 1, 2, 2]


def test_paper_init_statistics():
    torch.manual_seed(0)
    model = create_model("alexnet")
    ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
    for name, layer in model.named_layers():
        w = layer.weight.detach()
        assert abs(w.mean().item()) < 1e-3, name
        # conv1 has 34,848 weights: the sample std is within 2% of 0.01
        assert abs(w.std().item() - 0.01) < 2e-4, name
        assert torch.all(layer.bias == (1.0 if name in ones else 0.0)), name


def test_caffe_init_statistics():
    torch.manual_seed(0)
    model = create_model("alexnet_caffe")
    layers = dict(model.named_layers())
    assert abs(layers["fc6"].weight.std().item() - 0.005) < 1e-4
    assert abs(layers["conv1"].weight.std().item() - 0.01) < 2e-4
    assert torch.all(layers["conv2"].bias == 0.1) and torch.all(layers["conv3"].bias == 0.0)


def _lrn_by_hand(a: torch.Tensor, n: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """b[c] = a[c] / (k + alpha * sum_{j=max(0,c-n//2)}^{min(C-1,c+n//2)} a[j]^2) ** beta, loop by loop."""
    out = torch.empty_like(a)
    C = a.shape[1]
    for c in range(C):
        lo, hi = max(0, c - n // 2), min(C - 1, c + n // 2)
        s = sum(a[:, j] ** 2 for j in range(lo, hi + 1))
        out[:, c] = a[:, c] / (k + alpha * s) ** beta
    return out


@pytest.mark.parametrize("alpha_over_n", [True, False])
def test_lrn_matches_formula(alpha_over_n):
    torch.manual_seed(0)
    a = torch.randn(2, 7, 3, 3, dtype=torch.float64) * 30  # large enough that the normaliser matters
    lrn = LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0, alpha_over_n=alpha_over_n)
    alpha = 1e-4 / 5 if alpha_over_n else 1e-4
    expected = _lrn_by_hand(a, 5, alpha, 0.75, 2.0)
    assert torch.allclose(lrn(a), expected, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(a / 2.0 ** 0.75, expected)  # the normaliser changes something


@pytest.mark.parametrize("channels,size", [(7, 5), (96, 5), (33, 3), (10, 4), (3, 5)])
@pytest.mark.parametrize("alpha_over_n", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_lrn_window_sum_equals_torchs_pooling_form(channels, size, alpha_over_n, channels_last):
    """The pointwise channel-window sum gives torch's F.local_response_norm (avg_pool3d) within 1e-6
    relative error in fp32, values and gradients, for odd and even windows and channel counts."""
    torch.manual_seed(channels)
    a = torch.randn(3, channels, 6, 5) * 20
    if channels_last:
        a = a.contiguous(memory_format=torch.channels_last)
    lrn = LocalResponseNorm(size=size, alpha=1e-4, beta=0.75, k=2.0, alpha_over_n=alpha_over_n)
    alpha = 1e-4 if alpha_over_n else 1e-4 * size  # torch divides alpha by the window
    x1, x2 = a.clone().requires_grad_(), a.clone().requires_grad_()
    ours, ref = lrn(x1), F.local_response_norm(x2, size, alpha=alpha, beta=0.75, k=2.0)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=0)
    g = torch.randn_like(ref)
    (ours * g).sum().backward()
    (ref * g).sum().backward()
    # gradients: sums of terms of both signs, so compared relative to their scale
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-6 * float(x2.grad.abs().max()))
    bf = lrn(a.bfloat16())  # bf16 in, bf16 out, within bf16's precision of the fp32 result
    assert bf.dtype == torch.bfloat16
    torch.testing.assert_close(bf.float(), ref.detach(), rtol=1e-2, atol=1e-2)


def test_lrn_runs_in_bf16_on_cpu():
    # torch has no bf16 CPU kernel for the pooling inside F.local_response_norm; --precision bf16 on a CPU
    # must still train the paper's net (the LRN then runs in float32 and returns bf16).
    torch.manual_seed(0)
    a = torch.randn(2, 7, 3, 3) * 30
    lrn = LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)
    out = lrn(a.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), lrn(a), rtol=2e-2, atol=1e-2)
    model = create_model("alexnet", num_classes=10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(2, 3, 224, 224))
    logits.float().sum().backward()
    assert logits.dtype == torch.bfloat16 and torch.isfinite(model.features.conv1.weight.grad).all()


def test_paper_model_uses_lrn_k2_before_pool_and_caffenet_after():
    names = [n for n, _ in create_model("alexnet").features.named_children()]
    assert names.index("norm1") < names.index("pool1")
    assert create_model("alexnet").features.norm1.k == 2.0
    assert create_model("alexnet_caffe").features.norm1.k == 1.0
    names = [n for n, _ in create_model("caffenet").features.named_children()]
    assert names.index("pool1") < names.index("norm1")


def test_ablation_no_lrn():
    model = create_model("alexnet", lrn=False)
    assert not any(isinstance(m, LocalResponseNorm) for m in model.modules())
    assert count_parameters(model) == 60_965_224


def test_ablation_non_overlapping_pool():
    model = create_model("alexnet", overlap_pool=False)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert [p.kernel_size for p in pools] == [2, 2, 2] and all(p.stride == 2 for p in pools)
    rows = {r.name: r for r in summarize(model, 224)}
    # 2/2 pooling floors to the same sizes: 55 -> 27 -> 13 -> 6
    assert rows["pool1"].output_shape[1:] == (27, 27)
    assert rows["pool2"].output_shape[1:] == (13, 13)
    assert rows["pool5"].output_shape[1:] == (6, 6)
    overlap = [m for m in create_model("alexnet").modules() if isinstance(m, nn.MaxPool2d)]
    assert all(p.kernel_size == 3 for p in overlap)


def test_ablation_one_tower():
    model = create_model("alexnet", towers=1)
    convs = [getattr(model.features, f"conv{i}") for i in range(1, 6)]
    assert [c.out_channels for c in convs] == [48, 128, 192, 192, 256]
    assert all(c.groups == 1 for c in convs)

    def conv(cin, cout, k):
        return cin * cout * k * k + cout

    expected = (conv(3, 48, 11) + conv(48, 128, 5) + conv(128, 192, 3) + conv(192, 192, 3) + conv(192, 256, 3)
                + 9216 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000)
    assert count_parameters(model) == expected == 59_798_312
    assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_ablation_dropout_and_activation():
    model = create_model("alexnet", dropout=0.0, activation="tanh")
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 7
    drops = [m for m in create_model("alexnet", dropout=0.3).modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in drops] == [0.3, 0.3]


def test_dropout_sits_after_fc6_and_fc7():
    names = [n for n, _ in create_model("alexnet").fc.named_children()]
    assert names == ["fc6", "act6", "drop6", "fc7", "act7", "drop7"]


@pytest.mark.parametrize("options,msg", [
    ({"towers": 3}, "towers"), ({"activation": "gelu"}, "activation"), ({"dropout": 1.5}, "dropout"),
    ({"nope": 1}, "no option"),
])
def test_bad_options_are_user_errors(options, msg):
    with pytest.raises(BadOptionError, match=msg):
        create_model("alexnet", **options)


def test_unknown_model_is_user_error():
    with pytest.raises(UnknownModelError, match="unknown model 'nope'"):
        create_model("nope")
    with pytest.raises(UserError):
        create_model("alexnet", num_classes=0)


def test_cifar_net_shapes_and_activation():
    rows = {r.name: r for r in summarize(create_model("cifar_4layer"), 32)}
    assert rows["pool1"].output_shape == (32, 16, 16)
    assert rows["pool2"].output_shape == (32, 8, 8)
    assert rows["pool3"].output_shape == (64, 4, 4)
    assert rows["fc10"].output_shape == (10,)
    tanh = create_model("cifar_4layer", activation="tanh", lrn=False)
    assert sum(isinstance(m, nn.Tanh) for m in tanh.modules()) == 3
    assert not any(isinstance(m, LocalResponseNorm) for m in tanh.modules())


def test_owt_matches_torchvision_on_same_state_dict():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    ref = torchvision.models.alexnet(weights=None).eval()
    ours = create_model("alexnet_owt")
    ours.load_state_dict(ref.state_dict())  # strict: same keys and shapes
    ours.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5, rtol=1e-4)


def test_top_level_api():
    assert alexnet.list_models() == ALL
    assert alexnet.count_parameters(alexnet.create_model("cifar_4layer", num_classes=3)) == 89_578 - 7 * 1025


def test_torch_hub_local(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    model = torch.hub.load(str(root), "alexnet", source="local", num_classes=5, trust_repo=True)
    assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 5)
    assert math.isclose(count_parameters(model), 60_965_224 - 995 * 4097)


def test_kaiming_init_statistics_and_model_init_untouched():
    from alexnet.models.init import initialize

    torch.manual_seed(0)
    model = initialize(create_model("alexnet_owt", num_classes=10), "kaiming")
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in convs[:-1]:
        fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
        assert m.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.1)
        assert torch.count_nonzero(m.bias) == 0
    assert convs[-1].weight.std().item() == pytest.approx(0.01, rel=0.1)
    # "model" keeps the builder's own (here the paper's N(0, 0.01), biases 1 in conv2)
    torch.manual_seed(0)
    a = create_model("alexnet", num_classes=10)
    torch.manual_seed(0)
    b = initialize(create_model("alexnet", num_classes=10), "model")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    with pytest.raises(ValueError, match="unknown init"):
        initialize(a, "xavier")


@pytest.mark.parametrize("options,needle", [
    ({"lrn": "maybe"}, "lrn must be true or false"),
    ({"overlap_pool": 2}, "overlap_pool must be true or false"),
    ({"dropout": "abc"}, "dropout must be a number"),
    ({"dropout": float("nan")}, "dropout must be a number"),
    ({"towers": 1.5}, "towers must be an integer"),
    ({"towers": True}, "towers must be an integer"),
    ({"activation": 3}, "activation must be str"),
])
def test_model_options_of_the_wrong_type_are_refused(options, needle):
    with pytest.raises(BadOptionError, match=needle):
        create_model("alexnet", num_classes=10, **options)


def test_model_options_given_as_text_mean_what_they_say():
    m = create_model("alexnet", num_classes=10, lrn="false", towers="1", dropout="0.25", overlap_pool="0")
    assert (m.config.lrn, m.config.widths[0], m.config.dropout, m.config.pool_kernel) == (False, 48, 0.25, 2)


def test_cli_bad_model_option_is_one_line(capsys):
    from alexnet.cli.main import main

    assert main(["info", "--arch", "alexnet", "--opt", "lrn=maybe"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lrn must be true or false" in err[0], err


def test_models_is_a_leaf():
    """``alexnet.models`` imports nothing above it (weights, training, evaluation, cli, ...): loading
    weights into a model lives in the top-level API."""
    import ast
    from pathlib import Path

    allowed = ("alexnet.models", "alexnet.errors")
    for path in sorted(Path(alexnet.models.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                if name == "alexnet" or name.startswith("alexnet."):
                    assert name.startswith(allowed), f"{path.name} imports {name}"


def test_a_model_carries_one_metadata_object():
    model = alexnet.models.create_model("alexnet", num_classes=7, lrn=False)
    assert model.meta == alexnet.models.ModelMeta(arch="alexnet", options={"lrn": False})
    assert alexnet.models.meta_of(nn.Linear(2, 2)) == alexnet.models.ModelMeta()  # foreign: empty
    for old in ("model_name", "classes", "model_options", "preprocess", "weights_source"):
        assert not hasattr(model, old), old


@pytest.mark.slow
def test_lrn_compiles_to_one_kernel_forward_and_one_backward():
    """torch.compile fuses the window-sum LRN into a single kernel each way (here: inductor's C++ backend)."""
    import re

    from torch._inductor.utils import run_and_get_code

    from alexnet.models.layers import local_response_norm

    x = torch.randn(2, 96, 13, 13, requires_grad=True)
    compiled = torch.compile(lambda t: local_response_norm(t, 5, 2e-5, 0.75, 2.0))

    def run():
        y = compiled(x)
        y.backward(torch.ones_like(y))
        return y

    y, codes = run_and_get_code(run)
    kernels = [set(re.findall(r"\b(cpp_fused_\w+|triton_\w+) = ", code)) for code in codes]
    assert len(codes) == 2 and all(len(k) == 1 for k in kernels), kernels  # forward graph, backward graph
    torch.testing.assert_close(y, F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=2.0), rtol=1e-6, atol=0)


def grouped_conv_outputs(model, x) -> tuple[dict, dict]:
    """The model's outputs and conv4's weight gradients with each way of running grouped convolutions."""
    from alexnet.models import set_grouped_conv

    out, grads = {}, {}
    for impl in ("cudnn", "nchw", "split"):
        set_grouped_conv(model, impl)
        model.zero_grad()
        y = model.eval()(x)
        y.square().sum().backward()
        out[impl], grads[impl] = y.detach(), model.features.conv4.weight.grad.clone()
    return out, grads


@pytest.mark.parametrize("channels_last", [False, True])
def test_grouped_convolutions_compute_the_same_however_they_run(channels_last):
    """cudnn (groups), nchw and split: the same outputs and gradients from the same parameters."""
    from alexnet.models import GroupedConv2d, set_grouped_conv

    torch.manual_seed(0)
    model = create_model("alexnet", num_classes=10)
    keys = {k: v.shape for k, v in model.state_dict().items()}
    assert keys["features.conv2.weight"] == (256, 48, 5, 5)  # the weights stay those of a grouped conv
    assert sum(isinstance(m, GroupedConv2d) for m in model.modules()) == 3
    x = torch.randn(2, 3, 224, 224)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    out, grads = grouped_conv_outputs(model, x)
    assert {k: v.shape for k, v in model.state_dict().items()} == keys
    for impl in ("nchw", "split"):
        torch.testing.assert_close(out[impl], out["cudnn"], rtol=1e-4, atol=1e-5)
        # different kernels sum in different orders: each is ~1e-4 (0.07% of the largest) from a float64
        # reference here, so the weight gradients are compared at 0.2% of the largest
        torch.testing.assert_close(grads[impl], grads["cudnn"], rtol=1e-4, atol=2e-3 * float(grads["cudnn"].abs().max()))
    with pytest.raises(BadOptionError, match="grouped_conv must be one of"):
        set_grouped_conv(model, "fast")


def test_nchw_grouped_convolutions_hand_the_convolution_nchw_operands(monkeypatch):
    """In a channels_last net, "nchw" must give the convolution an NCHW input and weight: cuDNN (and
    oneDNN) run channels_last when either operand is, so an NCHW input alone changed nothing."""
    import torch.nn.functional as F

    from alexnet.models import GroupedConv2d

    conv = GroupedConv2d(8, 8, 3, padding=1, groups=2).to(memory_format=torch.channels_last)
    conv.impl = "nchw"
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    seen, real = [], F.conv2d
    monkeypatch.setattr(F, "conv2d", lambda inp, w, *a: seen.append((inp.is_contiguous(), w.is_contiguous()))
                        or real(inp, w, *a))
    y = conv(x)
    assert seen == [(True, True)]
    assert y.is_contiguous(memory_format=torch.channels_last)  # handed back in the net's format


# --- timm's head API: num_features, get_classifier, reset_classifier ------------------------------------

HEAD_KEY = {"alexnet": "fc8", "alexnet_caffe": "fc8", "caffenet": "fc8", "alexnet_owt": "classifier.6",
            "cifar_4layer": "fc10"}


@pytest.mark.parametrize("name", ALL)
def test_reset_classifier_replaces_the_last_layer_in_place(name):
    torch.manual_seed(0)
    s = model_info(name).input_size
    model = create_model(name, num_classes=7).eval()
    model.meta.classes = [{"index": i, "name": f"c{i}"} for i in range(7)]
    head, keys = HEAD_KEY[name], {k: v.shape for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, s, s)
    with torch.no_grad():
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
    assert model.num_features == pre.shape[1] == (1024 if name == "cifar_4layer" else 4096)
    assert model.get_classifier() is model.get_submodule(head) and model.num_classes == 7

    model.reset_classifier(7)  # same classes: a fresh layer, names kept
    assert model.meta.classes is not None and model.get_classifier() is model.get_submodule(head)
    model.reset_classifier(3)
    assert model.num_classes == 3 and model.meta.classes is None and model.meta.arch == name
    assert list(model.state_dict()) == list(keys)  # same names, in the same order
    assert model.state_dict()[f"{head}.weight"].shape == (3, model.num_features)
    with torch.no_grad():
        assert model(x).shape == (2, 3)
    w, b = model.get_classifier().weight, model.get_classifier().bias
    assert w.requires_grad and b.requires_grad
    if name == "alexnet_owt":  # PyTorch's default init, as torchvision: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        assert w.abs().max() <= 1 / 64 and w.std().item() == pytest.approx(1 / 64 / math.sqrt(3), rel=0.05)
    else:  # the model's own: N(0, 0.01), zero biases (paper, Caffe and layers-18pct alike for the last layer)
        assert w.std().item() == pytest.approx(0.01, rel=0.05) and torch.count_nonzero(b) == 0

    model.reset_classifier(0)  # timm: no classifier, the model returns its pre-logits features
    assert isinstance(model.get_classifier(), nn.Identity) and model.num_classes == 0
    assert set(model.state_dict()) == set(keys) - {f"{head}.weight", f"{head}.bias"}
    with torch.no_grad():
        torch.testing.assert_close(model(x), pre)
    model.reset_classifier(5)
    assert list(model.state_dict()) == list(keys) and model(x).shape == (2, 5)


@pytest.mark.parametrize("bad", [-1, True, 2.5, "3", None])
def test_reset_classifier_refuses_a_bad_count(bad):
    with pytest.raises(BadOptionError, match="num_classes must be an integer >= 0"):
        create_model("cifar_4layer").reset_classifier(bad)


def test_reset_classifier_keeps_the_models_dtype_and_uses_its_init():
    model = create_model("cifar_4layer").double()
    model.reset_classifier(4)
    assert model.get_classifier().weight.dtype == torch.float64
    assert model(torch.zeros(1, 3, 32, 32, dtype=torch.float64)).shape == (1, 4)
    torch.manual_seed(1)
    fresh = create_model("alexnet", num_classes=10).fc8
    torch.manual_seed(1)
    model = create_model("alexnet", num_classes=3)
    torch.manual_seed(1)
    model.reset_classifier(10)
    # the same init as the builder's for fc8 (reset_parameters), not PyTorch's default
    torch.testing.assert_close(model.fc8.weight.std(), fresh.weight.std(), rtol=0.05, atol=0)
    assert [n for n, _ in model.named_layers()][-1] == "fc8"
    model.reset_classifier(0)
    assert [n for n, _ in model.named_layers()] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
    model.reset_parameters()  # still works without fc8


def test_a_head_replaced_by_hand_reports_its_class_count(tmp_path):
    from alexnet.models import meta_of
    from alexnet.weights import read_weights, save_weights

    cifar = create_model("cifar_4layer")
    cifar.fc10 = nn.Linear(1024, 3)
    assert cifar.num_classes == 3
    owt = create_model("alexnet_owt")
    owt.meta.classes = [{"index": i, "name": f"c{i}"} for i in range(1000)]
    owt.classifier[6] = nn.Linear(4096, 5)
    assert owt.num_classes == 5
    assert meta_of(owt).classes is None and meta_of(owt).arch == "alexnet_owt"  # 1000 names, 5 outputs
    save_weights(tmp_path / "c.safetensors", cifar)
    assert read_weights(tmp_path / "c.safetensors").num_classes == 3


# --- torch.hub: torchvision's pretrained= / weights= -----------------------------------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def hub_load(name, **kwargs):
    return torch.hub.load(str(ROOT), name, source="local", trust_repo=True, **kwargs)


def test_torch_hub_pretrained_false_and_weights_none_build_the_untrained_net():
    owt = hub_load("alexnet_owt", pretrained=False)
    assert type(owt).__name__ == "AlexNetOWT" and owt.num_classes == 1000 and owt.meta.source is None
    cifar = hub_load("cifar_4layer", weights=None, num_classes=3, lrn=False)
    assert cifar.num_classes == 3 and cifar.meta.options == {"lrn": False}
    net = hub_load("alexnet", pretrained=False, weights=None, towers=1)
    assert net.config.widths[0] == 48


@pytest.mark.parametrize("name", ["alexnet", "alexnet_caffe", "caffenet", "cifar_4layer"])
def test_torch_hub_pretrained_without_published_weights_is_refused(name):
    with pytest.raises(UserError, match=f"^there are no published weights for {name}; pass weights=PATH"):
        hub_load(name, pretrained=True)
    with pytest.raises(UserError, match="not both"):
        hub_load(name, pretrained=True, weights="x.safetensors")


def test_torch_hub_delegates_weights_to_alexnet_create_model(tmp_path, monkeypatch):
    from alexnet.weights import save_weights

    model = create_model("cifar_4layer", num_classes=4)
    path = save_weights(tmp_path / "w.safetensors", model)
    loaded = hub_load("cifar_4layer", weights=str(path))
    assert loaded.num_classes == 4 and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(),
                                                 strict=True))
    # pretrained=True: the published record (alexnet_owt: torchvision's); the download itself is not run here
    from torchvision.models import AlexNet_Weights

    loading = __import__("importlib").import_module("alexnet.weights.load")  # the module, not its load()
    calls = []
    monkeypatch.setattr(loading, "load", lambda source, **kw: calls.append((source, kw["arch"], kw["progress"]))
                        or "model")
    assert hub_load("alexnet_owt", pretrained=True, progress=False) == "model"
    assert hub_load("alexnet_owt", weights="DEFAULT") == "model"
    assert hub_load("alexnet_owt", weights=AlexNet_Weights.IMAGENET1K_V1) == "model"
    assert alexnet.create_model("alexnet_owt", pretrained=True) == "model"  # timm's way, without the hub
    assert calls == [("torchvision", "alexnet_owt", False)] + [("torchvision", "alexnet_owt", True)] * 3
    with pytest.raises(UserError, match="unknown weights .*IMAGENET1K_V1.* for alexnet"):
        alexnet.create_model("alexnet", weights=AlexNet_Weights.IMAGENET1K_V1)  # another net's weights
    with pytest.raises(BadOptionError, match="pretrained must be True or False"):
        alexnet.create_model("alexnet_owt", pretrained="yes")


# --- option values: one BadOptionError for every model ---------------------------------------------------

@pytest.mark.parametrize("name,options,needle", [
    ("alexnet", {"dropout": 2.0}, "dropout must be in [0, 1), got 2.0"),
    ("alexnet_caffe", {"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
    ("caffenet", {"dropout": -0.1}, "dropout must be in [0, 1), got -0.1"),
    ("alexnet_owt", {"dropout": 2.0}, "dropout must be in [0, 1), got 2.0"),
    ("alexnet_owt", {"dropout": -1}, "dropout must be in [0, 1), got -1.0"),
    ("alexnet", {"towers": 3}, "towers must be 1 or 2, got 3"),
    ("cifar_4layer", {"activation": "gelu"}, "activation must be one of"),
])
def test_option_values_out_of_range_are_one_line_bad_option_errors(name, options, needle):
    with pytest.raises(BadOptionError) as e:
        create_model(name, **options)
    msg = str(e.value)
    assert msg.startswith(f"model {name!r}: option ") and needle in msg and "\n" not in msg, msg


# --- input size: a ValueError naming the size, compile and export unaffected -----------------------------

@pytest.mark.parametrize("name,size,message", [
    ("alexnet", 256, "alexnet takes 3x224x224 input (224 padded as 227, docs/PAPER.md), got 3x256x256"),
    ("alexnet_caffe", 224, "alexnet_caffe takes 3x227x227 input, got 3x224x224"),
    ("caffenet", 224, "caffenet takes 3x227x227 input, got 3x224x224"),
    ("cifar_4layer", 64, "cifar_4layer takes 3x32x32 input, got 3x64x64"),
])
def test_wrong_input_size_is_a_value_error_naming_the_models_size(name, size, message):
    from alexnet.models import InputSizeError

    model = create_model(name).eval()
    x = torch.zeros(1, 3, size, size)
    for run in (model, model.forward_features, lambda t: summarize(model, size)):
        with pytest.raises(InputSizeError) as e:
            run(x)
        assert str(e.value) == message
        assert isinstance(e.value, ValueError) and isinstance(e.value, UserError)
    with pytest.raises(ValueError, match="got a tensor of shape"):  # unbatched
        model(torch.zeros(3, model_info(name).input_size, model_info(name).input_size))
    s = model_info(name).input_size
    assert model(torch.zeros(1, 3, s, s)).shape == (1, model.num_classes)


def test_sizes_that_fit_still_run():
    assert create_model("alexnet")(torch.zeros(1, 3, 227, 227)).shape == (1, 1000)  # 227: no padding needed
    assert create_model("alexnet_owt")(torch.zeros(1, 3, 256, 256)).shape == (1, 1000)  # adaptive pooling


def test_summarize_feeds_the_models_dtype_and_device():
    rows = summarize(create_model("alexnet").double(), 224)
    assert [(r.name, r.output_shape) for r in rows] == \
        [(r.name, r.output_shape) for r in summarize(create_model("alexnet"), 224)]
    meta_rows = summarize(create_model("cifar_4layer").to("meta"), 32)  # no data: shapes only
    assert meta_rows[-1].output_shape == (10,)


@pytest.mark.parametrize("name", ["cifar_4layer", "alexnet"])
def test_input_check_keeps_compile_and_export_whole(name):
    """The check compares static dimensions: one graph, no break, under torch.compile (traced by dynamo,
    fullgraph) and torch.export (with a dynamic batch); a wrong size still gets the same message."""
    from alexnet.models import InputSizeError

    torch.manual_seed(0)
    s = model_info(name).input_size
    model = create_model(name, num_classes=5).eval()
    x = torch.randn(2, 3, s, s)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(torch.compile(model, backend="eager", fullgraph=True)(x), expected)
        exported = torch.export.export(model, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch", max=64)}})
        torch.testing.assert_close(exported.module()(x), expected)
        assert exported.module()(torch.randn(3, 3, s, s)).shape == (3, 5)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on the input check's Python comparison
            traced = torch.jit.trace(model, x)  # docs/WEIGHTS.md: trace works, script does not
        torch.testing.assert_close(traced(torch.flip(x, [0])), model(torch.flip(x, [0])))
        torch._dynamo.reset()
        compiled = torch.compile(model, backend="eager")
        compiled(x)
        with pytest.raises(InputSizeError, match=f"takes 3x{s}x{s} input"):
            compiled(torch.randn(2, 3, s + 40, s + 40))
        with pytest.raises(InputSizeError, match=f"takes 3x{s}x{s} input"):
            torch.export.export(model, (torch.randn(1, 3, s + 40, s + 40),))
    torch._dynamo.reset()


@pytest.mark.parametrize("name, size", [("alexnet", 32), ("alexnet_caffe", 48), ("alexnet_owt", 32),
                                        ("alexnet_owt", 62)])
def test_an_input_too_small_for_the_convolutions_is_the_same_one_line_error(name, size):
    """The final walkthrough: 32-px crops crashed inside pooling ("Output size is too small"), a RuntimeError
    that the CLI called unexpected; check_input_size finds it with one image of zeros before a run starts."""
    from alexnet.models.layers import InputSizeError
    from alexnet.models.registry import check_input_size

    model = create_model(name, num_classes=3).eval()
    with pytest.raises(InputSizeError, match=f"{name} takes 3x2\\d\\dx2\\d\\d input.*got 3x{size}x{size}"):
        model(torch.randn(1, 3, size, size))
    model.train()
    with pytest.raises(InputSizeError, match=f"got 3x{size}x{size}"):
        check_input_size(model, size)
    assert model.training  # restored
    check_input_size(model, 227 if name == "alexnet_caffe" else 224)
    if name == "alexnet_owt":
        check_input_size(model, 63)  # the smallest its convolutions and poolings take


def test_a_shapes_only_build_on_the_meta_device_imports_nothing_and_matches_the_real_net():
    # Option checks and `alexnet models` build nets on the meta device; the meta device's normal_ imports
    # about 900 modules (sympy among them) on first use, so the models' own init leaves meta layers alone.
    import subprocess
    import sys

    code = ("import sys, torch\nfrom alexnet.models import create_model, list_models\n"
            "before = set(sys.modules)\n"
            "for name in list_models():\n"
            "    with torch.device('meta'):\n"
            "        m = create_model(name, num_classes=7)\n"
            "        m.reset_classifier(5)\n"
            "    print(name, sum(p.numel() for p in m.parameters()))\n"
            "print(len(set(sys.modules) - before), 'sympy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    *rows, last = [line for line in out if line]
    new_modules, sympy = last.split()
    assert int(new_modules) < 20 and sympy == "False", last
    for row in rows:
        name, count = row.split()
        real = create_model(name, num_classes=7)
        real.reset_classifier(5)
        assert int(count) == sum(p.numel() for p in real.parameters()) > 0, name
