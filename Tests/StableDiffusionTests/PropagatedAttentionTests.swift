import Foundation
import XCTest
import StableDiffusion
import TensorKernels

/// The self-attention propagation hook (TokenFlow) on the tiny UNet: computing every item over its own tokens is
/// plain self-attention; an item propagated from an identical item at the same tokens gets that item's output; a
/// permuted propagation changes the result.
final class PropagatedAttentionTests: XCTestCase {
    final class Hooks: UNetAttentionHooks {
        let make: (Tensor, AttentionLayerInfo) -> PropagatedSelfAttention?
        var calls = 0
        init(_ make: @escaping (Tensor, AttentionLayerInfo) -> PropagatedSelfAttention?) { self.make = make }
        func selfAttentionPropagation(_ x: Tensor, layer: AttentionLayerInfo) -> PropagatedSelfAttention? {
            calls += 1
            return make(x, layer)
        }
    }

    func ownTokens(_ x: Tensor, _ items: [Int]) -> KeyValueGroups {
        KeyValueGroups(tokens: items.map { x.slice(first: $0, length: 1) }, logWeights: items.map { _ in nil },
                       itemGroups: items.indices.map { [$0] })
    }

    func testPropagation() throws {
        let unet = try UNet2DConditionModel(folder: Fixtures.url("tiny-sd1/unet"))
        var rng = SeededRandom(seed: 11)
        let one = Tensor(shape: [1, 4, 8, 6])
        for i in 0..<one.count { one.data[i] = Float(Double(rng.next() % 2000) / 1000 - 1) }
        let sample = Ops.concat([one, one], dim: 0)
        let prompt = Tensor(shape: [1, 77, 32])
        for i in 0..<prompt.count { prompt.data[i] = Float(Double(rng.next() % 2000) / 1000 - 1) }
        let context = Ops.concat([prompt, prompt], dim: 0)
        let t: [Float] = [500, 500]
        let plain = unet(sample, timesteps: t, encoderHiddenStates: context)

        let everyItem = Hooks { x, _ in
            PropagatedSelfAttention(computed: [0, 1], groups: self.ownTokens(x, [0, 1]), sources: [:])
        }
        let a = unet(sample, timesteps: t, encoderHiddenStates: context, hooks: everyItem)
        XCTAssertGreaterThan(everyItem.calls, 0)
        XCTAssertLessThan(maxDifference(a, plain), 1e-5)

        func fromItemZero(_ index: @escaping (Int) -> Int32) -> Hooks {
            Hooks { x, layer in
                let n = layer.height * layer.width
                let idx = (0..<n).map(index)
                return PropagatedSelfAttention(computed: [0], groups: self.ownTokens(x, [0]),
                    sources: [1: .init(itemA: 0, indexA: idx, itemB: 0, indexB: idx, weightA: 1)])
            }
        }
        let same = unet(sample, timesteps: t, encoderHiddenStates: context, hooks: fromItemZero { Int32($0) })
        XCTAssertLessThan(maxDifference(same, plain), 1e-5)

        let reversed = Hooks { x, layer in
            let n = layer.height * layer.width
            let idx = (0..<n).map { Int32(n - 1 - $0) }, ident = (0..<n).map { Int32($0) }
            return PropagatedSelfAttention(computed: [0], groups: self.ownTokens(x, [0]),
                sources: [1: .init(itemA: 0, indexA: idx, itemB: 0, indexB: ident, weightA: 0.5)])
        }
        let mixed = unet(sample, timesteps: t, encoderHiddenStates: context, hooks: reversed)
        let item0 = mixed.slice(first: 0, length: 1), plain0 = plain.slice(first: 0, length: 1)
        XCTAssertLessThan(maxDifference(item0, plain0), 1e-5, "the computed item must not change")
        XCTAssertGreaterThan(maxDifference(mixed.slice(first: 1, length: 1), plain0), 1e-3, "propagation had no effect")
    }
}
