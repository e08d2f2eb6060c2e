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
