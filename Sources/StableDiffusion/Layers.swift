import Foundation
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
    /// 3×3 stride-1 padding-1 convolutions with enough channels may run as Winograd F(2×2, 3×3) (opt-in, below).
    let winograd: WinogradWeight?
    init(_ w: WeightSource, _ prefix: String, _ inC: Int, _ outC: Int, kernel: Int, stride: Int = 1, padding: Int? = nil,
         pad: (Int, Int, Int, Int)? = nil) throws {
        weight = try w.take("\(prefix).weight", shape: [outC, inC, kernel, kernel])
        bias = try w.take("\(prefix).bias", shape: [outC])
        self.stride = stride
        let p = padding ?? kernel / 2
        self.pad = pad.map { ($0.0, $0.1, $0.2, $0.3) } ?? (p, p, p, p)
        winograd = kernel == 3 && stride == 1 && self.pad == (1, 1, 1, 1) && inC >= Conv2d.winogradMinimumChannels
            && Conv2d.winogradEnabled
            ? WinogradWeight(weight) : nil
    }
    static let winogradMinimumChannels = 16
    /// Winograd is opt-in (`OCDEDIT_WINOGRAD=1`): it passes the parity tests, but on this machine's noisy 2 cores
    /// its gain at 512 px was within run-to-run variation (≈10 %), and its weights take 16/9 of the 3×3 weights
    /// on top of them (+2.4 GB for SD 1.5), which would break the 8 GiB batch-16 budget.
    static let winogradEnabled = ProcessInfo.processInfo.environment["OCDEDIT_WINOGRAD"] == "1"
    func callAsFunction(_ x: Tensor) -> Tensor {
        if let winograd, x.shape[2] >= 2, x.shape[3] >= 2 { return Ops.conv2dWinograd(x, weight: winograd, bias: bias) }
        return Ops.conv2d(x, weight: weight, bias: bias, stride: stride, pad: pad)
    }
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
