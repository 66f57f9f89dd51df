import TensorKernels

/// nn.Linear (weight [out, in], optional bias).
struct Linear {
    let weight: Tensor
    let bias: Tensor?
    init(_ w: WeightSource, _ prefix: String, _ inF: Int, _ outF: Int, bias: Bool = true, aliases: [String] = []) throws {
        weight = try w.take("\(prefix).weight", shape: [outF, inF], aliases: aliases.map { "\($0).weight" })
        self.bias = bias ? try w.take("\(prefix).bias", shape: [outF], aliases: aliases.map { "\($0).bias" }) : nil
    }
    func callAsFunction(_ x: Tensor) -> Tensor { Ops.linear(x, weight: weight, bias: bias) }
}

/// nn.Conv2d (NCHW).
struct Conv2d {
    let weight: Tensor
    let bias: Tensor?
    let stride: Int
    let pad: (top: Int, left: Int, bottom: Int, right: Int)
    init(_ w: WeightSource, _ prefix: String, _ inC: Int, _ outC: Int, kernel: Int, stride: Int = 1, padding: Int? = nil,
         pad: (Int, Int, Int, Int)? = nil) throws {
        weight = try w.take("\(prefix).weight", shape: [outC, inC, kernel, kernel])
        bias = try w.take("\(prefix).bias", shape: [outC])
        self.stride = stride
        let p = padding ?? kernel / 2
        self.pad = pad.map { ($0.0, $0.1, $0.2, $0.3) } ?? (p, p, p, p)
    }
    func callAsFunction(_ x: Tensor) -> Tensor { Ops.conv2d(x, weight: weight, bias: bias, stride: stride, pad: pad) }
}

struct GroupNorm {
    let weight: Tensor, bias: Tensor, groups: Int, eps: Float
    init(_ w: WeightSource, _ prefix: String, _ channels: Int, groups: Int, eps: Float) throws {
        weight = try w.take("\(prefix).weight", shape: [channels])
        bias = try w.take("\(prefix).bias", shape: [channels])
        self.groups = groups
        self.eps = eps
    }
    func callAsFunction(_ x: Tensor, silu: Bool = false) -> Tensor {
        Ops.groupNorm(x, groups: groups, weight: weight, bias: bias, eps: eps, silu: silu)
    }
}

struct LayerNorm {
    let weight: Tensor, bias: Tensor, eps: Float
    init(_ w: WeightSource, _ prefix: String, _ channels: Int, eps: Float) throws {
        weight = try w.take("\(prefix).weight", shape: [channels])
        bias = try w.take("\(prefix).bias", shape: [channels])
        self.eps = eps
    }
    func callAsFunction(_ x: Tensor) -> Tensor { Ops.layerNorm(x, weight: weight, bias: bias, eps: eps) }
}
