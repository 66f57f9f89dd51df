import Foundation
import XCTest
import StableDiffusion
import TensorKernels
@testable import WindowEditor

/// mode=reatco in the editor (Methods/ReAtCoMethod.swift, RegionWords.swift) with the tiny random model: the settings
/// it refuses, the regions' parsing and grids, refocusing that lowers the attention loss, invariant-region joint
/// sampling and the composite.
final class ReAtCoMethodTests: XCTestCase {
    typealias Editor = DiffusionEditorTests

    /// The editor tests' settings in mode=reatco with two boxes for the prompt's "blue" and "car".
    static func settings(_ change: (inout EditorSettings) -> Void = { _ in }) -> EditorSettings {
        Editor.settings {
            $0.mode = .reatco
            $0.regions = "blue sports:4,8,24,40;car:36,8,60,40"
            change(&$0)
        }
    }

    func testRegionsParse() throws {
        let layout = try XCTUnwrap(RegionWords(Self.settings { $0.regions = " a b:1,2,3,4 ; c:0,0,10,5;" }))
        XCTAssertEqual(layout.words, ["a b", "c"])
        XCTAssertEqual(layout.boxes, [.init(x0: 1, y0: 2, x1: 3, y1: 4), .init(x0: 0, y0: 0, x1: 10, y1: 5)])
        let labelled = try XCTUnwrap(RegionWords(Self.settings { $0.regions = ""; $0.regionWords = "fish, goldfish" }))
        XCTAssertEqual(labelled.words, ["fish", "goldfish"])
        XCTAssertNil(labelled.boxes)
        XCTAssertNil(try RegionWords(Editor.settings()), "other modes have no layout")
        for (words, regions, message) in [("", "", "needs region-words"), ("a", "a:0,0,1,1", "not both"),
                                          ("", "a:0,0,1", "is not 'word:x1,y1,x2,y2'"),
                                          ("", "a:5,0,1,1", "is not a box"), ("", ":0,0,1,1", "is not 'word"),
                                          ("a,,b", "", "empty word")] {
            XCTAssertThrowsError(try RegionWords(Self.settings { $0.regionWords = words; $0.regions = regions })) {
                XCTAssertTrue("\($0)".contains(message), "\(words) / \(regions): \($0)")
            }
        }
    }

    func testTokenPositionsOfWordsInThePrompt() throws {
        let tokenizer = try Editor.model().tokenizer
        let layout = try XCTUnwrap(RegionWords(Self.settings()))
        // "a blue sports car": BOS = 0, a = 1, blue = 2, sports = 3, car = 4.
        XCTAssertEqual(try layout.tokenPositions(prompt: "a blue sports car", tokenizer: tokenizer), [[2, 3], [4]])
        XCTAssertThrowsError(try layout.tokenPositions(prompt: "a red bike", tokenizer: tokenizer)) {
            XCTAssertTrue("\($0)".contains("'blue sports' is not in the prompt"), "\($0)")
        }
    }

    func testLabelsGridAndRefusal() throws {
        let layout = try XCTUnwrap(RegionWords(Self.settings { $0.regions = "a:0,0,4,4;b:6,0,7,1" }))
        let labels = layout.labels(Mask.full(width: 8, height: 8), width: 8, height: 8)
        XCTAssertEqual(labels.pixels.filter { $0 == 1 }.count, 16)
        XCTAssertEqual(labels.pixels.filter { $0 == 2 }.count, 1)
        XCTAssertEqual(layout.union(labels).pixels.filter { $0 == 255 }.count, 17)
        // 4×4 grid of 2×2-pixel cells: a covers 4 cells; b's single pixel is a quarter of a cell, which it keeps.
        let grid = RegionWords.grid([labels], words: 2, height: 4, width: 4)
        XCTAssertEqual(grid[0][0], [1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(grid[1][0], [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        // region-words reads the mask as labels: a 0/255 mask (or the unlinked pad's full mask) is refused.
        let fromMask = try XCTUnwrap(RegionWords(Self.settings { $0.regions = ""; $0.regionWords = "a,b" }))
        XCTAssertNotNil(fromMask.refusal([Mask.full(width: 4, height: 4)]))
        XCTAssertNil(fromMask.refusal([Mask(width: 2, height: 1, pixels: [0, 2])]))
        XCTAssertNil(fromMask.refusal([Mask(width: 2, height: 1, pixels: [0, 0])]), "nothing labelled: nothing to do")
    }

    func testSettingsItCannotRunAreRefused() throws {
        let pipe = try Editor.model()
        // Before the model loads: the error is about the regions, not the (missing) folder.
        let unloaded = Self.settings { $0.regions = ""; $0.modelPath = "/no" }
        XCTAssertThrowsError(try DiffusionWindowEditor(settings: unloaded)) {
            XCTAssertTrue("\($0)".contains("region-words"), "\($0)")
        }
        let bus = Self.settings { $0.regions = "bus:0,0,2,2" }, deep = Self.settings { $0.refocusLevel = 7 }
        XCTAssertThrowsError(try DiffusionWindowEditor(pipeline: pipe, settings: bus)) {
            XCTAssertTrue("\($0)".contains("'bus' is not in the prompt"), "\($0)")
        }
        XCTAssertThrowsError(try DiffusionWindowEditor(pipeline: pipe, settings: deep)) {
            XCTAssertTrue("\($0)".contains("refocus-level 7"), "\($0)")
        }
        let editor = try DiffusionWindowEditor(pipeline: pipe, settings: Self.settings {
            $0.regions = ""; $0.regionWords = "car"
        })
        let w = Editor.window(frames: 2)
        XCTAssertThrowsError(try editor.edit(frames: w.frames, masks: w.masks, isCancelled: Editor.never)) {
            XCTAssertTrue("\($0)".contains("label map"), "\($0)")
        }
    }

    /// The refocusing updates lower ReAtCo's attention loss: over the refinement iterations of the first step, and the
    /// window comes out with the input's bytes outside the regions' feathered union.
    func testRefocusingLowersTheAttentionLoss() throws {
        let pipe = try Editor.model()
        let w = Editor.window(frames: 3)
        let editor = try DiffusionWindowEditor(pipeline: pipe, settings: Self.settings {
            $0.steps = 4
            $0.refocusScale = 10_000
            $0.refocusIterations = 4
            $0.refocusFrames = 2
        })
        let out = try editor.edit(frames: w.frames, masks: w.masks, isCancelled: Editor.never)
        let report = editor.lastReport.sampling
        let first = try XCTUnwrap(report.refocusLosses.first)
        // 3 steps edited, refocus-share 0.5: 2 refocused, both refinement steps (0 % and, rounded, 20 % and 40 %):
        // 4 foreground-only updates (no word's fg reaches the threshold on the random model) + 1 update each.
        XCTAssertEqual(report.refocusLosses.map(\.count), [5, 5, 0])
        XCTAssertEqual(report.refocusGradients, 2 * 10, "two sub-windows (2 + 1 frames)")
        XCTAssertLessThan(first[3], first[0], "\(first)")
        for (a, b) in zip(first.prefix(4), first.dropFirst().prefix(3)) { XCTAssertLessThanOrEqual(b, a + 1e-4) }
        // The composite keeps the input's bytes outside the boxes' feathered union.
        let layout = try XCTUnwrap(RegionWords(Self.settings()))
        for (i, frame) in out.enumerated() {
            let union = layout.union(layout.labels(w.masks[i], width: frame.width, height: frame.height))
            let alpha = FeatherMask(mask: union, threshold: 128, feather: 4).alpha
            for p in alpha.indices where alpha[p] == 0 {
                XCTAssertEqual(frame.planes[0][3 * p], w.frames[i].planes[0][3 * p])
            }
            XCTAssertNotEqual(frame, w.frames[i])
        }
        // Seeded: the same bytes again.
        let again = try DiffusionWindowEditor(pipeline: pipe, settings: editor.settings)
        XCTAssertEqual(try again.edit(frames: w.frames, masks: w.masks, isCancelled: Editor.never), out)
    }

    /// Invariant-region joint sampling: outside the regions' union (latent grid, undilated) each edit step starts
    /// from the source latent re-noised to its timestep, √ᾱ·x₀ + √(1 − ᾱ)·ε; inside, from the loop's latent.
    func testInvariantRegionsStartFromTheRenoisedSource() throws {
        let pipe = try Editor.model()
        let (f, h, w) = (2, 6, 8)
        let source = Tensor.randomNormal(shape: [f, 4, h, w], seed: 1)
        var labels = [UInt8](repeating: 0, count: 64 * 48)
        for y in 0..<24 { for x in 0..<32 { labels[y * 64 + x] = 1 } }   // the top-left quarter: 4×3 latent cells
        let mask = Mask(width: 64, height: 48, pixels: labels)
        let layout = try XCTUnwrap(RegionWords(Self.settings { $0.regions = ""; $0.regionWords = "car" }))
        let regions = WindowRegions(tokens: [[4]], labels: [mask, mask], layout: layout)
        let inputs = SamplingInputs(latents: source, editRegion: [], saliency: [], source: source, target: source,
                                    negative: source, regions: regions)
        let alpha: Float = 0.36
        let window = MethodWindow(inputs: inputs, editSteps: 4, model: pipe.unet, alphaCumprod: { _ in alpha },
                                  isCancelled: { false })
        let method = ReAtCoMethod(.init(Self.settings { $0.refocusShare = 0 }), window: window)
        let x = Tensor.randomNormal(shape: [f, 4, h, w], seed: 2)
        let started = try method.latent(x, beforeEditStep: 1, timestep: 500)
        let again = try method.latent(x, beforeEditStep: 1, timestep: 500)
        XCTAssertEqual(started.array, again.array, "seeded noise")
        var inside = 0, outside = 0
        let (xs, ss, out) = (x.array, source.array, started.array)
        for i in out.indices {
            let cell = i % (h * w), (cy, cx) = (cell / w, cell % w)
            if cy < 3 && cx < 4 {
                XCTAssertEqual(out[i], xs[i]); inside += 1
            } else {
                // ε = (out − √ᾱ·x₀)/√(1 − ᾱ) is a standard normal draw, not x's.
                XCTAssertNotEqual(out[i], xs[i]); outside += 1
            }
        }
        XCTAssertEqual(inside, f * 4 * 12)
        let eps = out.indices.filter { ($0 % (h * w)) / w >= 3 || ($0 % w) >= 4 }
            .map { (out[$0] - alpha.squareRoot() * ss[$0]) / (1 - alpha).squareRoot() }
        let mean = eps.reduce(0, +) / Float(eps.count), variance = eps.map { $0 * $0 }.reduce(0, +) / Float(eps.count)
        XCTAssertEqual(outside, eps.count)
        XCTAssertLessThan(abs(mean), 0.2)
        XCTAssertEqual(variance, 1, accuracy: 0.3)
    }

    func testSubWindowsAndAutomaticLevel() throws {
        XCTAssertEqual(ReAtCoMethod.subWindows(frames: 8, size: 4), [0..<4, 4..<8])
        XCTAssertEqual(ReAtCoMethod.subWindows(frames: 5, size: 4), [0..<2, 2..<5])
        XCTAssertEqual(ReAtCoMethod.subWindows(frames: 3, size: 0), [0..<3])
        let unet = try Editor.model().unet
        // The tiny UNet's levels with cross-attention: a latent of 64×64 has 16 cells at level 2 (if it has one).
        let level = ReAtCoMethod.level(-1, unet: unet, height: 64, width: 64)
        let grid = unet.crossAttentionGrid(level: level, height: 64, width: 64)
        XCTAssertGreaterThanOrEqual(min(grid.height, grid.width), 16)
        XCTAssertFalse(unet.crossAttentionLayerNames(level: level).isEmpty)
        XCTAssertEqual(ReAtCoMethod.level(-1, unet: unet, height: 4, width: 4), 0, "no level that fine: level 0")
        XCTAssertEqual(ReAtCoMethod.level(1, unet: unet, height: 64, width: 64), 1)
    }
}
