"""The paper's experiments: Figure 1 (ReLU vs tanh on CIFAR-10), the ablations of sections 3-4, and an
HTML report of a training run."""
