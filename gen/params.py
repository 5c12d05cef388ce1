"""Per-layer parameters as frozen dataclasses, validated once, here (DESIGN.md §2, §3).

* :class:`Requant` — ``M`` (unsigned 16-bit), ``s`` (``0..31``), ``z_out`` and ``relu`` of
  ``clamp(((v * M + 2**(s-1)) >> s) + z_out, lo, 2**a_bits - 1)`` (``lo = z_out`` with ReLU, else 0).
* :class:`WeightParams` — a ``Conv2d``/``Linear`` layer: weights, bias, requantization
  (``None`` for a layer that only ever outputs raw accumulators).
* :class:`PoolParams` — a (global) average pool: its :class:`Requant` and input zero point.
* :class:`AddParams` — a residual join: ``Ma``, ``Mb``, ``s`` (and zero points, ReLU flag).
* :class:`NoParams` — a max pool or a concat.
* :class:`NetworkParams` — layer name -> one of the above, with a JSON form
  (:meth:`NetworkParams.to_json` / :meth:`NetworkParams.from_json`) for build folders.

This module is the one home of the ``M``/``s`` range check (:func:`check_multiplier`,
:func:`check_shift`): the golden model and the RTL generators take these objects (or their
fields) and never re-check them. Pure numpy: no ``hw``, ``sim``, ``flow`` or amaranth.

Zero points (DESIGN.md §3): :class:`Requant` carries the output zero point ``z_out`` and a
ReLU flag (``lo = z_out`` when set, ``0`` otherwise); :class:`WeightParams` and
:class:`PoolParams` carry the input zero point ``z_in`` (the code padding pixels take; a
weight layer's bias already has ``- z_in * Σw`` folded in), :class:`AddParams` the inputs'
``za``, ``zb`` and its own ``z_out``/``relu``. All default to 0 / ReLU, today's arithmetic, and
the JSON form omits them when they have their defaults (old parameter files load unchanged).
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

__all__ = ["M_MAX", "S_MAX", "Z_MAX", "check_multiplier", "check_shift", "check_zero_point", "Requant", "WeightParams", "PoolParams",
           "AddParams", "NoParams", "LayerParams", "NetworkParams", "layer_params_from_dict"]

M_MAX = (1 << 16) - 1   # M (and Ma, Mb) is an unsigned 16-bit integer
Z_MAX = (1 << 16) - 1   # a zero point is an activation code (< 2**a_bits; checked against a_bits where applied)
S_MAX = 31              # 0 <= s <= 31
JSON_VERSION = 1


def _int(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be an integer")
    return int(value)


def check_multiplier(name: str, value) -> int:
    """``value`` as an ``int`` if it is an unsigned 16-bit multiplier (``M``, ``Ma``, ``Mb``)."""
    v = _int(name, value)
    if not 0 <= v <= M_MAX:
        raise ValueError(f"{name}={v} is not allowed: {name} must be an unsigned 16-bit integer in [0, {M_MAX}]")
    return v


def check_shift(name: str, value) -> int:
    """``value`` as an ``int`` if it is a requantization shift, ``0 <= s <= 31``."""
    v = _int(name, value)
    if not 0 <= v <= S_MAX:
        raise ValueError(f"{name}={v} is not allowed: {name} must be in [0, {S_MAX}]")
    return v


def check_zero_point(name: str, value) -> int:
    """``value`` as an ``int`` if it can be a zero point (an unsigned activation code)."""
    v = _int(name, value)
    if not 0 <= v <= Z_MAX:
        raise ValueError(f"{name}={v} is not allowed: a zero point is an unsigned activation code in [0, {Z_MAX}]")
    return v


def _bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be True or False")
    return bool(value)


def _int_array(name: str, value) -> np.ndarray:
    a = np.asarray(value)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {a.dtype}")
    a = a.astype(np.int64)          # a copy: the caller's array stays the caller's
    a.setflags(write=False)
    return a


def _set(obj, name: str, value) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class Requant:
    """Fixed-point requantization ``clamp(((v * m + 2**(s-1)) >> s) + z_out, lo, 2**a_bits - 1)``
    (no rounding term when ``s == 0``; ``lo = z_out`` when ``relu``, else ``0``).

    ``z_out`` and ``relu`` are DESIGN.md §3's output zero point and ReLU flag; their
    defaults (``0``, ``True``) are the plain ReLU-clamped requantization.
    """
    m: int
    s: int
    z_out: int = 0
    relu: bool = True

    def __post_init__(self):
        _set(self, "m", check_multiplier("m", self.m))
        _set(self, "s", check_shift("s", self.s))
        _set(self, "z_out", check_zero_point("z_out", self.z_out))
        _set(self, "relu", _bool("relu", self.relu))

    @property
    def scale(self) -> float:
        """The real factor ``m / 2**s``."""
        return self.m / (1 << self.s)

    def lo(self) -> int:
        """The lower clamp bound: ``z_out`` with ReLU, else 0."""
        return self.z_out if self.relu else 0

    def input_range(self, a_bits: int) -> tuple[int, int]:
        """``(v_lo, v_hi)``: every ``v`` below ``v_lo`` requantizes to the same code as
        ``v_lo``, and every ``v`` above ``v_hi`` to the same code as ``v_hi`` (the clamps hold
        there), so ``v`` may be clamped into the range before the multiplier and every output
        stays the same, while the multiplier gets narrower (``hw.layer.PostStage``)."""
        if self.m == 0:
            return 0, 0
        r = (1 << (self.s - 1)) if self.s else 0
        top = (1 << a_bits) - 1
        # the least v reaching the top code: v*m + r >= (top - z_out) << s
        v_hi = -((r - ((top - self.z_out) << self.s)) // self.m)
        # the greatest v at or below the low clamp: v*m + r < (lo - z_out + 1) << s
        v_lo = -((r - ((self.lo() - self.z_out + 1) << self.s)) // self.m) - 1
        return min(v_lo, v_hi), v_hi

    def to_dict(self) -> dict:
        d = {"m": self.m, "s": self.s}
        if self.z_out:
            d["z_out"] = self.z_out
        if not self.relu:
            d["relu"] = False
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "Requant":
        return cls(**d)


def _requant_or_none(name: str, value) -> Requant | None:
    if value is None or isinstance(value, Requant):
        return value
    raise ValueError(f"{name}={value!r} is not allowed: {name} must be a Requant or None")


@dataclass(frozen=True, eq=False)
class WeightParams:
    """Parameters of a ``Conv2d`` (``w[Cout, Cin, K, K]``) or ``Linear`` (``w[out, in]``) layer.

    ``bias``: one integer per output (``None``: no bias). ``requant``: the layer's
    requantization, ``None`` only for a layer that outputs raw accumulators. ``z_in``: the
    input's zero point, the code padding pixels take (``bias`` already holds
    ``- z_in * Σw``, folded at compile time). Arrays are stored as read-only ``int64`` copies.
    """
    w: np.ndarray
    bias: np.ndarray | None = None
    requant: Requant | None = None
    z_in: int = 0

    def __post_init__(self):
        _set(self, "z_in", check_zero_point("z_in", self.z_in))
        w = _int_array("w", self.w)
        if not (w.ndim == 2 or (w.ndim == 4 and w.shape[2] == w.shape[3])):
            raise ValueError(f"w has shape {w.shape}: w must be [Cout, Cin, K, K] (conv) or [out, in] (linear)")
        if 0 in w.shape:
            raise ValueError(f"w has shape {w.shape}: every dimension of w must be >= 1")
        _set(self, "w", w)
        if self.bias is not None:
            b = _int_array("bias", self.bias)
            if b.shape != (w.shape[0],):
                raise ValueError(f"bias has shape {b.shape}: bias must have shape ({w.shape[0]},), "
                                 f"one value per output of w{list(w.shape)}")
            _set(self, "bias", b)
        _set(self, "requant", _requant_or_none("requant", self.requant))

    @property
    def cout(self) -> int:
        return self.w.shape[0]

    @property
    def kernel(self) -> np.ndarray:
        """``w`` as ``[Cout, Cin, K, K]`` (a linear layer's ``[out, in]`` as ``[out, in, 1, 1]``)."""
        return self.w if self.w.ndim == 4 else self.w.reshape(self.w.shape + (1, 1))

    def block(self, p) -> np.ndarray:
        """The signed weights ``[rows, cols]`` of placement ``p`` (``gen.mapping.Placement``):
        conventional, rows of the unrolled ``(kh, kw, cin) x cout`` matrix; novel, channels
        of kernel position ``p.kpos``. What the placement's crossbar holds."""
        w = self.kernel
        (r0, r1), (c0, c1) = p.rows, p.cols
        if p.kpos is None:
            return w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])[r0:r1, c0:c1]
        return w[c0:c1, r0:r1, p.kpos[0], p.kpos[1]].T

    @property
    def bias_or_zeros(self) -> np.ndarray:
        """``bias``, or ``Cout`` zeros when there is none."""
        return self.bias if self.bias is not None else np.zeros(self.cout, dtype=np.int64)

    def check_w_bits(self, w_bits: int) -> None:
        """Refuse weights outside the signed ``w_bits`` range ``[-2**(w_bits-1), 2**(w_bits-1) - 1]``."""
        lo, hi = -(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1
        wmin, wmax = int(self.w.min()), int(self.w.max())
        if wmin < lo or wmax > hi:
            raise ValueError(f"w has values in [{wmin}, {wmax}]: w must lie in [{lo}, {hi}] (signed {w_bits}-bit)")

    def check_for(self, layer, *, raw: bool, w_bits: int | None = None) -> None:
        """Refuse parameters that do not fit ``layer`` (a ``gen.network`` Conv2d or Linear):
        the weight shape, a missing ``requant`` when the layer requantizes (``raw=False``),
        and, with ``w_bits``, weights out of range."""
        if layer.kind == "fc":
            want = (layer.out_features, layer.in_features)
        else:
            want = (layer.cout, layer.cin, layer.k, layer.k)
        if self.w.shape != want:
            raise ValueError(f"layer {layer.name!r}: w has shape {self.w.shape}, the layer needs {want}")
        if not raw and self.requant is None:
            raise ValueError(f"layer {layer.name!r}: requant is None, but the layer requantizes (it is not "
                             f"a raw-output layer)")
        if w_bits is not None:
            self.check_w_bits(w_bits)

    def __eq__(self, other):
        if not isinstance(other, WeightParams):
            return NotImplemented
        return (np.array_equal(self.w, other.w) and self.requant == other.requant and self.z_in == other.z_in
                and (self.bias is None) == (other.bias is None)
                and (self.bias is None or np.array_equal(self.bias, other.bias)))

    __hash__ = None

    def to_dict(self) -> dict:
        d = {"kind": "weights", "w": self.w.tolist(),
             "bias": None if self.bias is None else self.bias.tolist(),
             "requant": None if self.requant is None else self.requant.to_dict()}
        if self.z_in:
            d["z_in"] = self.z_in
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "WeightParams":
        rq = d.get("requant")
        bias = d.get("bias")
        return cls(np.array(d["w"], dtype=np.int64), None if bias is None else np.array(bias, dtype=np.int64),
                   None if rq is None else Requant.from_dict(rq), d.get("z_in", 0))


@dataclass(frozen=True)
class PoolParams:
    """An average pool (global or k×k): ``clamp(((Σ (x - z_in)) * m + 2**(s-1)) >> s) + z_out, lo, 2**a_bits - 1)``
    per channel and window (``m``, ``s``, ``z_out``, ``lo``: ``requant``)."""
    requant: Requant
    z_in: int = 0

    def __post_init__(self):
        if not isinstance(self.requant, Requant):
            raise ValueError(f"requant={self.requant!r} is not allowed: requant must be a Requant")
        _set(self, "z_in", check_zero_point("z_in", self.z_in))

    def to_dict(self) -> dict:
        d = {"kind": "pool", "requant": self.requant.to_dict()}
        if self.z_in:
            d["z_in"] = self.z_in
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "PoolParams":
        return cls(Requant.from_dict(d["requant"]), d.get("z_in", 0))


@dataclass(frozen=True)
class AddParams:
    """A residual join: ``clamp((((a - za)*ma + (b - zb)*mb + 2**(s-1)) >> s) + z_out, lo, 2**a_bits - 1)``,
    ``lo = z_out`` when ``relu``, else 0 (defaults: ``clamp((a*ma + b*mb + 2**(s-1)) >> s, 0, ...)``)."""
    ma: int
    mb: int
    s: int
    za: int = 0
    zb: int = 0
    z_out: int = 0
    relu: bool = True

    def __post_init__(self):
        _set(self, "ma", check_multiplier("ma", self.ma))
        _set(self, "mb", check_multiplier("mb", self.mb))
        _set(self, "s", check_shift("s", self.s))
        for f_ in ("za", "zb", "z_out"):
            _set(self, f_, check_zero_point(f_, getattr(self, f_)))
        _set(self, "relu", _bool("relu", self.relu))

    def lo(self) -> int:
        return self.z_out if self.relu else 0

    def to_dict(self) -> dict:
        d = {"kind": "add", "ma": self.ma, "mb": self.mb, "s": self.s}
        for f_ in ("za", "zb", "z_out"):
            if getattr(self, f_):
                d[f_] = getattr(self, f_)
        if not self.relu:
            d["relu"] = False
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "AddParams":
        return cls(d["ma"], d["mb"], d["s"], d.get("za", 0), d.get("zb", 0), d.get("z_out", 0), d.get("relu", True))


@dataclass(frozen=True)
class NoParams:
    """A layer without parameters (max pool, concat)."""

    def to_dict(self) -> dict:
        return {"kind": "none"}

    @classmethod
    def from_dict(cls, d: Mapping) -> "NoParams":
        return cls()


LayerParams = Union[WeightParams, PoolParams, AddParams, NoParams]
_KINDS = {"weights": WeightParams, "pool": PoolParams, "add": AddParams, "none": NoParams}
_LAYER_TYPES = tuple(_KINDS.values())


def layer_params_from_dict(d: Mapping) -> LayerParams:
    """The inverse of every params class's ``to_dict`` (dispatch on its ``"kind"``)."""
    kind = d.get("kind") if isinstance(d, Mapping) else None
    if kind not in _KINDS:
        raise ValueError(f"kind={kind!r} is not allowed: layer parameters must have a kind in {sorted(_KINDS)}")
    return _KINDS[kind].from_dict(d)


def _expected_type(layer) -> type:
    if layer.has_weights:
        return WeightParams
    return {"GlobalAvgPool": PoolParams, "AvgPool": PoolParams, "Add": AddParams, "MaxPool": NoParams,
            "Concat": NoParams}[type(layer).__name__]


class NetworkParams(Mapping):
    """Immutable mapping layer name -> :data:`LayerParams`.

    Built from any mapping of typed parameters (a plain ``dict`` of them works wherever a
    ``NetworkParams`` is taken; :meth:`of` converts). :meth:`check` refuses parameters that
    do not fit a network.
    """

    def __init__(self, layers: Mapping[str, LayerParams] | None = None):
        items = dict(layers or {})
        for name, p in items.items():
            if not isinstance(name, str):
                raise ValueError(f"layer name {name!r} is not allowed: names are strings")
            if not isinstance(p, _LAYER_TYPES):
                raise ValueError(f"layer {name!r}: parameters must be one of "
                                 f"{', '.join(t.__name__ for t in _LAYER_TYPES)}, got {type(p).__name__}")
        self._layers = items

    @classmethod
    def of(cls, params: Mapping[str, LayerParams]) -> "NetworkParams":
        return params if isinstance(params, NetworkParams) else cls(params)

    def __getitem__(self, name: str) -> LayerParams:
        return self._layers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def __eq__(self, other):
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self._layers) == dict(other)

    __hash__ = None

    def __repr__(self) -> str:
        return f"NetworkParams({', '.join(f'{n}: {type(p).__name__}' for n, p in self._layers.items())})"

    def check(self, net, *, w_bits: int | None = None) -> None:
        """Refuse parameters that do not fit ``net`` (a ``gen.network.Network``): a layer
        without parameters or with the wrong kind, a weight shape that is not the layer's,
        a requantizing layer without ``requant``; with ``w_bits``, weights out of range."""
        for layer in net.layers:
            if layer.name not in self._layers:
                raise ValueError(f"no parameters for layer {layer.name!r}")
            p, want = self._layers[layer.name], _expected_type(layer)
            if not isinstance(p, want):
                raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) needs {want.__name__}, "
                                 f"got {type(p).__name__}")
            if want is WeightParams:
                p.check_for(layer, raw=net.is_raw_output(layer), w_bits=w_bits)

    def to_dict(self) -> dict[str, Any]:
        return {"version": JSON_VERSION, "layers": {n: p.to_dict() for n, p in self._layers.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "NetworkParams":
        if not isinstance(d, Mapping) or d.get("version") != JSON_VERSION or not isinstance(d.get("layers"), Mapping):
            raise ValueError(f"not a version-{JSON_VERSION} parameter file: expected "
                             f"{{\"version\": {JSON_VERSION}, \"layers\": {{...}}}}")
        return cls({n: layer_params_from_dict(p) for n, p in d["layers"].items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "NetworkParams":
        return cls.from_dict(json.loads(text))
