// Reverse-mode differentiation of a forward pass with respect to its input (not the weights): each op runs forward
// at once and records how to send its output's gradient back to its inputs; `backward` replays those steps last to
// first. Used for ∂loss/∂latent of losses on attention maps (mode=reatco). A step keeps only what its backward
// needs (a norm's input, an attention's queries/keys/values); a linear layer or a convolution keeps nothing but
// its weight.
import Foundation
import TensorKernels

/// A value of a recorded forward pass and, in its `slot`, the loss's gradient with respect to it once the backward
/// pass reached it. Steps hold a value's slot, and its tensor only when their backward reads it, so a tensor no
/// backward needs (a linear layer's input, a convolution's) is freed as soon as the forward moves on.
final class TapeValue {
    let value: Tensor
    let slot: GradientSlot

    init(_ value: Tensor, needsGradient: Bool = true) {
        self.value = value
        slot = GradientSlot(shape: value.shape, needsGradient: needsGradient)
    }

    var shape: [Int] { value.shape }
    /// False for constants (the prompt, the timestep embedding): no gradient is sent to them.
    var needsGradient: Bool { slot.needsGradient }
    var gradient: Tensor? { slot.gradient }
    func accumulate(_ g: Tensor) { slot.accumulate(g) }
}

/// Where a value's gradient accumulates.
final class GradientSlot {
    let shape: [Int]
    let needsGradient: Bool
    fileprivate(set) var gradient: Tensor?

    init(shape: [Int], needsGradient: Bool) { (self.shape, self.needsGradient) = (shape, needsGradient) }

    func accumulate(_ g: Tensor) {
        guard needsGradient else { return }
        precondition(g.shape == shape, "gradient \(g.shape) for a value \(shape)")
        if let gradient { Ops.addInPlace(gradient, g) } else { gradient = g }
    }

    /// Hands the gradient over (the step that reads it is the only reader) and forgets it, so it can be freed.
    fileprivate func take() -> Tensor? {
        defer { gradient = nil }
        return gradient
    }
}

/// The recorded steps of one forward pass.
final class GradientTape {
    private var steps: [() -> Void] = []
    /// Input gradients of 3×3 Winograd convolutions (their weights exist only in the Winograd domain), built on first
    /// use and kept by whoever owns the tape's `weights`.
    let weights: BackwardWeights

    init(weights: BackwardWeights) { self.weights = weights }

    /// `output` was computed from values that need gradients: `send` gets ∂loss/∂output, if the loss reached it
    /// (a value nothing downstream of the loss read has none), and accumulates into them.
    private func record(_ output: TapeValue, _ send: @escaping (Tensor) -> Void) {
        let slot = output.slot
        steps.append {
            if let g = slot.take() { send(g) }
        }
    }

    /// Replays the steps last to first, releasing each step (and what only it held) once it ran.
    func backward() {
        while let step = steps.popLast() { step() }
    }

    /// A new value computed from `inputs`: it needs a gradient when any of them does.
    private func value(_ t: Tensor, from inputs: [TapeValue]) -> TapeValue {
        TapeValue(t, needsGradient: inputs.contains { $0.needsGradient })
    }

    // MARK: Ops (each step captures its inputs' slots, and their tensors only where its backward reads them)

    func linear(_ x: TapeValue, _ layer: Linear) -> TapeValue {
        let y = value(layer(x.value), from: [x])
        if x.needsGradient {
            let input = x.slot
            record(y) { input.accumulate(Ops.linearInputGradient($0, weight: layer.weight)) }
        }
        return y
    }

    func conv(_ x: TapeValue, _ layer: Conv2d) -> TapeValue {
        let y = value(layer(x.value), from: [x])
        guard x.needsGradient else { return y }
        let (input, h, w) = (x.slot, x.shape[2], x.shape[3])
        switch layer.kernel {
        case .winograd(let weight):
            if let backwardWeight = weights.inputGradient(of: weight) {
                record(y) {
                    input.accumulate(Ops.conv2dWinogradInputGradient($0, inputGradientWeight: backwardWeight))
                }
            } else {
                // A wide layer: its 3×3 weight rebuilt from the Winograd domain for this call only (cheap beside
                // the product, and nothing kept), then im2col's input gradient.
                record(y) {
                    input.accumulate(Ops.conv2dInputGradient($0, weight: weight.spatialWeight(), inputHeight: h,
                                                             inputWidth: w, stride: 1, pad: (1, 1, 1, 1)))
                }
            }
        case .im2col(let weight):
            let (stride, pad) = (layer.stride, layer.pad)
            record(y) {
                input.accumulate(Ops.conv2dInputGradient($0, weight: weight, inputHeight: h, inputWidth: w,
                                                         stride: stride, pad: pad))
            }
        }
        return y
    }

    func groupNorm(_ x: TapeValue, _ layer: GroupNorm, silu: Bool = false) -> TapeValue {
        let y = value(layer(x.value, silu: silu), from: [x])
        if x.needsGradient {
            let (input, slot) = (x.value, x.slot)
            record(y) {
                slot.accumulate(Ops.groupNormInputGradient(input, $0, groups: layer.groups, weight: layer.weight,
                                                           bias: layer.bias, eps: layer.eps, silu: silu))
            }
        }
        return y
    }

    func layerNorm(_ x: TapeValue, _ layer: LayerNorm) -> TapeValue {
        let y = value(layer(x.value), from: [x])
        if x.needsGradient {
            let (input, slot) = (x.value, x.slot)
            record(y) { slot.accumulate(Ops.layerNormInputGradient(input, $0, weight: layer.weight, eps: layer.eps)) }
        }
        return y
    }

    func geglu(_ x: TapeValue) -> TapeValue {
        let y = value(Ops.geglu(x.value), from: [x])
        if x.needsGradient {
            let (input, slot) = (x.value, x.slot)
            record(y) { slot.accumulate(Ops.gegluInputGradient(input, $0)) }
        }
        return y
    }

    func add(_ a: TapeValue, _ b: TapeValue) -> TapeValue {
        let y = value(Ops.add(a.value, b.value), from: [a, b])
        if y.needsGradient {
            let (left, right) = (a.slot, b.slot)
            record(y) { g in
                if left.needsGradient && right.needsGradient {
                    left.accumulate(g.copy())
                    right.accumulate(g)
                } else {
                    (left.needsGradient ? left : right).accumulate(g)
                }
            }
        }
        return y
    }

    /// x [B, C, …] + a constant per channel (the time embedding's projection): the gradient passes unchanged.
    func addChannelBias(_ x: TapeValue, _ bias: Tensor) -> TapeValue {
        let out = x.value.copy()
        Ops.addChannelBiasInPlace(out, bias)
        let y = value(out, from: [x])
        if x.needsGradient {
            let input = x.slot
            record(y) { input.accumulate($0) }
        }
        return y
    }

    /// Concatenation along the channels of [B, C_i, h, w] values.
    func concatChannels(_ parts: [TapeValue]) -> TapeValue {
        let y = value(Ops.concat(parts.map(\.value), dim: 1), from: parts)
        if y.needsGradient {
            let (slots, sizes) = (parts.map(\.slot), parts.map { $0.shape[1] })
            record(y) { g in
                for (slot, piece) in zip(slots, Ops.split(g, dim: 1, sizes: sizes)) { slot.accumulate(piece) }
            }
        }
        return y
    }

    func upsampleNearest(_ x: TapeValue, height: Int, width: Int) -> TapeValue {
        let y = value(Ops.upsampleNearest(x.value, height: height, width: width), from: [x])
        if x.needsGradient {
            let (input, h, w) = (x.slot, x.shape[2], x.shape[3])
            record(y) { input.accumulate(Ops.upsampleNearestInputGradient($0, inputHeight: h, inputWidth: w)) }
        }
        return y
    }

    /// [B, C, h, w] → tokens [B, h·w, C].
    func toTokens(_ x: TapeValue) -> TapeValue {
        let y = value(Ops.toTokens(x.value), from: [x])
        if x.needsGradient {
            let (input, h, w) = (x.slot, x.shape[2], x.shape[3])
            record(y) { input.accumulate(Ops.fromTokens($0, height: h, width: w)) }
        }
        return y
    }

    /// Tokens [B, h·w, C] → [B, C, h, w].
    func fromTokens(_ x: TapeValue, height: Int, width: Int) -> TapeValue {
        let y = value(Ops.fromTokens(x.value, height: height, width: width), from: [x])
        if x.needsGradient {
            let input = x.slot
            record(y) { input.accumulate(Ops.toTokens($0)) }
        }
        return y
    }

    /// softmax(q·kᵀ/√d)·v over `heads` heads; with `probabilities`, also the probabilities [B, heads, Nq, Nk] as a
    /// value of their own (a loss may read them: their gradient joins the output's in the backward step).
    func attention(query q: TapeValue, key k: TapeValue, value v: TapeValue, heads: Int,
                   probabilities: Bool = false) -> (output: TapeValue, probabilities: TapeValue?) {
        let inputs = [q, k, v]
        let out = value(Ops.attention(query: q.value, key: k.value, value: v.value, heads: heads), from: inputs)
        let p = probabilities
            ? value(Ops.attentionProbabilities(query: q.value, key: k.value, heads: heads), from: inputs) : nil
        guard out.needsGradient else { return (out, p) }
        // One step for both values, recorded after both: when it runs, every reader of the output has sent its
        // gradient, and the probabilities' (only a loss reads them) was set before the backward pass.
        let keyValueGradients = k.needsGradient || v.needsGradient
        let (outSlot, pSlot) = (out.slot, p?.slot)
        let (query, key, value) = (q.value, k.value, v.value)
        let (qSlot, kSlot, vSlot) = (q.slot, k.slot, v.slot)
        steps.append {
            let (dOut, dP) = (outSlot.take(), pSlot?.take())
            guard dOut != nil || dP != nil else { return }
            let g = Ops.attentionGradients(query: query, key: key, value: value, heads: heads,
                                           outputGradient: dOut, probabilityGradient: dP,
                                           keyValueGradients: keyValueGradients)
            qSlot.accumulate(g.query)
            if let dk = g.key { kSlot.accumulate(dk) }
            if let dv = g.value { vSlot.accumulate(dv) }
        }
        return (out, p)
    }

    /// Self-attention across items: item b's queries attend to the keys/values of the items `groups[b]` (its own
    /// among them), their tokens concatenated in that order (cross-frame attention, as `KeyValueGroups` without
    /// weights). q, k, v [B, N, C]; the output [B, N, C]. Keys and values pass their gradients back to every item
    /// that lent them.
    func groupedAttention(query q: TapeValue, key k: TapeValue, value v: TapeValue, heads: Int,
                          groups: [[Int]]) -> TapeValue {
        let b = q.shape[0]
        precondition(groups.count == b && groups.allSatisfy { $0.allSatisfy((0..<b).contains) },
                     "grouped attention: \(groups) for a batch of \(b)")
        func item(_ x: Tensor, _ i: Int) -> Tensor { x.slice(first: i, length: 1) }
        func lent(_ x: Tensor, _ i: Int) -> Tensor { Ops.concat(groups[i].map { item(x, $0) }, dim: 1) }
        let out = value(Ops.concat((0..<b).map {
            Ops.attention(query: item(q.value, $0), key: lent(k.value, $0), value: lent(v.value, $0), heads: heads)
        }, dim: 0), from: [q, k, v])
        guard out.needsGradient else { return out }
        let (query, key, value) = (q.value, k.value, v.value)
        let (qSlot, kSlot, vSlot) = (q.slot, k.slot, v.slot)
        let keyValueGradients = k.needsGradient || v.needsGradient
        record(out) { dOut in
            var dQ: [Tensor] = []
            let dK = Tensor(shape: key.shape), dV = Tensor(shape: value.shape)
            let perItem = key.count / b
            for i in 0..<b {
                let g = Ops.attentionGradients(query: item(query, i), key: lent(key, i), value: lent(value, i),
                                               heads: heads, outputGradient: item(dOut, i), probabilityGradient: nil,
                                               keyValueGradients: keyValueGradients)
                dQ.append(g.query)
                for (into, part) in [(dK, g.key), (dV, g.value)] {
                    guard let part else { continue }
                    let pieces = Ops.split(part, dim: 1, sizes: [Int](repeating: key.shape[1], count: groups[i].count))
                    for (source, piece) in zip(groups[i], pieces) {
                        let base = into.data + source * perItem
                        for j in 0..<perItem { base[j] += piece.data[j] }
                        withExtendedLifetime(piece) {}
                    }
                }
            }
            qSlot.accumulate(Ops.concat(dQ, dim: 0))
            if keyValueGradients { kSlot.accumulate(dK); vSlot.accumulate(dV) }
        }
        return out
    }
}

/// Input-gradient weights of a model's Winograd convolutions (their flipped, channel-swapped kernels), built on
/// first use for layers of at most `maximumChannels` input and output channels. Wider layers hold most of the
/// weights' bytes (SD 1.5: the 1280-channel ones, about 3 GB of copies) and run on few pixels, where im2col with the
/// weight rebuilt per call costs little: they get nil. Owned by the caller that runs gradients (the model never
/// changes); one per model; safe to share between threads.
public final class BackwardWeights: @unchecked Sendable {
    private var built: [ObjectIdentifier: WinogradWeight] = [:]
    private let lock = NSLock()
    public let maximumChannels: Int

    public init(maximumChannels: Int = 640) { self.maximumChannels = maximumChannels }

    func inputGradient(of weight: WinogradWeight) -> WinogradWeight? {
        guard max(weight.inChannels, weight.outChannels) <= maximumChannels else { return nil }
        lock.lock()
        defer { lock.unlock() }
        if let w = built[ObjectIdentifier(weight)] { return w }
        let w = weight.inputGradientWeight()
        built[ObjectIdentifier(weight)] = w
        return w
    }
}
