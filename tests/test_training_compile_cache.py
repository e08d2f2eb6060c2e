"""torch.compile's caches last across runs: the FX graph and AOTAutograd caches are on, their folder is
recorded in resolved.yaml, and a second compiled run loads what the first compiled."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from alexnet.training import TrainConfig
from alexnet.training.distributed import DistContext
from alexnet.training.resolve import apply, compile_cache_dir, resolve


def test_a_compiled_run_turns_the_caches_on_and_names_their_folder(tmp_path, monkeypatch):
    from torch._functorch import config as functorch
    from torch._inductor import config as inductor

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # apply() leaves the thread count alone
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("TORCHINDUCTOR_FX_GRAPH_CACHE", "TORCHINDUCTOR_AUTOGRAD_CACHE"):
        monkeypatch.delenv(name, raising=False)
    r = resolve(TrainConfig(arch="cifar_4layer", device="cpu", compile=True), DistContext())
    assert r.compile_cache == str(tmp_path / "cache") and r.to_dict()["compile_cache"] == r.compile_cache
    # torch's config modules restore themselves with patch(); monkeypatch's undo deletes their entries
    with inductor.patch(fx_graph_cache=False), functorch.patch(enable_autograd_cache=False):
        apply(r)
        assert inductor.fx_graph_cache is True and functorch.enable_autograd_cache is True
    assert resolve(TrainConfig(arch="cifar_4layer", device="cpu", compile=False), DistContext()).compile_cache is None
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    assert os.path.basename(compile_cache_dir()).startswith("torchinductor_")  # torch's own default


_RUN = textwrap.dedent("""
    import json, sys
    from alexnet.data import ArrayDataset
    from alexnet.data.demo import make_demo_images
    from alexnet.training import TrainConfig, train
    from torch._dynamo.utils import counters
    images, labels, classes = make_demo_images(64, 36, seed=3, num_classes=4)
    train(TrainConfig(arch="cifar_4layer", crop_size=32, epochs=1, batch_size=16, val_split=0.25,
                      warmup_epochs=0, max_steps=1, compile=True, ten_crop=False, out=sys.argv[1]),
          dataset=ArrayDataset(images, labels, classes=classes), progress=False)
    print(json.dumps({**counters["inductor"], **counters["aot_autograd"]}))
""")


@pytest.mark.slow
def test_a_second_compiled_run_loads_the_first_ones_graphs(tmp_path):
    """About 40 s on a 2-core CPU for the first run (C++ kernels compiled), 4 s for the second."""
    cache = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    counts = []
    for run in ("a", "b"):
        p = subprocess.run([sys.executable, "-c", _RUN, str(tmp_path / run)], capture_output=True, text=True,
                           env=env, timeout=600)
        assert p.returncode == 0, p.stderr
        counts.append(json.loads(p.stdout.strip().splitlines()[-1]))
        assert yaml.safe_load((tmp_path / run / "resolved.yaml").read_text())["compile_cache"] == str(cache)
    first, second = counts
    assert first.get("fxgraph_cache_miss", 0) > 0 and not first.get("fxgraph_cache_hit")
    assert second.get("fxgraph_cache_hit", 0) > 0 and not second.get("fxgraph_cache_miss"), second
    assert second.get("autograd_cache_hit", 0) > 0, second


_ONE_SHAPE = textwrap.dedent("""
    import json, sys
    from alexnet.data import ArrayDataset
    from alexnet.data.demo import make_demo_images
    from alexnet.training import TrainConfig, train
    from torch._dynamo.utils import counters
    images, labels, classes = make_demo_images(64, 36, seed=3, num_classes=4)
    r = train(TrainConfig(arch="cifar_4layer", crop_size=32, epochs=1, batch_size=12, val_split=0.25,
                          warmup_epochs=0, compile=True, ten_crop=True, out=sys.argv[1]),
              dataset=ArrayDataset(images, labels, classes=classes), progress=True)
    print(json.dumps({"frames": counters["frames"]["ok"], "ten": r.final["ten_crop_top1_err"],
                      "time": r.final["time"]}))
""")


@pytest.mark.slow
def test_a_compiled_run_compiles_the_net_once_for_training_and_once_for_evaluation(tmp_path):
    """16 held-out images in batches of 12 (a partial last batch) and the final 10 crops (160 crops): the
    evaluation runs in one batch shape, so the net is compiled twice in all, not four times. The run
    says when it compiles."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-c", _ONE_SHAPE, str(tmp_path / "run")], capture_output=True, text=True,
                       env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    out = json.loads(lines[-1])
    assert out["frames"] == 2 and out["ten"] is not None, out
    # the compilation is announced before the first step (a still bar is not a hang) and timed after it
    said = [line for line in lines if line.startswith("compil")]
    assert len(said) == 4 and said[0].startswith("compiling the model (the first step") and "cache" in said[0], said
    assert said[1].startswith("compiled in ") and said[1].endswith(" s"), said
    assert said[2] == "compiling the model for evaluation", said
    assert said[3].startswith("compiled for evaluation in ") and said[3].endswith(" s"), said
    # the run's time says how much went to compiling
    assert out["time"]["compilation_s"] > 0 and out["time"]["training_s"] >= 0, out
