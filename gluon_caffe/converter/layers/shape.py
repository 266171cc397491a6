"""Shape-changing translators: Concat, Slice, Split, Flatten, Reshape, Crop, Tile."""

import mxnet as mx

from ..registry import Translation, register

__all__ = ["translate_concat", "translate_slice", "translate_split", "translate_flatten",
           "translate_reshape", "translate_crop", "translate_tile"]


def _axis(layer, ctx, x, axis):
    if axis >= 0:
        return axis
    return ctx.canonical_axis(layer, axis, len(ctx.shape(x, layer)))


@register("Concat")
def translate_concat(layer, inputs, ctx):
    """Concat along ``axis`` (or the legacy ``concat_dim``)."""
    p = layer.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") else p.axis
    axis = _axis(layer, ctx, inputs[0], axis)
    if len(inputs) == 1:
        return Translation([mx.sym.identity(inputs[0], name=ctx.op_name(layer))], {}, {})
    return Translation([mx.sym.concat(*inputs, dim=axis, name=ctx.op_name(layer))], {}, {})


@register("Slice")
def translate_slice(layer, inputs, ctx):
    """Slice along ``axis`` (or legacy ``slice_dim``) at ``slice_point``s, or into equal parts."""
    p = layer.slice_param
    x = inputs[0]
    n_top = len(layer.top)
    axis = p.slice_dim if p.HasField("slice_dim") else p.axis
    shape = ctx.shape(x)
    if shape is not None:
        axis = ctx.canonical_axis(layer, axis, len(shape))
    elif axis < 0:
        raise ctx.error(layer, "a negative slice axis needs the input shape")
    points = list(p.slice_point)
    if points:
        if len(points) != n_top - 1:
            raise ctx.error(layer, "slice_param has %d slice_point values for %d tops", len(points), n_top)
        if any(b <= a for a, b in zip([0] + points, points)):
            raise ctx.error(layer, "slice_param.slice_point must increase, got %s", points)
        bounds = [0] + points + [None]
        outs = [mx.sym.slice_axis(x, axis=axis, begin=bounds[i], end=bounds[i + 1],
                                  name=ctx.op_name(layer, str(i))) for i in range(n_top)]
        return Translation(outs, {}, {})
    if shape is not None and shape[axis] % n_top:
        raise ctx.error(layer, "axis %d of size %d does not split into %d equal tops", axis, shape[axis], n_top)
    if n_top == 1:
        return Translation([mx.sym.identity(x, name=ctx.op_name(layer))], {}, {})
    parts = mx.sym.split(x, axis=axis, num_outputs=n_top, name=ctx.op_name(layer))
    return Translation([parts[i] for i in range(n_top)], {}, {})


@register("Split")
def translate_split(layer, inputs, ctx):
    """Split: every top is the bottom itself (no node is emitted)."""
    return Translation([inputs[0]] * len(layer.top), {}, {})


@register("Flatten")
def translate_flatten(layer, inputs, ctx):
    """Flatten the axes ``axis``..``end_axis`` into one."""
    p = layer.flatten_param
    x = inputs[0]
    name = ctx.op_name(layer)
    if p.axis == 1 and p.end_axis == -1:
        return Translation([mx.sym.flatten(x, name=name)], {}, {})
    shape = ctx.shape(x, layer)
    ndim = len(shape)
    start = ctx.canonical_axis(layer, p.axis, ndim)
    end = ctx.canonical_axis(layer, p.end_axis, ndim)
    # Leading axes are copied (0), the merged run is inferred (-1), trailing axes are fixed.
    new = tuple([0] * start) + (-1,) + tuple(shape[end + 1:])
    return Translation([mx.sym.reshape(x, shape=new, name=name)], {}, {})


@register("Reshape")
def translate_reshape(layer, inputs, ctx):
    """Reshape with Caffe's 0 (copy) and -1 (infer) codes over the ``axis``/``num_axes`` range."""
    p = layer.reshape_param
    x = inputs[0]
    dims = list(p.shape.dim)
    if sum(1 for d in dims if d == -1) > 1:
        raise ctx.error(layer, "reshape_param.shape has more than one -1")
    if any(d < -1 for d in dims):
        raise ctx.error(layer, "reshape_param.shape has an invalid dimension %d", min(dims))
    shape = ctx.shape(x)
    axis, num_axes = p.axis, p.num_axes
    if num_axes < -1:
        raise ctx.error(layer, "reshape_param.num_axes must be >= -1, got %d", num_axes)
    if axis == 0 and num_axes == -1:
        new = tuple(dims)
    else:
        if shape is None:
            raise ctx.error(layer, "reshape_param axis/num_axes need the input shape, which is unknown")
        ndim = len(shape)
        start = axis if axis >= 0 else ndim + axis + 1
        if not 0 <= start <= ndim:
            raise ctx.error(layer, "reshape_param.axis %d is out of range for a %d-D input", axis, ndim)
        end = ndim if num_axes == -1 else start + num_axes
        if end > ndim:
            raise ctx.error(layer, "reshape_param axis %d + num_axes %d exceed %d axes", axis, num_axes, ndim)
        # Caffe's 0 copies input axis (start + i): MXNet's 0 copies the same index once the
        # leading axes are copied one to one.
        trailing = tuple(shape[end:])
        if len(dims) == end - start and trailing:
            trailing = (-2,)
        new = tuple([0] * start) + tuple(dims) + trailing
    return Translation([mx.sym.reshape(x, shape=new, name=ctx.op_name(layer))], {}, {})


@register("Crop")
def translate_crop(layer, inputs, ctx):
    """Crop bottom 0 to bottom 1's shape on the axes from ``axis`` on, at ``offset``s."""
    p = layer.crop_param
    if len(inputs) != 2:
        raise ctx.error(layer, "Crop needs two bottoms, got %d", len(inputs))
    shape = ctx.shape(inputs[0], layer)
    ref = ctx.shape(inputs[1], layer)
    if len(shape) != len(ref):
        raise ctx.error(layer, "bottoms have %d and %d axes", len(shape), len(ref))
    axis = ctx.canonical_axis(layer, p.axis, len(shape))
    n_crop = len(shape) - axis
    offsets = list(p.offset)
    if len(offsets) == 0:
        offsets = [0] * n_crop
    elif len(offsets) == 1:
        offsets = offsets * n_crop
    elif len(offsets) != n_crop:
        raise ctx.error(layer, "crop_param has %d offsets for %d cropped axes", len(offsets), n_crop)
    begin, end = [], []
    for i in range(len(shape)):
        if i < axis:
            begin.append(None)
            end.append(None)
            continue
        off = offsets[i - axis]
        if off + ref[i] > shape[i]:
            raise ctx.error(layer, "crop_param.offset %d + size %d exceeds axis %d of size %d",
                            off, ref[i], i, shape[i])
        begin.append(off)
        end.append(off + ref[i])
    return Translation([mx.sym.slice(inputs[0], begin=tuple(begin), end=tuple(end),
                                     name=ctx.op_name(layer))], {}, {})


@register("Tile")
def translate_tile(layer, inputs, ctx):
    """Tile ``tiles`` times along ``axis``."""
    p = layer.tile_param
    if not p.HasField("tiles"):
        raise ctx.error(layer, "tile_param.tiles is required")
    shape = ctx.shape(inputs[0], layer)
    axis = ctx.canonical_axis(layer, p.axis, len(shape))
    reps = [1] * len(shape)
    reps[axis] = p.tiles
    return Translation([mx.sym.tile(inputs[0], reps=tuple(reps), name=ctx.op_name(layer))], {}, {})
