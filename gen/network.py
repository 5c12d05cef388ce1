"""Network IR: a small typed graph of CNN layers with shape inference, and the model zoo.

A :class:`Network` is an ordered list of layers (a topological order). Every layer has a
stable ``name`` and names its producers in ``inputs``; an empty ``inputs`` means "the
previous layer" (or the network input for the first layer). The network input is called
``"input"``. ReLU and requantization are folded into the producing layer (DESIGN.md §3):
every ``Conv2d``/``Linear`` requantizes to unsigned ``a_bits`` activations, except the
network's last layer, which outputs raw int32 accumulators.

Shapes are ``(C, H, W)``; a ``Linear`` layer sees its input flattened (``C*H*W``) and
produces ``(out_features, 1, 1)``.

Layers:

* :class:`Conv2d` ``(cin, cout, k, stride, pad, relu)`` — square kernels, stride 1 or 2, padding
  with the input's zero point.
* :class:`MaxPool` ``(k, stride, pad)`` — k×k, stride ``stride`` [k], padding ``pad`` [0] (padded
  positions never win).
* :class:`AvgPool` ``(k)`` — k×k, stride k, H and W divisible by k.
* :class:`GlobalAvgPool` — average over H×W.
* :class:`Linear` ``(in_features, out_features, relu)``.
* :class:`Add` ``(relu)`` — residual join of exactly two producers of equal shape.
* :class:`Concat` — channel concatenation of two or more producers of equal H×W.

``relu`` (default ``True``) says whether the layer's requantization clamps at the output zero
point (DESIGN.md §3); ``False`` gives a signed tensor (e.g. a ResNet block's second conv,
whose ReLU comes after the residual add). The last layer's raw output ignores it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

INPUT = "input"

Shape = tuple[int, int, int]


@dataclass(frozen=True, kw_only=True)
class Layer:
    name: str
    inputs: tuple[str, ...] = ()

    kind = "layer"

    @property
    def has_weights(self) -> bool:
        return False


@dataclass(frozen=True, kw_only=True)
class Conv2d(Layer):
    cin: int
    cout: int
    k: int
    stride: int = 1
    pad: int = 0
    relu: bool = True

    kind = "conv"

    @property
    def has_weights(self) -> bool:
        return True

    @property
    def weight_rows(self) -> int:
        """Rows of the unrolled ``(K*K*Cin) x Cout`` weight matrix."""
        return self.k * self.k * self.cin

    @property
    def weight_cols(self) -> int:
        return self.cout


@dataclass(frozen=True, kw_only=True)
class Linear(Layer):
    in_features: int
    out_features: int
    relu: bool = True

    kind = "fc"

    @property
    def has_weights(self) -> bool:
        return True

    # A Linear layer is a 1x1 convolution of a 1x1 input with Cin = in_features.
    k = 1
    stride = 1
    pad = 0

    @property
    def cin(self) -> int:
        return self.in_features

    @property
    def cout(self) -> int:
        return self.out_features

    @property
    def weight_rows(self) -> int:
        return self.in_features

    @property
    def weight_cols(self) -> int:
        return self.out_features


@dataclass(frozen=True, kw_only=True)
class MaxPool(Layer):
    k: int = 2
    stride: int | None = None     # None: k
    pad: int = 0

    kind = "maxpool"

    @property
    def step(self) -> int:
        """The stride in use (``stride``, or ``k`` when it is None)."""
        return self.stride or self.k


@dataclass(frozen=True, kw_only=True)
class AvgPool(Layer):
    k: int = 2

    kind = "avgpool"


@dataclass(frozen=True, kw_only=True)
class GlobalAvgPool(Layer):
    kind = "gap"


@dataclass(frozen=True, kw_only=True)
class Add(Layer):
    relu: bool = True

    kind = "add"


@dataclass(frozen=True, kw_only=True)
class Concat(Layer):
    kind = "concat"


LAYER_TYPES: dict[str, type] = {t.__name__: t for t in (Conv2d, Linear, MaxPool, AvgPool, GlobalAvgPool, Add, Concat)}


def _err(layer: Layer, msg: str) -> ValueError:
    return ValueError(f"layer {layer.name!r} ({type(layer).__name__}): {msg}")


class Network:
    """A typed, shape-checked layer graph.

    Args:
        name: network name.
        input_shape: ``(C, H, W)`` of the network input.
        layers: layers in a topological order (every producer listed before its consumers).

    Raises ``ValueError`` on any inconsistency: duplicate or reserved names, an input that
    names no earlier layer (e.g. a dangling input of an ``Add``), channel mismatch, a kernel
    larger than the padded input, stride not 1 or 2, mismatched ``Add`` shapes, wrong
    ``Linear`` in_features.
    """

    def __init__(self, name: str, input_shape: Shape, layers: list[Layer] | tuple[Layer, ...],
                 description: str = ""):
        self.name = name
        self.description = description
        if len(input_shape) != 3 or any((not isinstance(v, int)) or v < 1 for v in input_shape):
            raise ValueError(f"input_shape={input_shape!r} must be three positive integers (C, H, W)")
        self.input_shape: Shape = tuple(input_shape)
        if not layers:
            raise ValueError(f"network {name!r} has no layers")
        resolved: list[Layer] = []
        shapes: dict[str, Shape] = {INPUT: self.input_shape}
        prev = INPUT
        for layer in layers:
            if not isinstance(layer, Layer):
                raise ValueError(f"{layer!r} is not a Layer")
            if not layer.name or layer.name == INPUT:
                raise ValueError(f"layer name {layer.name!r} is not allowed (empty or reserved {INPUT!r})")
            if layer.name in shapes:
                raise _err(layer, "duplicate layer name")
            ins = tuple(layer.inputs) or (prev,)
            for i in ins:
                if i not in shapes:
                    raise _err(layer, f"input {i!r} is not the network input nor an earlier layer (dangling input)")
            if ins != layer.inputs:
                layer = _replace(layer, inputs=ins)
            shapes[layer.name] = self.infer_shape(layer, [shapes[i] for i in ins])
            resolved.append(layer)
            prev = layer.name
        self.layers: tuple[Layer, ...] = tuple(resolved)
        self.shapes = shapes
        self._by_name = {l.name: l for l in self.layers}

    @staticmethod
    def infer_shape(layer: Layer, in_shapes: list[Shape]) -> Shape:
        """The output shape of ``layer`` fed ``in_shapes``; ``ValueError`` naming the layer if they do not fit."""
        if getattr(layer, "relu", True) not in (True, False):
            raise _err(layer, f"relu={layer.relu!r} must be True or False")
        if isinstance(layer, Concat):
            if len(in_shapes) < 2:
                raise _err(layer, f"needs at least 2 inputs, got {len(in_shapes)}")
            if len({s_[1:] for s_ in in_shapes}) != 1:
                raise _err(layer, f"input sizes differ: {', '.join(f'{i!r} {s_}' for i, s_ in zip(layer.inputs, in_shapes))}"
                                  f" (a concat joins channels of equal HxW)")
            return (sum(s_[0] for s_ in in_shapes),) + tuple(in_shapes[0][1:])
        if isinstance(layer, Add):
            if len(in_shapes) != 2:
                raise _err(layer, f"needs exactly 2 inputs, got {len(in_shapes)}")
            if in_shapes[0] != in_shapes[1]:
                raise _err(layer, f"input shapes differ: {in_shapes[0]} vs {in_shapes[1]} ({layer.inputs[0]!r}, "
                                  f"{layer.inputs[1]!r})")
            return in_shapes[0]
        if len(in_shapes) != 1:
            raise _err(layer, f"needs exactly 1 input, got {len(in_shapes)}")
        c, h, w = in_shapes[0]
        if isinstance(layer, Conv2d):
            for f_, lo in (("cin", 1), ("cout", 1), ("k", 1), ("pad", 0)):
                v = getattr(layer, f_)
                if not isinstance(v, int) or v < lo:
                    raise _err(layer, f"{f_}={v!r} must be an integer >= {lo}")
            if layer.stride not in (1, 2):
                raise _err(layer, f"stride={layer.stride!r} is not allowed: stride must be 1 or 2")
            if layer.cin != c:
                raise _err(layer, f"channel mismatch: expects Cin={layer.cin}, its input {layer.inputs[0]!r} has "
                                  f"{c} channels")
            hp, wp = h + 2 * layer.pad, w + 2 * layer.pad
            if layer.k > hp or layer.k > wp:
                raise _err(layer, f"kernel {layer.k}x{layer.k} is larger than the padded input {hp}x{wp}")
            return (layer.cout, (hp - layer.k) // layer.stride + 1, (wp - layer.k) // layer.stride + 1)
        if isinstance(layer, Linear):
            for f_ in ("in_features", "out_features"):
                v = getattr(layer, f_)
                if not isinstance(v, int) or v < 1:
                    raise _err(layer, f"{f_}={v!r} must be an integer >= 1")
            if layer.in_features != c * h * w:
                raise _err(layer, f"in_features={layer.in_features} does not match its input {layer.inputs[0]!r} "
                                  f"of shape {(c, h, w)} ({c * h * w} values)")
            return (layer.out_features, 1, 1)
        if isinstance(layer, MaxPool):
            st, p = layer.step, layer.pad
            if not isinstance(st, int) or st < 1 or not isinstance(p, int) or p < 0:
                raise _err(layer, f"stride={layer.stride!r}, pad={layer.pad!r}: stride must be >= 1 and pad >= 0")
            if not isinstance(layer.k, int) or layer.k < 1 or layer.k > h + 2 * p or layer.k > w + 2 * p:
                raise _err(layer, f"pool size {layer.k!r} does not fit the {h}x{w} input")
            if p >= layer.k:
                raise _err(layer, f"pad={p} must be smaller than the pool size {layer.k}")
            return (c, (h + 2 * p - layer.k) // st + 1, (w + 2 * p - layer.k) // st + 1)
        if isinstance(layer, AvgPool):
            if not isinstance(layer.k, int) or layer.k < 1 or h % layer.k or w % layer.k:
                raise _err(layer, f"pool size {layer.k!r} must divide the {h}x{w} input (k x k, stride k)")
            return (c, h // layer.k, w // layer.k)
        if isinstance(layer, GlobalAvgPool):
            return (c, 1, 1)
        raise _err(layer, "unknown layer type")

    # --- queries ----------------------------------------------------------------------
    def __getitem__(self, name: str) -> Layer:
        return self._by_name[name]

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return f"Network({self.name!r}, input={self.input_shape}, {len(self.layers)} layers)"

    @property
    def output(self) -> str:
        """Name of the output layer (the last one)."""
        return self.layers[-1].name

    @property
    def output_shape(self) -> Shape:
        return self.shapes[self.output]

    def in_shape(self, layer: Layer | str, i: int = 0) -> Shape:
        layer = self[layer] if isinstance(layer, str) else layer
        return self.shapes[layer.inputs[i]]

    def out_shape(self, layer: Layer | str) -> Shape:
        return self.shapes[layer if isinstance(layer, str) else layer.name]

    def consumers(self, name: str) -> list[Layer]:
        return [l for l in self.layers if name in l.inputs]

    @property
    def weight_layers(self) -> list[Layer]:
        """The layers mapped onto crossbars: ``Conv2d`` and ``Linear``."""
        return [l for l in self.layers if l.has_weights]

    def is_raw_output(self, layer: Layer | str) -> bool:
        """True for the last layer: it outputs raw int32 accumulators instead of requantizing."""
        return (layer if isinstance(layer, str) else layer.name) == self.output

    def layer_params(self, layer: Layer | str) -> int:
        """Weights plus one bias per output channel (the folded requantization bias)."""
        layer = self[layer] if isinstance(layer, str) else layer
        if not layer.has_weights:
            return 0
        return layer.weight_rows * layer.weight_cols + layer.weight_cols

    def layer_macs(self, layer: Layer | str) -> int:
        """Multiply-accumulates of one inference: ``Ho*Wo * K*K*Cin * Cout`` (Linear: in*out)."""
        layer = self[layer] if isinstance(layer, str) else layer
        if not layer.has_weights:
            return 0
        _, ho, wo = self.out_shape(layer)
        return ho * wo * layer.weight_rows * layer.weight_cols

    @property
    def params(self) -> int:
        return sum(self.layer_params(l) for l in self.layers)

    # --- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-able description (:meth:`from_dict` inverts it)."""
        import dataclasses
        return {"name": self.name, "input_shape": list(self.input_shape), "description": self.description,
                "layers": [{"type": type(l).__name__,
                            **{f.name: (list(v) if isinstance(v := getattr(l, f.name), tuple) else v)
                               for f in dataclasses.fields(l)}} for l in self.layers]}

    @classmethod
    def from_dict(cls, d) -> "Network":
        layers = []
        for ld in d["layers"]:
            ld = dict(ld)
            t = LAYER_TYPES.get(ld.pop("type", None))
            if t is None:
                raise ValueError(f"layer {ld.get('name')!r}: unknown layer type; known: {', '.join(LAYER_TYPES)}")
            ld["inputs"] = tuple(ld.get("inputs", ()))
            layers.append(t(**ld))
        return cls(d["name"], tuple(d["input_shape"]), layers, d.get("description", ""))

    @property
    def macs(self) -> int:
        return sum(self.layer_macs(l) for l in self.layers)


def _replace(layer: Layer, **kw) -> Layer:
    import dataclasses
    return dataclasses.replace(layer, **kw)


# --- model zoo ------------------------------------------------------------------------------
def _digits() -> Network:
    """Small CNN for the 8×8×1 scikit-learn digits, 10 classes."""
    return Network("digits", (1, 8, 8), [
        Conv2d(name="conv1", cin=1, cout=16, k=3, pad=1),
        Conv2d(name="conv2", cin=16, cout=32, k=3, pad=1),
        MaxPool(name="pool1", k=2),
        Conv2d(name="conv3", cin=32, cout=32, k=3, pad=1),
        MaxPool(name="pool2", k=2),
        Linear(name="fc", in_features=32 * 2 * 2, out_features=10),
    ], "small CNN for 8x8x1 digits, 10 classes")


def _vgg8() -> Network:
    """VGG-8 for CIFAR-10 (32×32×3) as in DNN+NeuroSim's ``NetWork_VGG8.csv``:
    128,128,pool,256,256,pool,512,512,pool, FC 8192→1024, FC 1024→10."""
    layers: list[Layer] = []
    cin = 3
    n = 0
    for block, c in enumerate((128, 256, 512), 1):
        for _ in range(2):
            n += 1
            layers.append(Conv2d(name=f"conv{n}", cin=cin, cout=c, k=3, pad=1))
            cin = c
        layers.append(MaxPool(name=f"pool{block}", k=2))
    layers += [Linear(name="fc1", in_features=512 * 4 * 4, out_features=1024),
               Linear(name="fc2", in_features=1024, out_features=10)]
    return Network("vgg8", (3, 32, 32), layers, "VGG-8 for CIFAR-10 (NeuroSim's VGG8)")


def _vgg16() -> Network:
    """VGG-16 (configuration D) for ImageNet 224×224×3, FC 25088→4096→4096→1000."""
    cfg = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
    layers: list[Layer] = []
    cin = 3
    for b, widths in enumerate(cfg, 1):
        for i, c in enumerate(widths, 1):
            layers.append(Conv2d(name=f"conv{b}_{i}", cin=cin, cout=c, k=3, pad=1))
            cin = c
        layers.append(MaxPool(name=f"pool{b}", k=2))
    layers += [Linear(name="fc6", in_features=512 * 7 * 7, out_features=4096),
               Linear(name="fc7", in_features=4096, out_features=4096),
               Linear(name="fc8", in_features=4096, out_features=1000)]
    return Network("vgg16", (3, 224, 224), layers, "VGG-16 for ImageNet")


def _basic_block(layers: list[Layer], prefix: str, src: str, cin: int, cout: int, stride: int) -> str:
    """Append a ResNet basic block reading ``src``; return the name of its output (the Add)."""
    layers.append(Conv2d(name=f"{prefix}.conv1", inputs=(src,), cin=cin, cout=cout, k=3, stride=stride, pad=1))
    layers.append(Conv2d(name=f"{prefix}.conv2", cin=cout, cout=cout, k=3, pad=1))
    short = src
    if stride != 1 or cin != cout:
        layers.append(Conv2d(name=f"{prefix}.downsample", inputs=(src,), cin=cin, cout=cout, k=1, stride=stride))
        short = f"{prefix}.downsample"
    layers.append(Add(name=f"{prefix}.add", inputs=(f"{prefix}.conv2", short)))
    return f"{prefix}.add"


def _resnet_imagenet(name: str, blocks: list[int]) -> Network:
    """ImageNet ResNet with basic blocks (ResNet-18/34), 224×224×3 input, 1000 classes.

    Stem: 7×7/2 conv (pad 3) then a 2×2/2 max-pool: the same 56×56 output and MAC count as the
    usual 3×3/2 pad-1 pool, and what a NeuroSim CSV can say (its pool flag is a 2×2/2 max-pool,
    ``gen.neurosim``), so the zoo network round-trips through one. Shortcuts that
    change shape are 1×1 stride-2 projection convolutions (``layerN.0.downsample``).
    """
    layers: list[Layer] = [Conv2d(name="conv1", cin=3, cout=64, k=7, stride=2, pad=3),
                           MaxPool(name="pool1", k=2)]
    src, cin = "pool1", 64
    for stage, (n, c) in enumerate(zip(blocks, (64, 128, 256, 512)), 1):
        for b in range(n):
            stride = 2 if (b == 0 and stage > 1) else 1
            src = _basic_block(layers, f"layer{stage}.{b}", src, cin, c, stride)
            cin = c
    layers += [GlobalAvgPool(name="avgpool", inputs=(src,)), Linear(name="fc", in_features=512, out_features=1000)]
    return Network(name, (3, 224, 224), layers, f"{name} for ImageNet")


def _resnet_cifar(name: str, n: int, widths: tuple[int, int, int] = (16, 32, 64), size: int = 32) -> Network:
    """CIFAR-10 ResNet-(6n+2) (He et al. 2016, §4.2): 3×3 stem with 16 channels, three stages
    of ``n`` basic blocks with 16/32/64 channels (stride 2 at the start of stages 2 and 3),
    global average pool, FC 64→10.

    Shortcuts: identity inside a stage; at the two stage transitions pimgen uses **1×1
    stride-2 projection convolutions** (option B), not the zero-padding option A, because
    every join in the IR is an ``Add`` of equal shapes. This adds 2 560 weights and
    0.26 M MACs to the option-A totals (≈0.27 M parameters, ≈41 M MACs for ResNet-20).

    ``widths`` and ``size`` shrink it (``resnet20-mini``: 8/16/32 channels on 16×16, a
    whole residual network small enough to simulate as a chip in minutes).
    """
    layers: list[Layer] = [Conv2d(name="conv1", cin=3, cout=widths[0], k=3, pad=1)]
    src, cin = "conv1", widths[0]
    for stage, c in enumerate(widths, 1):
        for b in range(n):
            stride = 2 if (b == 0 and stage > 1) else 1
            src = _basic_block(layers, f"layer{stage}.{b}", src, cin, c, stride)
            cin = c
    layers += [GlobalAvgPool(name="avgpool", inputs=(src,)), Linear(name="fc", in_features=cin, out_features=10)]
    what = "" if (widths, size) == ((16, 32, 64), 32) else f", {'/'.join(map(str, widths))} channels on {size}x{size}"
    return Network(name, (3, size, size), layers, f"{name} for CIFAR-10 (1x1 projection shortcuts{what})")


ZOO: dict[str, Callable[[], Network]] = {
    "digits": _digits,
    "vgg8": _vgg8,
    "vgg16": _vgg16,
    "resnet18": lambda: _resnet_imagenet("resnet18", [2, 2, 2, 2]),
    "resnet34": lambda: _resnet_imagenet("resnet34", [3, 4, 6, 3]),
    "resnet20": lambda: _resnet_cifar("resnet20", 3),
    "resnet32": lambda: _resnet_cifar("resnet32", 5),
    "resnet20-mini": lambda: _resnet_cifar("resnet20-mini", 3, (8, 16, 32), 16),
}


def zoo(name: str | None = None):
    """``zoo()`` lists the network names; ``zoo("resnet34")`` builds that :class:`Network`.

    * ``digits`` — small CNN for 8×8×1 digits, 10 classes.
    * ``vgg8`` — NeuroSim's VGG-8 for CIFAR-10 (32×32×3).
    * ``vgg16`` — VGG-16 for ImageNet (224×224×3).
    * ``resnet18``, ``resnet34`` — ImageNet ResNets (basic blocks, 1×1 projection shortcuts).
    * ``resnet20``, ``resnet32`` — CIFAR-10 ResNets, 16/32/64 channels, 1×1 projection
      shortcuts (option B) at the stage transitions.
    """
    if name is None:
        return list(ZOO)
    try:
        return ZOO[name]()
    except KeyError:
        raise ValueError(f"unknown network {name!r}; the zoo has: {', '.join(ZOO)}") from None
