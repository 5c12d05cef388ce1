"""One-layer specifications for ``pimgen generate --layer``: parse, build the network and plan.

Syntax: a kind followed by ``key=value`` tokens (keys are case-insensitive)::

    conv Cin=8 Cout=16 K=3 H=8 W=8 stride=1 pad=1
    fc in=64 out=10

``conv`` keys: ``Cin``, ``Cout``, ``K``, ``H``, ``W`` (required), ``stride`` (1), ``pad`` (0).
``fc`` keys: ``in``, ``out`` (required; ``Cin``/``Cout`` are accepted as aliases).
Errors name the bad token and list the allowed keys.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from gen.config import ChipConfig
from gen.network import Conv2d, Linear, Network

__all__ = ["LayerSpec", "parse_layer_spec", "layer_plan"]

_KEYS = {
    "conv": {"cin": "cin", "cout": "cout", "k": "k", "h": "h", "w": "w", "stride": "stride", "pad": "pad"},
    "fc": {"in": "cin", "out": "cout", "cin": "cin", "cout": "cout"},
}
_REQUIRED = {"conv": ("cin", "cout", "k", "h", "w"), "fc": ("cin", "cout")}
MAX_DIM = 1 << 16        # bound on every key's value
MAX_WEIGHTS = 1 << 20    # bound on one engine's weights (K*K*Cin*Cout): RTL beyond is not a practical build
_SHOWN = {"conv": "Cin, Cout, K, H, W, stride, pad", "fc": "in, out"}


@dataclass(frozen=True)
class LayerSpec:
    kind: str
    cin: int
    cout: int
    k: int = 1
    h: int = 1
    w: int = 1
    stride: int = 1
    pad: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LayerSpec":
        return cls(**d)

    def __str__(self) -> str:
        if self.kind == "fc":
            return f"fc in={self.cin} out={self.cout}"
        return (f"conv Cin={self.cin} Cout={self.cout} K={self.k} H={self.h} W={self.w} stride={self.stride} "
                f"pad={self.pad}")

    def network(self) -> Network:
        """A one-layer network (layer name ``L``); shape errors are raised as ``ValueError``."""
        if self.kind == "fc":
            return Network("layer", (self.cin, 1, 1), [Linear(name="L", in_features=self.cin,
                                                              out_features=self.cout)])
        return Network("layer", (self.cin, self.h, self.w),
                       [Conv2d(name="L", cin=self.cin, cout=self.cout, k=self.k, stride=self.stride, pad=self.pad)])


def parse_layer_spec(text: str) -> LayerSpec:
    """Parse ``"conv Cin=8 Cout=16 K=3 H=8 W=8 stride=1 pad=1"`` or ``"fc in=64 out=10"``."""
    toks = str(text).split()
    if not toks:
        raise ValueError("empty layer spec; expected e.g. 'conv Cin=8 Cout=16 K=3 H=8 W=8 stride=1 pad=1' "
                         "or 'fc in=64 out=10'")
    kind = toks[0].lower()
    if kind not in _KEYS:
        raise ValueError(f"layer kind {toks[0]!r} is not known; use one of: conv, fc")
    vals: dict[str, int] = {}
    for tok in toks[1:]:
        key, eq, val = tok.partition("=")
        if not eq:
            raise ValueError(f"token {tok!r} is not key=value; allowed keys for {kind}: {_SHOWN[kind]}")
        field = _KEYS[kind].get(key.lower())
        if field is None:
            raise ValueError(f"unknown key {key!r} in token {tok!r}; allowed keys for {kind}: {_SHOWN[kind]}")
        if not (val.isascii() and val.lstrip("+-").isdigit()):
            raise ValueError(f"token {tok!r}: {key} must be an integer (decimal digits)")
        v = int(val)
        if field in vals:
            raise ValueError(f"token {tok!r}: {key} is given twice")
        vals[field] = v
    missing = [f for f in _REQUIRED[kind] if f not in vals]
    if missing:
        names = {"cin": "Cin" if kind == "conv" else "in", "cout": "Cout" if kind == "conv" else "out",
                 "k": "K", "h": "H", "w": "W"}
        raise ValueError(f"{kind} layer spec misses {', '.join(names[f] for f in missing)}; "
                         f"allowed keys: {_SHOWN[kind]}")
    for f, v in vals.items():
        lo = 0 if f == "pad" else 1
        if v < lo:
            raise ValueError(f"{f}={v} is not allowed: it must be >= {lo}")
        if v > MAX_DIM:
            raise ValueError(f"{f}={v} is not allowed: it must be <= {MAX_DIM}")
    spec = LayerSpec(kind, **vals)
    if spec.pad >= spec.k and spec.pad > 0:
        raise ValueError(f"pad={spec.pad} is not allowed with K={spec.k}: pad must be in [0, K-1]")
    n = spec.k * spec.k * spec.cin * spec.cout
    if n > MAX_WEIGHTS:
        raise ValueError(f"the layer has {n:,} weights (K*K*Cin*Cout); one layer engine takes at most {MAX_WEIGHTS:,}")
    spec.network()  # shape checks (stride 1|2, kernel fits the padded input)
    return spec


def layer_plan(spec: LayerSpec, chip: ChipConfig, mapping: str = "conventional", duplication: int = 1,
               raw: bool = False):
    """``(plan, layer plan)`` of the one-layer network. ``raw=False`` makes the layer
    requantize like every non-final layer (DESIGN.md §3); ``raw=True`` keeps int32 outputs."""
    from gen.mapping import map_network
    if not isinstance(duplication, int) or isinstance(duplication, bool) or duplication < 1:
        raise ValueError(f"duplication={duplication!r} is not allowed: it must be an integer >= 1")
    plan = map_network(spec.network(), chip, mapping=mapping, duplication=duplication)
    lp = plan["L"]
    lp.raw_output = bool(raw)
    return plan, lp
