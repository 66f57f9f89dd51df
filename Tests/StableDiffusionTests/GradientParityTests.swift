import XCTest
import StableDiffusion
import TensorKernels

/// ∂loss/∂sample through the UNet's cross-attention maps against PyTorch autograd through diffusers' UNet
/// (Tests/Fixtures/make_gradient_fixtures.py): a loss linear in every map of a level, Σ_i Σ w_i ⊙ P_i, on the SD1-
/// and SD2-style tiny models (3 frames at 8×12, one timestep each), at both levels of their two blocks.
final class GradientParityTests: XCTestCase {
    func testMapGradientMatchesAutograd() throws {
        // Both ways through the Winograd convolutions: cached flipped weights, and im2col on rebuilt weights.
        for (model, maximumChannels) in [("tiny-sd1", 640), ("tiny-sd2", 640), ("tiny-sd1", 0)] {
            try checkMapGradients(model: model, maximumChannels: maximumChannels, crossFrame: false)
        }
    }

    /// The same with cross-frame self-attention: frame i attends to the keys/values of frames 0, i − 1 and i
    /// (cross-frame=first-previous), against autograd through diffusers' UNet with that attention in every attn1.
    func testCrossFrameMapGradientMatchesAutograd() throws {
        for model in ["tiny-sd1", "tiny-sd2"] {
            try checkMapGradients(model: model, maximumChannels: 640, crossFrame: true)
        }
    }

    private func checkMapGradients(model: String, maximumChannels: Int, crossFrame: Bool) throws {
        let unet = try UNet2DConditionModel(folder: Fixtures.url("\(model)/unet"))
        let weights = BackwardWeights(maximumChannels: maximumChannels)
        for level in 0..<2 {
            let input = try Fixtures.tensors("\(model)/reference/grad_maps_L\(level)_in.safetensors")
            let expected = try Fixtures.tensors("\(model)/reference/grad_maps_L\(level)"
                                                + (crossFrame ? "_cross_frame" : "") + "_out.safetensors")
            let names = unet.crossAttentionLayerNames(level: level)
            let mapWeights = try names.indices.map { try input.tensor("weights_\($0)") }
            let sample = try input.tensor("sample")
            let groups = crossFrame ? (0..<sample.shape[0]).map { Array(Set([0, max($0 - 1, 0), $0])).sorted() }
                                    : nil
            let result = unet.crossAttentionGradient(
                sample, timesteps: try input.tensor("timestep").array,
                encoderHiddenStates: try input.tensor("encoder_hidden_states"), level: level, weights: weights,
                selfAttentionGroups: groups
            ) { maps in
                XCTAssertEqual(maps.names, names)
                XCTAssertEqual(maps.probabilities.map(\.shape), mapWeights.map(\.shape), "\(model) L\(level)")
                var loss: Float = 0
                for (p, w) in zip(maps.probabilities, mapWeights) {
                    for i in 0..<p.count { loss += p.data[i] * w.data[i] }
                }
                return (loss, mapWeights)
            }
            let what = "\(model) level \(level) (\(names.count) maps, cached up to \(maximumChannels) channels"
                + (crossFrame ? ", cross-frame)" : ")")
            let referenceLoss = try expected.tensor("loss").array[0]
            XCTAssertEqual(result.loss, referenceLoss, accuracy: 1e-3 * max(1, abs(referenceLoss)), what)
            let error = relativeMaxError(result.gradient, try expected.tensor("grad"))
            XCTAssertLessThanOrEqual(error, 1e-3, "\(what): gradient relative max error \(error)")
        }
    }

    /// The level's layers: SD 1.x's tiny model has cross-attention in down_blocks.0 and up_blocks.1 (level 0) and
    /// in the mid block (level 1, whose down and up blocks have none).
    func testLevelLayers() throws {
        let unet = try UNet2DConditionModel(folder: Fixtures.url("tiny-sd1/unet"))
        XCTAssertEqual(unet.crossAttentionLayerNames(level: 0),
                       ["down_blocks.0.attentions.0.transformer_blocks.0.attn2",
                        "up_blocks.1.attentions.0.transformer_blocks.0.attn2",
                        "up_blocks.1.attentions.1.transformer_blocks.0.attn2"])
        XCTAssertEqual(unet.crossAttentionLayerNames(level: 1),
                       ["mid_block.attentions.0.transformer_blocks.0.attn2"])
    }
}
