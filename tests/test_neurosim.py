"""NeuroSim network CSV: reading, writing, round trip and malformed files."""
import pytest

from gen.network import Conv2d, Linear, MaxPool, zoo
from gen.neurosim import format_neurosim_csv, parse_neurosim_csv, read_neurosim_csv, write_neurosim_csv

# DNN+NeuroSim's NetWork_VGG8.csv (CIFAR-10 VGG-8), as shipped with the simulator.
NEUROSIM_VGG8 = """32,32,3,3,3,128,0,1
32,32,128,3,3,128,1,1
16,16,128,3,3,256,0,1
16,16,256,3,3,256,1,1
8,8,256,3,3,512,0,1
8,8,512,3,3,512,1,1
1,1,8192,1,1,1024,0,1
1,1,1024,1,1,10,0,1
"""


def test_vgg8_writes_neurosims_file():
    assert format_neurosim_csv(zoo("vgg8")) == NEUROSIM_VGG8


def test_reading_neurosims_vgg8(tmp_path):
    p = tmp_path / "NetWork_VGG8.csv"
    p.write_text(NEUROSIM_VGG8)
    net = read_neurosim_csv(p)
    assert net.name == "VGG8"
    assert net.input_shape == (3, 32, 32)
    kinds = [type(l) for l in net.layers]
    assert kinds == [Conv2d, Conv2d, MaxPool, Conv2d, Conv2d, MaxPool, Conv2d, Conv2d, MaxPool, Linear, Linear]
    assert net.params == zoo("vgg8").params and net.macs == zoo("vgg8").macs
    assert all(l.pad == 1 for l in net.layers if isinstance(l, Conv2d))


@pytest.mark.parametrize("name", ["digits", "vgg8", "vgg16"])
def test_round_trip_sequential_networks(name, tmp_path):
    net = zoo(name)
    p = tmp_path / f"{name}.csv"
    write_neurosim_csv(net, p)
    back = read_neurosim_csv(p)
    sig = lambda n: [(type(l).__name__, getattr(l, "cin", None), getattr(l, "cout", None), getattr(l, "k", None),
                      getattr(l, "stride", None), getattr(l, "pad", None), n.out_shape(l)) for l in n.layers]
    assert sig(back) == sig(net)
    assert format_neurosim_csv(back) == p.read_text()


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet20", "resnet32"])
def test_round_trip_resnets(name):
    """Residual joins have no row; the file still round-trips and keeps every conv/FC layer."""
    net = zoo(name)
    text = format_neurosim_csv(net)
    back = parse_neurosim_csv(text, name)
    assert format_neurosim_csv(back) == text
    assert back.macs == net.macs and back.params == net.params
    assert len(text.splitlines()) == len(net.weight_layers)


def test_resnet_rows_by_hand():
    rows = format_neurosim_csv(zoo("resnet34")).splitlines()
    assert rows[0] == "224,224,3,7,7,64,1,2"          # conv1, followed by the max-pool
    assert rows[1] == "56,56,64,3,3,64,0,1"
    assert "56,56,64,1,1,128,0,2" in rows             # layer2.0 projection shortcut
    assert rows[-1] == "1,1,512,1,1,1000,0,1"         # fc after the global average pool


@pytest.mark.parametrize("text, line, reason", [
    ("", None, "no layer rows"),
    ("32,32,3,3,3,16,0,1\n32,32,16,3,3\n", 2, "expected 8 comma-separated integers"),
    ("32,32,3,3,3,16,0,1\n\n32,32,16,3,3,x,0,1\n", 3, "OFM channels 'x' is not a number"),
    ("32,32,3,3,3,16,0,1.5\n", 1, "is not an integer"),
    ("32,32,3,3,3,16,0,3\n", 1, "stride must be 1 or 2"),
    ("32,32,3,3,5,16,0,1\n", 1, "not square"),
    ("32,32,3,3,3,16,2,1\n", 1, "pooling flag must be 0 or 1"),
    ("32,32,3,3,3,0,0,1\n", 1, "OFM channels must be >= 1"),
    ("32,32,3,3,3,16,0,1\n16,16,16,3,3,16,0,1\n", 2, "IFM 16x16x16 does not follow"),
    ("32,32,3,3,3,16,1,1\n32,32,16,3,3,16,0,1\n", 2, "does not follow"),
    ("1,1,3,4,4,8,0,1\n", 1, "larger than the padded input"),
    ("1,1,10,1,1,5,0,2\n", 1, "FC layer"),
])
def test_malformed_files_are_refused_with_line_and_reason(text, line, reason):
    with pytest.raises(ValueError) as e:
        parse_neurosim_csv(text)
    msg = str(e.value)
    assert reason in msg
    if line is not None:
        assert f"line {line}:" in msg


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_neurosim_csv(tmp_path / "nope.csv")


def test_unwritable_padding():
    from gen.network import Network
    net = Network("p", (3, 8, 8), [Conv2d(name="c", cin=3, cout=4, k=3, pad=0)])
    with pytest.raises(ValueError, match="pad=0 cannot be written"):
        format_neurosim_csv(net)
