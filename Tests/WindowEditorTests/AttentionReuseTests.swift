import Foundation
import XCTest
import StableDiffusion
import TensorKernels
@testable import WindowEditor

/// attention-reuse (SelfAttentionMapReuse.swift): which steps and layers keep maps, that a null edit still retraces
/// its inversion with the maps reused, and that reuse changes a real edit.
final class AttentionReuseTests: XCTestCase {
    func layer(_ side: Int) -> AttentionLayerInfo {
        AttentionLayerInfo(name: "l\(side)", height: side, width: side, channels: 4, heads: 1, isCrossAttention: false)
    }

    func testKeepsTheFirstStepsOfSmallLayersAndReleasesThem() {
        var settings = EditorSettings()
        settings.attentionReuse = 0.5
        let maps = SelfAttentionMaps(SelfAttentionMaps.Config(settings), editSteps: 8)
        XCTAssertEqual(maps.reusedSteps, 4)
        XCTAssertTrue(maps.keeps(layer(32), editStep: 3))
        XCTAssertFalse(maps.keeps(layer(32), editStep: 4), "only the first half of the steps")
        XCTAssertFalse(maps.keeps(layer(33), editStep: 0), "layers above 32×32 tokens keep nothing")
        let x = Tensor.randomNormal(shape: [2, 16, 4], seed: 1)
        maps.record(x, layer: layer(4), editStep: 1)
        maps.record(x, layer: layer(4), editStep: 6)
        XCTAssertNotNil(maps.source(layer: layer(4), editStep: 1, frames: 2, like: x))
        XCTAssertNil(maps.source(layer: layer(4), editStep: 6, frames: 2, like: x), "step 6 is not reused")
        XCTAssertNil(maps.source(layer: layer(4), editStep: 1, frames: 3, like: x), "another batch: not taken")
        maps.release(before: 2)
        XCTAssertNil(maps.source(layer: layer(4), editStep: 1, frames: 2, like: x))
        settings.attentionReuse = 0
        XCTAssertFalse(SelfAttentionMaps(SelfAttentionMaps.Config(settings), editSteps: 8).isEnabled)
    }

    /// A null edit with every step's maps reused still retraces the fixed-point inversion (the maps are those of
    /// the latents the edit steps see), at the same UNet cost.
    func testNullEditWithReusedMapsReconstructs() throws {
        let (psnr, calls) = try DiffusionEditorTests.nullEditPSNR(DiffusionEditorTests.settings {
            $0.prompt = "a red car"; $0.guidanceScale = 1; $0.strength = 1; $0.steps = 20; $0.mode = .baseline
            $0.inversionIterations = 12; $0.attentionReuse = 1
            $0.deepCacheInterval = 1 // shallow edit steps do not retrace the inversion's full ones
        })
        XCTAssertEqual(calls, 20 * 12 + 20)
        XCTAssertGreaterThan(psnr, 40)
    }

    /// Reused maps change a guided edit in the modes whose self-attention is computed (tokenflow's edit calls
    /// propagate the keyframes' instead, where the inversion recorded correspondences).
    func testReuseChangesTheEdit() throws {
        let pipe = try DiffusionEditorTests.model()
        let w = DiffusionEditorTests.window(frames: 3)
        for mode in [EditMode.baseline, .ocd, .blended] {
            func edit(_ reuse: Double) throws -> [Frame] {
                try DiffusionWindowEditor(pipeline: pipe, settings: DiffusionEditorTests.settings {
                    $0.mode = mode; $0.attentionReuse = reuse
                }).edit(frames: w.frames, masks: w.masks, isCancelled: DiffusionEditorTests.never)
            }
            XCTAssertTrue(try edit(1) != edit(0), "\(mode): attention-reuse 1 changed nothing")
        }
    }
}
