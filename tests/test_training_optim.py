"""PaperSGD: the paper's update by hand, equal to torch's SGD at a constant lr, different once lr changes."""

import pytest
import torch
from torch import nn

from alexnet.errors import BadOptionError
from alexnet.training.optim import PaperSGD, build_optimizer


def _grads(seed: int, shape=(4, 3)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(6)]


def test_paper_sgd_matches_the_formula_by_hand():
    w0 = torch.randn(4, 3, dtype=torch.float64)
    p = nn.Parameter(w0.clone())
    opt = PaperSGD([p], lr=0.05, momentum=0.9, weight_decay=5e-4)
    w, v = w0.clone(), torch.zeros_like(w0)
    for k, g in enumerate(_grads(0)):
        lr = 0.05 if k < 3 else 0.005  # change of lr half-way
        for group in opt.param_groups:
            group["lr"] = lr
        p.grad = g.clone()
        opt.step()
        v = 0.9 * v - 0.0005 * lr * w - lr * g  # the paper, section 5
        w = w + v
        torch.testing.assert_close(p.detach(), w, rtol=0, atol=1e-14)
        torch.testing.assert_close(opt.state[p]["velocity"], v, rtol=0, atol=1e-14)


def _run(opt_name: str, lrs: list[float]) -> torch.Tensor:
    torch.manual_seed(0)
    model = nn.Linear(5, 3).double()
    opt = build_optimizer(opt_name, model, lr=lrs[0], momentum=0.9, weight_decay=5e-4)
    x = torch.randn(16, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    for lr in lrs:
        for group in opt.param_groups:
            group["lr"] = lr
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_equal_to_torch_sgd_while_lr_is_constant():
    torch.testing.assert_close(_run("paper", [0.1] * 20), _run("sgd", [0.1] * 20), rtol=1e-12, atol=1e-12)


def test_differs_from_torch_sgd_after_the_lr_changes():
    # torch's buffer holds gradients and is applied at the *new* lr at once; the paper's velocity still
    # carries the steps taken at the old lr (optim.py's docstring). Same before the change, not after.
    lrs = [0.1] * 10 + [0.01] * 3
    paper, torch_sgd = _run("paper", lrs), _run("sgd", lrs)
    assert not torch.allclose(paper, torch_sgd, rtol=1e-6, atol=1e-9)
    before = [0.1] * 10
    torch.testing.assert_close(_run("paper", before), _run("sgd", before), rtol=1e-12, atol=1e-12)


def test_first_step_after_a_lr_drop_keeps_the_old_velocity():
    # One parameter, no decay, grad 0 after the drop: torch's step shrinks tenfold, the paper's does not.
    def step_after_drop(name):
        p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        opt = (PaperSGD([p], lr=1.0, momentum=0.9, weight_decay=0.0) if name == "paper"
               else torch.optim.SGD([p], lr=1.0, momentum=0.9))
        p.grad = torch.ones(1, dtype=torch.float64)
        opt.step()  # w = -1
        for group in opt.param_groups:
            group["lr"] = 0.1
        p.grad = torch.zeros(1, dtype=torch.float64)
        before = p.item()
        opt.step()
        return p.item() - before

    assert step_after_drop("paper") == pytest.approx(-0.9)  # 0.9 * v, v = -1 (taken at lr 1)
    assert step_after_drop("sgd") == pytest.approx(-0.09)   # lr_new * 0.9 * b, b = 1


def test_nesterov_and_bias_decay_groups():
    model = nn.Linear(4, 2)
    opt = build_optimizer("nesterov", model, lr=0.1, momentum=0.9, weight_decay=1e-3)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["nesterov"]
    opt = build_optimizer("paper", model, lr=0.1, momentum=0.9, weight_decay=1e-3, bias_decay=False)
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [0.0, 1e-3]
    assert [p.ndim for p in opt.param_groups[1]["params"]] == [1]


def test_bad_values():
    with pytest.raises(BadOptionError):
        PaperSGD([nn.Parameter(torch.zeros(1))], momentum=1.0)
    with pytest.raises(BadOptionError):
        build_optimizer("adam", nn.Linear(2, 2), lr=0.1, momentum=0.9, weight_decay=0)


def test_state_dict_round_trip_with_weights_only(tmp_path):
    model = nn.Linear(3, 2)
    opt = PaperSGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    torch.save(opt.state_dict(), tmp_path / "o.pt")
    opt2 = PaperSGD(model.parameters(), lr=0.1)
    opt2.load_state_dict(torch.load(tmp_path / "o.pt", weights_only=True))
    for p in model.parameters():
        torch.testing.assert_close(opt2.state[p]["velocity"], opt.state[p]["velocity"], rtol=0, atol=0)


def test_bias_learning_rate_factor_in_the_trainers_step(monkeypatch):
    """cuda-convnet's epsB = 2 epsW (Caffe's lr_mult 2): the trainer's step moves biases twice as far as
    with factor 1, and weights exactly as far."""
    import numpy as np

    from alexnet.data import ArrayDataset
    from alexnet.data.demo import make_demo_images
    from alexnet.training import TrainConfig
    from alexnet.training.trainer import Trainer

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    images, labels, classes = make_demo_images(32, 36, seed=1, num_classes=4)
    data = ArrayDataset(images, labels, classes=classes)
    moves = {}
    for factor in (1.0, 2.0):
        cfg = TrainConfig(arch="cifar_4layer", crop_size=32, batch_size=16, val_split=0.0, ten_crop=False,
                          warmup_epochs=0, schedule="constant", bias_decay=False, bias_lr_factor=factor,
                          lighting=0.0, device="cpu")
        t = Trainer(cfg, dataset=data, run_dir=None, progress=False, handle_signals=False)
        before = {n: p.detach().clone() for n, p in t.module.named_parameters()}
        x, y = next(iter(t.train_loader))
        t.train_step(x, y)
        t.train_loader.close()
        moves[factor] = {n: (p.detach() - before[n]) for n, p in t.module.named_parameters()}
    for name, move in moves[2.0].items():
        expected = moves[1.0][name] * (2.0 if name.endswith("bias") else 1.0)
        assert move.abs().max() > 0, name
        np.testing.assert_allclose(move.numpy(), expected.numpy(), rtol=1e-5, atol=1e-9, err_msg=name)


def test_fused_paper_sgd_is_the_formula_too():
    """fused=True (one compiled pass per tensor, the lr a tensor): the paper's update by hand, over a
    change of lr and two groups, with the same state (a fused run resumes unfused and back)."""
    w0 = [torch.randn(4, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)]
    ps = [nn.Parameter(w.clone()) for w in w0]
    opt = PaperSGD([{"params": ps[:1], "weight_decay": 5e-4}, {"params": ps[1:], "weight_decay": 0.0}],
                   lr=0.05, momentum=0.9, fused=True)
    w, v = [t.clone() for t in w0], [torch.zeros_like(t) for t in w0]
    for k, g in enumerate(_grads(1)):
        lr = 0.05 if k < 3 else 0.005
        for group in opt.param_groups:
            group["lr"] = lr
        grads = [g, g[0]]
        for p, gg in zip(ps, grads, strict=True):
            p.grad = gg.clone()
        opt.step()
        for i, wd in enumerate((5e-4, 0.0)):
            v[i] = 0.9 * v[i] - wd * lr * w[i] - lr * grads[i]
            w[i] = w[i] + v[i]
            torch.testing.assert_close(ps[i].detach(), w[i], rtol=0, atol=1e-14)
            torch.testing.assert_close(opt.state[ps[i]]["velocity"], v[i], rtol=0, atol=1e-14)
    plain = PaperSGD([{"params": ps[:1], "weight_decay": 5e-4}, {"params": ps[1:], "weight_decay": 0.0}], lr=0.05)
    plain.load_state_dict(opt.state_dict())
    assert torch.equal(plain.state[ps[0]]["velocity"], opt.state[ps[0]]["velocity"])


@pytest.mark.parametrize("name", ["paper", "sgd", "nesterov"])
def test_fused_optimizers_take_the_same_steps(name):
    def run(fused: bool) -> torch.Tensor:
        torch.manual_seed(0)
        model = nn.Linear(5, 3)
        opt = build_optimizer(name, model, lr=0.1, momentum=0.9, weight_decay=5e-4, fused=fused)
        x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
        for lr in [0.1] * 4 + [0.01] * 3:
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    torch.testing.assert_close(run(True), run(False), rtol=1e-5, atol=1e-6)
