"""DNN+NeuroSim network files (``NetWork_*.csv``): read and write.

One conv/FC layer a row, eight integers, no header::

    IFM rows, IFM cols, IFM channels, kernel rows, kernel cols, OFM channels, pooling (0/1), stride

FC layers are written as a 1×1 input with a 1×1 kernel. The file has no padding column:
pimgen writes "same" padding ``(K-1)//2`` and assumes it when reading. A pooling flag of
1 means a 2×2/2 max-pool follows the layer.

Reading builds a :class:`gen.network.Network`; each row's input is found by shape:

1. the previous row's output (after its pooling), when the shapes agree;
2. for an FC row (1×1 input, 1×1 kernel): the previous output flattened
   (``IFM channels == C*H*W``), or after a global average pool (``IFM channels == C``);
3. otherwise the most recent earlier layer (or the network input) whose output has the
   row's IFM shape — a side branch such as a ResNet 1×1 projection shortcut. NeuroSim
   files carry no residual joins, so none are created.

Anything else is refused with the line number and the reason.
"""
from __future__ import annotations

import math
from pathlib import Path

from gen.network import INPUT, Conv2d, GlobalAvgPool, Layer, Linear, MaxPool, Network

MAX_VALUE = 1 << 20      # a bound on every field: a million rows, columns or channels
MAX_WEIGHTS = 1 << 28    # a bound on one layer's weights (VGG-16's largest layer has 103 M)

FIELDS = ("IFM rows", "IFM cols", "IFM channels", "kernel rows", "kernel cols", "OFM channels", "pooling",
          "stride")


def _bad(line: int, msg: str) -> ValueError:
    return ValueError(f"NeuroSim CSV line {line}: {msg}")


def _parse_rows(text: str) -> list[tuple[int, list[int]]]:
    rows = []
    for ln, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if not s:
            continue
        parts = [p.strip() for p in s.rstrip(",").split(",")]
        if len(parts) != 8:
            raise _bad(ln, f"expected 8 comma-separated integers ({', '.join(FIELDS)}), got {len(parts)} fields")
        vals = []
        for f, p in zip(FIELDS, parts):
            try:
                v = float(p)
            except ValueError:
                raise _bad(ln, f"{f} {p!r} is not a number") from None
            if not math.isfinite(v) or v != int(v):
                raise _bad(ln, f"{f} {p!r} is not an integer")
            if abs(v) > MAX_VALUE:
                raise _bad(ln, f"{f} {p!r} is out of range: at most {MAX_VALUE}")
            vals.append(int(v))
        h, w, c, kr, kc, cout, pool, stride = vals
        for f, v in zip(FIELDS[:6], vals[:6]):
            if v < 1:
                raise _bad(ln, f"{f} must be >= 1, got {v}")
        if kr * kc * c * cout > MAX_WEIGHTS:
            raise _bad(ln, f"the layer has {kr * kc * c * cout:,} weights (kernel {kr}x{kc}, {c} -> {cout} channels); "
                           f"at most {MAX_WEIGHTS:,} per layer")
        if kr != kc:
            raise _bad(ln, f"kernel {kr}x{kc} is not square (pimgen supports square kernels only)")
        if pool not in (0, 1):
            raise _bad(ln, f"pooling flag must be 0 or 1, got {pool}")
        if stride not in (1, 2):
            raise _bad(ln, f"stride must be 1 or 2, got {stride}")
        rows.append((ln, vals))
    if not rows:
        raise ValueError("NeuroSim CSV has no layer rows")
    return rows


def parse_neurosim_csv(text: str, name: str = "neurosim") -> Network:
    """Build a :class:`Network` from the text of a NeuroSim network file."""
    rows = _parse_rows(text)
    ln0, first = rows[0]
    layers: list[Layer] = []
    shapes: dict[str, tuple[int, int, int]] = {INPUT: (first[2], first[0], first[1])}
    order = [INPUT]
    prev = INPUT
    nconv = nfc = npool = 0
    for ln, (h, w, c, k, _, cout, pool, stride) in rows:
        want = (c, h, w)
        pc, ph, pw = shapes[prev]
        is_fc = h == 1 and w == 1 and k == 1
        src = None
        if shapes[prev] == want:
            src = prev
        elif is_fc and c == pc * ph * pw:
            src = prev                                   # flatten into the FC layer
        elif is_fc and c == pc:
            gap = GlobalAvgPool(name="avgpool" if "avgpool" not in shapes else f"avgpool{ln}", inputs=(prev,))
            layers.append(gap)
            shapes[gap.name] = (pc, 1, 1)
            order.append(gap.name)
            src = gap.name
        else:
            for cand in reversed(order):
                if shapes[cand] == want:
                    src = cand
                    break
        if src is None:
            raise _bad(ln, f"IFM {h}x{w}x{c} does not follow from the previous layer's output "
                           f"{ph}x{pw}x{pc} nor match any earlier layer's output")
        if is_fc:
            nfc += 1
            layer: Layer = Linear(name=f"fc{nfc}", inputs=(src,), in_features=c, out_features=cout)
        else:
            nconv += 1
            layer = Conv2d(name=f"conv{nconv}", inputs=(src,), cin=c, cout=cout, k=k, stride=stride,
                           pad=(k - 1) // 2)
        if isinstance(layer, Linear) and stride != 1:
            raise _bad(ln, f"an FC layer (1x1 input, 1x1 kernel) must have stride 1, got {stride}")
        layers.append(layer)
        try:
            shapes[layer.name] = Network.infer_shape(layer, [shapes[src]])
        except ValueError as e:
            raise _bad(ln, str(e)) from None
        order.append(layer.name)
        prev = layer.name
        if pool:
            npool += 1
            pl = MaxPool(name=f"pool{npool}", inputs=(prev,), k=2)
            try:
                shapes[pl.name] = Network.infer_shape(pl, [shapes[prev]])
            except ValueError as e:
                raise _bad(ln, f"pooling flag set but {e}") from None
            layers.append(pl)
            order[-1] = pl.name          # a pooled layer's own output is not kept: no branch reads it
            prev = pl.name
    try:
        return Network(name, shapes[INPUT], layers, "read from a NeuroSim network file")
    except ValueError as e:  # pragma: no cover - every row was checked above
        raise ValueError(f"NeuroSim CSV: {e}") from None


def read_neurosim_csv(path: str | Path, name: str | None = None) -> Network:
    """Read a NeuroSim network file; the network is named after the file unless ``name``."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValueError(f"NeuroSim CSV {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"NeuroSim CSV {str(path)!r} is a folder, not a file") from None
    except UnicodeDecodeError:
        raise ValueError(f"NeuroSim CSV {str(path)!r} is not a text file (expected rows of 8 comma-separated "
                         f"integers: {', '.join(FIELDS)})") from None
    except OSError as e:
        raise ValueError(f"NeuroSim CSV {str(path)!r} cannot be read: {e.strerror}") from None
    stem = path.stem
    return parse_neurosim_csv(text, name or (stem[len("NetWork_"):] if stem.startswith("NetWork_") else stem))


def neurosim_rows(net: Network) -> list[tuple[int, ...]]:
    """The NeuroSim rows of ``net``: one per Conv2d/Linear, in layer order.

    Padding must be ``(K-1)//2`` (the file cannot say otherwise); the pooling flag is set
    when the layer's only consumer is a 2×2 max-pool; residual joins and global average
    pools have no row.
    """
    rows = []
    for layer in net.weight_layers:
        if isinstance(layer, Linear):
            rows.append((1, 1, layer.in_features, 1, 1, layer.out_features, 0, 1))
            continue
        if layer.pad != (layer.k - 1) // 2:
            raise ValueError(f"layer {layer.name!r}: pad={layer.pad} cannot be written to a NeuroSim file "
                             f"(it implies pad=(K-1)//2={(layer.k - 1) // 2})")
        c, h, w = net.in_shape(layer)
        cons = net.consumers(layer.name)
        pool = int(len(cons) == 1 and isinstance(cons[0], MaxPool) and cons[0].k == 2 and cons[0].step == 2
                   and cons[0].pad == 0)
        rows.append((h, w, c, layer.k, layer.k, layer.cout, pool, layer.stride))
    return rows


def format_neurosim_csv(net: Network) -> str:
    return "".join(",".join(str(v) for v in r) + "\n" for r in neurosim_rows(net))


def write_neurosim_csv(net: Network, path: str | Path) -> None:
    Path(path).write_text(format_neurosim_csv(net))
