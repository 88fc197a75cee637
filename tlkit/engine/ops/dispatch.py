"""Which op answers a numpy ufunc or function called on a Tensor or Variable."""
import numpy as np

from tlkit.engine.ops import linalg, math_ops as m, nn, shape_ops as s

UFUNCS = {
    np.add: m.add, np.subtract: m.subtract, np.multiply: m.multiply, np.true_divide: m.divide,
    np.power: m.power, np.negative: m.negative, np.positive: lambda x: x, np.exp: m.exp, np.expm1: m.expm1,
    np.log: m.log, np.log1p: m.log1p, np.sqrt: m.sqrt, np.square: m.square, np.absolute: m.abs,
    np.sin: m.sin, np.cos: m.cos, np.tanh: m.tanh, np.reciprocal: m.reciprocal, np.maximum: m.maximum,
    np.minimum: m.minimum, np.matmul: linalg.matmul, np.sign: m.sign, np.floor: m.floor, np.ceil: m.ceil,
    np.equal: m.equal, np.not_equal: m.not_equal, np.less: m.less, np.less_equal: m.less_equal,
    np.greater: m.greater, np.greater_equal: m.greater_equal, np.logical_and: m.logical_and,
    np.logical_or: m.logical_or, np.logical_not: m.logical_not, np.floor_divide: m.floor_divide,
    np.remainder: m.mod, np.isnan: m.isnan, np.isfinite: m.isfinite,
}

_AXIS = {"axis", "keepdims"}
# numpy function -> (op, the keyword arguments the op understands)
FUNCTIONS = {
    np.sum: (m.sum, _AXIS), np.mean: (m.mean, _AXIS), np.max: (m.max, _AXIS), np.min: (m.min, _AXIS),
    np.amax: (m.max, _AXIS), np.amin: (m.min, _AXIS), np.var: (m.var, _AXIS), np.std: (m.std, _AXIS),
    np.argmax: (m.argmax, _AXIS), np.argmin: (m.argmin, _AXIS), np.cumsum: (m.cumsum, {"axis"}),
    np.clip: (m.clip, set()), np.where: (m.where, set()), np.reshape: (s.reshape, set()),
    np.transpose: (s.transpose, {"axes"}), np.expand_dims: (s.expand_dims, {"axis"}),
    np.squeeze: (s.squeeze, {"axis"}), np.concatenate: (s.concatenate, {"axis"}), np.stack: (s.stack, {"axis"}),
    np.split: (s.split, {"axis"}), np.take: (s.take, {"axis"}), np.take_along_axis: (s.take_along_axis, {"axis"}),
    np.broadcast_to: (s.broadcast_to, set()), np.moveaxis: (s.moveaxis, set()), np.swapaxes: (s.swapaxes, set()),
    np.dot: (linalg.dot, set()), np.einsum: (linalg.einsum, set()), np.tensordot: (linalg.tensordot, {"axes"}),
    np.sort: (s.sort, {"axis"}), np.linalg.norm: (nn.norm, {"ord", "axis", "keepdims"}),
    np.zeros_like: (s.zeros_like, {"dtype"}), np.ones_like: (s.ones_like, {"dtype"}),
}
