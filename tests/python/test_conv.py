"""ConvNets from Python: construction, holomorphic EP against the exact gradient, the BP twin."""
import numpy as np
import pytest

import eqprop


def small_convnet(pool="softmax", feedforward=False, activation="holotanh"):
    return eqprop.Network(sizes=[], readout=3, activation=activation, init_scale=0.6, seed=4, conv=[3, 4],
                          input_shape=(2, 8, 8), conv_padding=["same", "valid"], conv_pool=[pool],
                          feedforward=feedforward)


def batch(net, n=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, net.sizes[0])), rng.integers(0, 3, n)


def test_convnet_shapes_and_layout():
    net = small_convnet()
    assert net.conv == [3, 4]
    assert net.sizes == [128, 4 * 4 * 3, 4]  # 2x8x8 input, 4x4x3 after pooling, 1x1x4
    assert [b["name"] for b in net.layout][:2] == ["W0", "b0"]
    assert net.layout[0]["shape"] == (3, 3 * 3 * 2)  # C_out x k*k*C_in
    with pytest.raises(eqprop.ConfigError):
        eqprop.Network(sizes=[], readout=3, conv=[3])  # no input_shape
    with pytest.raises(eqprop.ConfigError):
        eqprop.Network(sizes=[], readout=3, conv=[3], input_shape=(1, 4, 4), conv_pool=["median"])


def test_holomorphic_ep_matches_implicit_gradient_on_convnet():
    net = small_convnet()
    x, y = batch(net)
    ref, _ = eqprop.implicit_gradient(net, x, y, steps=20000)
    err = {}
    for n in (2, 4, 8):
        g, _ = eqprop.estimate(net, x, y, kind="holomorphic", n_points=n, beta=0.1, free_steps=20000,
                               nudged_steps=20000, tol=1e-15, stop_early=True)
        err[n] = eqprop.relative_error(g, ref)
    assert err[4] < 1e-4 and err[8] < 1e-8 and err[2] > 10 * err[4]


def test_backprop_twin_matches_finite_differences():
    net = small_convnet(feedforward=True, activation="tanh")
    x, y = batch(net, 3)
    g, info = eqprop.backprop_gradient(net, x, y)
    fd = eqprop.finite_difference_gradient(net, x, y, steps=1, target="steps", stencil="central4", h=1e-3)
    assert eqprop.relative_error(g, fd) < 1e-8
