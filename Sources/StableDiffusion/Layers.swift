import Foundation
import TensorKernels

/// nn.Linear (weight [out, in], optional bias).
struct Linear {
    let weight: Tensor
    let bias: Tensor?
    init(_ w: WeightSource, _ prefix: String, _ inF: Int, _ outF: Int, bias: Bool = true,
         aliases: [String] = []) throws {
        weight = try w.take("\(prefix).weight", shape: [outF, inF], aliases: aliases.map { "\($0).weight" })
        self.bias = bias ? try w.take("\(prefix).bias", shape: [outF], aliases: aliases.map { "\($0).bias" }) : nil
    }
    func callAsFunction(_ x: Tensor) -> Tensor { Ops.linear(x, weight: weight, bias: bias) }
}

/// nn.Conv2d (NCHW).
struct Conv2d {
    /// How the convolution runs: im2col with the weight [O, C, kh, kw], or Winograd F(2×2, 3×3) with the weight
    /// kept only in the Winograd domain (3×3 stride-1 padding-1 convolutions with enough channels).
    enum Kernel {
        case im2col(Tensor)
        case winograd(WinogradWeight)
    }
    let kernel: Kernel
    let bias: Tensor?
    let stride: Int
    let pad: (top: Int, left: Int, bottom: Int, right: Int)
    init(_ w: WeightSource, _ prefix: String, _ inC: Int, _ outC: Int, kernel: Int, stride: Int = 1,
         padding: Int? = nil, pad: (Int, Int, Int, Int)? = nil) throws {
        let weight = try w.take("\(prefix).weight", shape: [outC, inC, kernel, kernel])
        bias = try w.take("\(prefix).bias", shape: [outC])
        self.stride = stride
        let p = padding ?? kernel / 2
        self.pad = pad.map { ($0.0, $0.1, $0.2, $0.3) } ?? (p, p, p, p)
        let useWinograd = kernel == 3 && stride == 1 && self.pad == (1, 1, 1, 1)
            && inC >= Conv2d.winogradMinimumChannels
            && inC <= Conv2d.winogradMaximumChannels && Conv2d.winogradEnabled
        self.kernel = useWinograd ? .winograd(WinogradWeight(weight)) : .im2col(weight)
    }
    static let winogradMinimumChannels = 16
    /// Winograd weights take 16/9 of the 3×3 weights (SD 1.5 UNet: 3.7 GB instead of 2.1 GB). The deep
    /// 1280-channel convolutions hold most of those bytes and run on few pixels, where a batch-1 forward streams the
    /// weight for little work; with batched frames they gain the most (256 px, batch 16: 19.8 s per forward with
    /// all convolutions in Winograd, 27.4 s with those ≥ 1280 channels in im2col). `OCDEDIT_WINOGRAD_MAX_CHANNELS=640`
    /// keeps them im2col (1.4 GB less memory).
    static let winogradMaximumChannels =
        Int(ProcessInfo.processInfo.environment["OCDEDIT_WINOGRAD_MAX_CHANNELS"] ?? "") ?? Int.max
    /// Winograd is the default (`OCDEDIT_WINOGRAD=0` turns it off, e.g. for A/B timing): 2.25× fewer multiplies in
    /// the 3×3 convolutions, which are half of the UNet's and most of the VAE's work; the parity tests hold with it.
    static let winogradEnabled = ProcessInfo.processInfo.environment["OCDEDIT_WINOGRAD"] != "0"
    func callAsFunction(_ x: Tensor) -> Tensor {
        switch kernel {
        case .winograd(let weight): return Ops.conv2dWinograd(x, weight: weight, bias: bias)
        case .im2col(let weight): return Ops.conv2d(x, weight: weight, bias: bias, stride: stride, pad: pad)
        }
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
