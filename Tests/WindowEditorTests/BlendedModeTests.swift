import Foundation
import XCTest
import StableDiffusion
import TensorKernels
@testable import WindowEditor

/// mode=blended: the edited words, the automatic masks (DiffEdit's, cross-attention's), and the editor's guarantees.
final class BlendedModeTests: XCTestCase {
    func testEditedTokenPositions() throws {
        XCTAssertEqual(AutomaticBlendMask.editedTokenPositions(source: [5, 6], target: [5, 7, 6, 7]), [2, 4])
        // A repeated word counts: the source has one 6, the target two.
        XCTAssertEqual(AutomaticBlendMask.editedTokenPositions(source: [6], target: [6, 6]), [2])
        // Same words: every target token.
        XCTAssertEqual(AutomaticBlendMask.editedTokenPositions(source: [6, 5], target: [5, 6]), [1, 2])
        let tokenizer = try CLIPTokenizer(folder: Fixtures.tinyModel.appendingPathComponent("tokenizer"))
        XCTAssertEqual(AutomaticBlendMask.editedTokenPositions(source: tokenizer.encode("a red car"),
                                                               target: tokenizer.encode("a blue sports car")), [2, 3])
    }

    /// SD 1.5's UNet has cross-attention at the latent's size, ½ and ¼: the coarsest with ≥ 16 cells a side is read.
    func testMapLevelAndLayers() {
        let sd15 = UNet2DConditionConfig()
        XCTAssertEqual(AutomaticBlendMask.mapLevel(sd15, latentHeight: 64), 2)     // 16×16 maps at 512 px
        XCTAssertEqual(AutomaticBlendMask.mapLevel(sd15, latentHeight: 32), 1)     // 16×16 maps at 256 px
        XCTAssertEqual(AutomaticBlendMask.mapLevel(sd15, latentHeight: 22), 0)     // 22 → 11 → 6: only 22 ≥ 16
        XCTAssertEqual(AutomaticBlendMask.mapLevel(sd15, latentHeight: 8), 0)      // too small: the finest
        let m = AutomaticBlendMask(tokens: [2], frames: 1, latentHeight: 16, latentWidth: 16, unet: sd15)
        XCTAssertEqual(m.mapHeight, 16)
        func layer(_ h: Int, cross: Bool) -> AttentionLayerInfo {
            AttentionLayerInfo(name: "l", height: h, width: h, channels: 8, heads: 1, isCrossAttention: cross)
        }
        XCTAssertTrue(m.accepts(layer(16, cross: true)))
        XCTAssertFalse(m.accepts(layer(16, cross: false)))
        XCTAssertFalse(m.accepts(layer(8, cross: true)))
    }

    /// Synthetic maps: max-pool 3×3, per-frame normalisation, threshold 0.3, nearest resize to the latent. (A 4×4
    /// latent is below 16 cells, so the maps are its finest level, 4×4; the mask is asked for at 16×16.)
    func testMaskFromMaps() {
        let m = AutomaticBlendMask(tokens: [2, 3], frames: 2, latentHeight: 4, latentWidth: 4,
                                   unet: UNet2DConditionConfig())
        XCTAssertEqual(m.mapHeight, 4)
        let p = Tensor(shape: [2, 16, 77])
        for f in 0..<2 { for i in 0..<16 { p.data[(f * 16 + i) * 77 + 2] = 0.05 } }   // token 2 everywhere, weakly
        p.data[(0 * 16 + 5) * 77 + 3] = 0.95       // frame 0: token 3 at cell (1, 1)
        p.data[(1 * 16 + 15) * 77 + 2] = 0.45      // frame 1: token 2 at cell (3, 3): 0.5 there, 0.05 elsewhere
        p.data[(1 * 16 + 0) * 77 + 9] = 1          // a word that is not edited: ignored
        m.observe(p, firstItem: 0)
        let mask = m.latentMask(height: 16, width: 16)
        // Frame 0: the 3×3 map cells around (1, 1), 4×4 latent cells each. Frame 1: cells (2…3, 2…3).
        XCTAssertEqual(mask[0].reduce(0, +), 9 * 16)
        XCTAssertEqual(mask[0][0], 1)
        XCTAssertEqual(mask[0][15 * 16 + 15], 0)
        XCTAssertEqual(mask[1].reduce(0, +), 4 * 16)
        XCTAssertEqual(mask[1][15 * 16 + 15], 1)
        XCTAssertEqual(mask[1][0], 0)
    }

    /// DiffEdit's mask: cells where the two halves of guided calls differ most, per frame, scaled between the frame's
    /// minimum and peak; nothing before a call, all ones for a flat map, crop-sized calls ignored.
    func testGuidanceDifferenceMask() {
        let mask = GuidanceDifferenceMask(frames: 2, height: 4, width: 4, threshold: 0.3)
        XCTAssertNil(mask.latentMask())
        let u = Tensor(shape: [2, 4, 4, 4]), c = Tensor(shape: [2, 4, 4, 4])
        for ch in 0..<4 {
            c.data[(0 * 4 + ch) * 16 + 5] = 2      // frame 0: cell (1, 1) differs strongly
            c.data[(0 * 4 + ch) * 16 + 6] = 0.5    // (1, 2) at a quarter of the peak: below 0.3
            c.data[(0 * 4 + ch) * 16 + 10] = -1    // (2, 2) at half
        }
        mask.observe(unconditional: u, conditional: c)
        mask.observe(unconditional: Tensor(shape: [2, 4, 2, 2]), conditional: Tensor(shape: [2, 4, 2, 2]))
        XCTAssertEqual(mask.observedCalls, 1, "a crop-sized call is not taken")
        let m = try? XCTUnwrap(mask.latentMask())
        XCTAssertEqual(m?[0].indices.filter { m?[0][$0] == 1 }, [5, 10])
        XCTAssertEqual(m?[1], [Float](repeating: 1, count: 16), "frame 1's map is flat")
    }

    func settings() -> EditorSettings {
        DiffusionEditorTests.settings { s in
            s.processingSize = 128
            s.mode = .blended
        }
    }

    /// With the bundled model: the composite mask lies inside the input mask and is narrower than it (the automatic
    /// mask is a strict part of the frame), pixels beyond its feather are the input's bytes, the inside changes, and
    /// the same seed gives the same bytes.
    func testBlendedEditStaysInsideTheAutomaticMask() throws {
        let pipe = try XCTUnwrap(DiffusionEditorTests.pipeline)
        let w = DiffusionEditorTests.window(frames: 2, width: 128, height: 96, radius: 30)
        for masks in [w.masks, w.masks.map { Mask.full(width: $0.width, height: $0.height) }] {
            let editor = try DiffusionWindowEditor(pipeline: pipe, settings: settings())
            let out = try editor.edit(frames: w.frames, masks: masks, isCancelled: DiffusionEditorTests.never)
            let coverage = try XCTUnwrap(editor.lastReport.sampling.automaticMaskCoverage)
            print("blended: automatic mask covers \(String(format: "%.2f", coverage)) of the latent")
            XCTAssertGreaterThan(coverage, 0)
            XCTAssertLessThan(coverage, 1)
            XCTAssertEqual(editor.lastCompositeMasks.count, 2)
            var changed = 0
            for i in 0..<2 {
                let composite = editor.lastCompositeMasks[i]
                let outside = zip(composite.pixels, masks[i].pixels).filter { $0.0 > 0 && $0.1 < 128 }.count
                XCTAssertEqual(outside, 0, "the composite mask leaves the input mask")
                XCTAssertLessThan(composite.pixels.filter { $0 > 0 }.count, masks[i].pixels.filter { $0 >= 128 }.count)
                let alpha = FeatherMask(mask: composite, threshold: 128, feather: 4)
                for k in 0..<(128 * 96) {
                    for c in 0..<3 where out[i].planes[0][3 * k + c] != w.frames[i].planes[0][3 * k + c] {
                        XCTAssertGreaterThan(alpha.alpha[k], 0, "pixel \(k) changed outside the feathered mask")
                        changed += 1
                    }
                }
            }
            XCTAssertGreaterThan(changed, 100, "nothing was edited")
            let again = try DiffusionWindowEditor(pipeline: pipe, settings: settings())
                .edit(frames: w.frames, masks: masks, isCancelled: DiffusionEditorTests.never)
            XCTAssertEqual(again, out)
        }
    }
}
