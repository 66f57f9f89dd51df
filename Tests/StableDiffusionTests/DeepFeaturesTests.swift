import Foundation
import XCTest
@testable import StableDiffusion
import TensorKernels

/// DeepCache through `UNetDeepFeatures`: a recording call is the plain call; a shallow call on the same input gets
/// the same deep features back, so it must give the plain output too (this checks which skips the outer blocks get);
/// on another input it differs from both. The same for each DeepCache branch.
final class DeepFeaturesTests: XCTestCase {
    func testShallowCallOnTheRecordedInputIsTheFullCall() throws {
        for model in ["tiny-sd1", "tiny-sd2"] {
            let unet = try UNet2DConditionModel(folder: Fixtures.url("\(model)/unet"))
            let d = unet.config.crossAttentionDim
            // 12×10: not a multiple of 2^(up blocks) on one side, diffusers' upsample_size path.
            let sample = Tensor.randomNormal(shape: [2, 4, 12, 10], seed: 3)
            let other = Tensor.randomNormal(shape: [2, 4, 12, 10], seed: 4)
            let context = Tensor.randomNormal(shape: [2, 77, d], seed: 6)
            let t: [Float] = [500, 500]
            let plain = unet(sample, timesteps: t, encoderHiddenStates: context)
            let plainOther = unet(other, timesteps: t, encoderHiddenStates: context)
            var shallowOthers: [Tensor] = []
            // Every branch from conv_in's skip alone to the whole outer level (and beyond: clamped to the level).
            for branch in 0...(unet.config.layersPerBlock + 1) {
                let name = "\(model) branch \(branch)"
                let store = UNetDeepFeatures(branch: branch)
                let recorded = unet(sample, timesteps: t, encoderHiddenStates: context, deepFeatures: .record(store))
                XCTAssertEqual(maxDifference(recorded, plain), 0, name)
                XCTAssertNotNil(store.features)
                let shallow = unet(sample, timesteps: t, encoderHiddenStates: context, deepFeatures: .reuse(store))
                XCTAssertLessThan(maxDifference(shallow, plain), 1e-5, name)
                let shallowOther = unet(other, timesteps: t, encoderHiddenStates: context, deepFeatures: .reuse(store))
                XCTAssertGreaterThan(maxDifference(shallowOther, plain), 1e-3, "\(name): the call ignored its input")
                XCTAssertGreaterThan(maxDifference(shallowOther, plainOther), 1e-4, "\(name): nothing was reused")
                shallowOthers.append(shallowOther)
            }
            // A deeper branch recomputes more: each is its own shallow call, and the two largest are the same level.
            for b in 1..<unet.config.layersPerBlock + 1 {
                XCTAssertGreaterThan(maxDifference(shallowOthers[b], shallowOthers[b - 1]), 1e-6, "\(model) \(b)")
            }
            let (whole, beyond) = (shallowOthers[shallowOthers.count - 2], shallowOthers[shallowOthers.count - 1])
            XCTAssertEqual(maxDifference(beyond, whole), 0, model)
        }
    }

    /// `lastItems`: the last items' features of a two-half record are those a record of that half alone keeps (what
    /// an unguided shallow call after a guided full call reuses: the target half).
    func testLastItemsAreTheLastHalfsFeatures() throws {
        let unet = try UNet2DConditionModel(folder: Fixtures.url("tiny-sd1/unet"))
        let d = unet.config.crossAttentionDim
        let sample = Tensor.randomNormal(shape: [1, 4, 8, 8], seed: 3)
        let other = Tensor.randomNormal(shape: [1, 4, 8, 8], seed: 4)
        let negative = Tensor.randomNormal(shape: [1, 77, d], seed: 6)
        let target = Tensor.randomNormal(shape: [1, 77, d], seed: 7)
        let both = UNetDeepFeatures(branch: 0), alone = UNetDeepFeatures(branch: 0)
        _ = unet(Ops.concat([sample, sample], dim: 0), timesteps: [500, 500],
                 encoderHiddenStates: Ops.concat([negative, target], dim: 0), deepFeatures: .record(both))
        _ = unet(sample, timesteps: [500], encoderHiddenStates: target, deepFeatures: .record(alone))
        XCTAssertEqual(both.batchSize, 2)
        let fromHalf = unet(other, timesteps: [500], encoderHiddenStates: target,
                            deepFeatures: .reuse(both.lastItems(1)))
        let fromAlone = unet(other, timesteps: [500], encoderHiddenStates: target, deepFeatures: .reuse(alone))
        XCTAssertLessThan(maxDifference(fromHalf, fromAlone), 1e-5)
        let negativeRecord = UNetDeepFeatures(branch: 0)
        _ = unet(sample, timesteps: [500], encoderHiddenStates: negative, deepFeatures: .record(negativeRecord))
        let fromNegative = unet(other, timesteps: [500], encoderHiddenStates: target,
                                deepFeatures: .reuse(negativeRecord))
        XCTAssertGreaterThan(maxDifference(fromNegative, fromAlone), 1e-4, "the halves' features do not differ")
    }
}
