import Foundation
import XCTest
@testable import StableDiffusion
import TensorKernels

/// Self-attention map reuse through `KeyValueGroups.mapQueries`/`mapKeys` (FateZero): the maps come from other
/// hidden states, the values from the layer's own.
final class AttentionMapReuseTests: XCTestCase {
    func random(_ shape: [Int], seed: UInt64) -> Tensor { Tensor.randomNormal(shape: shape, seed: seed) }

    func ownGroups(_ x: Tensor) -> KeyValueGroups {
        let items = (0..<x.shape[0]).map { x.slice(first: $0, length: 1) }
        return KeyValueGroups(tokens: items, logWeights: items.map { _ in nil },
                              itemGroups: items.indices.map { [$0] })
    }

    /// One attention layer: maps from `s` over values from `x` is softmax(q(s)·k(s)ᵀ)·v(x), composed here from the
    /// projections; maps from `x` itself is plain self-attention.
    func testMapsFromOtherStatesValuesFromOwn() throws {
        let attention = try Attention(RandomWeights(seed: 5), "attn1", queryDim: 16, contextDim: 16, heads: 2)
        let x = random([2, 12, 16], seed: 1), s = random([2, 12, 16], seed: 2)

        var own = ownGroups(x)
        own.mapQueries = x
        own.mapKeys = own.tokens
        XCTAssertLessThan(maxDifference(attention(x, groups: own), attention(x)), 1e-5)

        var reused = ownGroups(x)
        reused.mapQueries = s
        reused.mapKeys = (0..<2).map { s.slice(first: $0, length: 1) }
        let expected = attention.toOut(Ops.attention(query: attention.toQ(s), key: attention.toK(s),
                                                     value: attention.toV(x), heads: 2))
        let got = attention(x, groups: reused)
        XCTAssertLessThan(maxDifference(got, expected), 1e-5)
        XCTAssertGreaterThan(maxDifference(got, attention(x)), 1e-3, "the maps had no effect")
        XCTAssertGreaterThan(maxDifference(got, attention(s)), 1e-3, "the values must stay the layer's own")
    }

    /// Through the tiny UNet: an item given another item's maps changes, the other item does not, and giving every
    /// item its own maps is the plain UNet.
    func testUNetHookReusesMaps() throws {
        final class Hooks: UNetAttentionHooks {
            let borrow: Bool
            var layers = 0
            init(borrow: Bool) { self.borrow = borrow }
            func selfAttentionKeyValues(_ x: Tensor, layer: AttentionLayerInfo) -> KeyValueGroups? {
                layers += 1
                let items = (0..<x.shape[0]).map { x.slice(first: $0, length: 1) }
                var g = KeyValueGroups(tokens: items, logWeights: items.map { _ in nil },
                                       itemGroups: items.indices.map { [$0] })
                let source = borrow ? [items[0], items[0]] : items
                g.mapKeys = source
                g.mapQueries = Ops.concat(source, dim: 0)
                return g
            }
        }
        let unet = try UNet2DConditionModel(folder: Fixtures.url("tiny-sd1/unet"))
        let sample = Ops.concat([random([1, 4, 8, 8], seed: 3), random([1, 4, 8, 8], seed: 4)], dim: 0)
        let prompt = random([1, 77, 32], seed: 6)
        let context = Ops.concat([prompt, prompt], dim: 0)
        let t: [Float] = [400, 400]
        let plain = unet(sample, timesteps: t, encoderHiddenStates: context)
        let ownHooks = Hooks(borrow: false)
        let own = unet(sample, timesteps: t, encoderHiddenStates: context, hooks: ownHooks)
        XCTAssertGreaterThan(ownHooks.layers, 0)
        XCTAssertLessThan(maxDifference(own, plain), 1e-5)
        let borrowed = unet(sample, timesteps: t, encoderHiddenStates: context, hooks: Hooks(borrow: true))
        XCTAssertLessThan(maxDifference(borrowed.slice(first: 0, length: 1), plain.slice(first: 0, length: 1)), 1e-5)
        XCTAssertGreaterThan(maxDifference(borrowed.slice(first: 1, length: 1), plain.slice(first: 1, length: 1)),
                             1e-4, "item 1 attended with item 0's maps: its output must change")
    }
}
