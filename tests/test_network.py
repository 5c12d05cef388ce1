"""Network IR: shape inference, error cases, zoo parameter and MAC totals."""
import pytest

from gen.network import Add, Conv2d, GlobalAvgPool, Linear, MaxPool, Network, zoo


def test_zoo_lists_the_required_networks():
    assert {"digits", "vgg8", "vgg16", "resnet18", "resnet34", "resnet20", "resnet32"} <= set(zoo())
    with pytest.raises(ValueError, match="unknown network 'nope'"):
        zoo("nope")


# Well-known totals (torchvision / He et al. / Simonyan & Zisserman), with tolerances that cover
# pimgen's counting (one bias per output channel instead of BatchNorm's two parameters) and
# the CIFAR ResNets' 1x1 projection shortcuts (option B) instead of option A.
@pytest.mark.parametrize("name, params, p_tol, macs, m_tol", [
    ("vgg16", 138_357_544, 0.0, 15.47e9, 0.01),      # torchvision vgg16: 138,357,544 params (biases incl.)
    ("resnet34", 21.8e6, 0.01, 3.6e9, 0.03),         # ≈21.8 M params, ≈3.6 G MACs
    ("resnet18", 11.69e6, 0.01, 1.82e9, 0.01),       # ≈11.7 M params, ≈1.8 G MACs
    ("resnet20", 0.27e6, 0.02, 40.8e6, 0.02),        # He et al.: 0.27 M params, ≈41 M MACs
    ("resnet32", 0.46e6, 0.02, 69.1e6, 0.02),        # 0.46 M params, ≈69 M MACs
])
def test_zoo_totals_match_well_known_figures(name, params, p_tol, macs, m_tol):
    net = zoo(name)
    assert net.params == pytest.approx(params, rel=p_tol)
    assert net.macs == pytest.approx(macs, rel=m_tol)


def test_digits_and_vgg8_totals_by_hand():
    # digits: conv 1->16, 16->32, pool, 32->32, pool, fc 128->10 (3x3 kernels, same padding, 8x8 input)
    d = zoo("digits")
    assert d.params == (9 * 1 * 16 + 16) + (9 * 16 * 32 + 32) + (9 * 32 * 32 + 32) + (128 * 10 + 10)
    assert d.macs == 64 * 9 * 1 * 16 + 64 * 9 * 16 * 32 + 16 * 9 * 32 * 32 + 128 * 10
    # NeuroSim's VGG-8: 128,128,P,256,256,P,512,512,P at 32/16/8, FC 8192->1024->10
    v = zoo("vgg8")
    convs = [(3, 128, 32), (128, 128, 32), (128, 256, 16), (256, 256, 16), (256, 512, 8), (512, 512, 8)]
    w = sum(9 * ci * co for ci, co, _ in convs) + 8192 * 1024 + 1024 * 10
    b = sum(co for _, co, _ in convs) + 1024 + 10
    assert v.params == w + b
    assert v.macs == sum(s * s * 9 * ci * co for ci, co, s in convs) + 8192 * 1024 + 1024 * 10


def test_shape_inference_on_zoo():
    r = zoo("resnet34")
    assert r.input_shape == (3, 224, 224)
    assert r.out_shape("conv1") == (64, 112, 112)
    assert r.out_shape("pool1") == (64, 56, 56)
    assert r.out_shape("layer2.0.downsample") == (128, 28, 28)
    assert r.out_shape("layer4.2.add") == (512, 7, 7)
    assert r.out_shape("avgpool") == (512, 1, 1)
    assert r.output == "fc" and r.output_shape == (1000, 1, 1)
    assert len(r.weight_layers) == 1 + 2 * (3 + 4 + 6 + 3) + 3 + 1
    v = zoo("vgg16")
    assert v.out_shape("pool5") == (512, 7, 7) and v.output_shape == (1000, 1, 1)
    c = zoo("resnet20")
    assert c.out_shape("layer3.2.add") == (64, 8, 8)
    assert [l.name for l in c.weight_layers][:3] == ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
    assert zoo("digits").output_shape == (10, 1, 1)


def test_names_are_stable_and_unique():
    for n in zoo():
        names = [l.name for l in zoo(n).layers]
        assert len(names) == len(set(names))
    assert "layer1.0.conv1" in [l.name for l in zoo("resnet18").layers]


def test_conv_output_size_stride_pad():
    net = Network("t", (3, 9, 7), [Conv2d(name="a", cin=3, cout=5, k=3, stride=2, pad=1),
                                   Conv2d(name="b", cin=5, cout=2, k=2, stride=1, pad=0)])
    assert net.out_shape("a") == (5, 5, 4)        # floor((9+2-3)/2)+1, floor((7+2-3)/2)+1
    assert net.out_shape("b") == (2, 4, 3)


@pytest.mark.parametrize("layers, match", [
    ([Conv2d(name="a", cin=4, cout=8, k=3)], "channel mismatch"),
    ([Conv2d(name="a", cin=3, cout=8, k=7, pad=0)], "larger than the padded input 5x5"),
    ([Conv2d(name="a", cin=3, cout=8, k=3, stride=3)], "stride=3"),
    ([Conv2d(name="a", cin=3, cout=3, k=1), Add(name="j", inputs=("a", "ghost"))], "dangling"),
    ([Conv2d(name="a", cin=3, cout=3, k=1), Add(name="j", inputs=("a",))], "exactly 2 inputs"),
    ([Conv2d(name="a", cin=3, cout=4, k=1), Add(name="j", inputs=("a", "input"))], "input shapes differ"),
    ([Conv2d(name="a", cin=3, cout=3, k=1), Conv2d(name="a", cin=3, cout=3, k=1)], "duplicate"),
    ([Linear(name="fc", in_features=74, out_features=2)], "in_features=74"),
    ([MaxPool(name="p", k=6)], "does not fit"),
    ([Conv2d(name="input", cin=3, cout=3, k=1)], "reserved"),
])
def test_inconsistencies_are_refused(layers, match):
    with pytest.raises(ValueError, match=match):
        Network("bad", (3, 5, 5), layers)


def test_add_and_gap_and_linear_flatten():
    net = Network("t", (2, 4, 4), [
        Conv2d(name="a", cin=2, cout=3, k=3, pad=1),
        Conv2d(name="b", cin=3, cout=3, k=3, pad=1),
        Add(name="j", inputs=("a", "b")),
        MaxPool(name="p", k=2),
        Linear(name="fc", in_features=3 * 2 * 2, out_features=5),
    ])
    assert net.out_shape("j") == (3, 4, 4) and net.out_shape("p") == (3, 2, 2)
    assert net.output_shape == (5, 1, 1)
    assert net.is_raw_output("fc") and not net.is_raw_output("a")
    g = Network("g", (6, 3, 3), [GlobalAvgPool(name="gap"), Linear(name="fc", in_features=6, out_features=2)])
    assert g.out_shape("gap") == (6, 1, 1)
