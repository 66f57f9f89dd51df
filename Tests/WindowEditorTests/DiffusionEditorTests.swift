import Foundation
import XCTest
import StableDiffusion
import TensorKernels
@testable import WindowEditor

/// The window editor with the tiny random model (Tests/Fixtures/tiny-sd1): reconstruction, determinism, exact
/// background, empty and full masks, and the object-centric savings.
final class DiffusionEditorTests: XCTestCase {
    static let pipeline: StableDiffusionPipeline? = try? StableDiffusionPipeline(folder: Fixtures.tinyModel)

    func model() throws -> StableDiffusionPipeline { try Self.model() }

    static func model() throws -> StableDiffusionPipeline {
        try XCTUnwrap(pipeline, "tiny model Tests/Fixtures/tiny-sd1 failed to load")
    }

    /// A textured scene with a square moving right, and a disc mask following it.
    static func window(frames: Int, width: Int = 64, height: Int = 48, format: PixelFormat = .rgb,
                       radius: Int = 10) -> (frames: [Frame], masks: [Mask]) {
        var out: ([Frame], [Mask]) = ([], [])
        for f in 0..<frames {
            let cx = 20 + 3 * f, cy = height / 2
            var rgb = [UInt8](repeating: 0, count: width * height * 3)
            var mask = [UInt8](repeating: 0, count: width * height)
            for y in 0..<height { for x in 0..<width {
                let i = y * width + x
                let inObject = abs(x - cx) < 7 && abs(y - cy) < 7
                rgb[3 * i] = inObject ? 220 : UInt8((x * 4 + y) % 256)
                rgb[3 * i + 1] = inObject ? 40 : UInt8((y * 5) % 256)
                rgb[3 * i + 2] = inObject ? 30 : UInt8(((x ^ y) * 3) % 256)
                if (x - cx) * (x - cx) + (y - cy) * (y - cy) <= radius * radius { mask[i] = 255 }
            } }
            out.0.append(convert(Frame(format: .rgb, width: width, height: height, planes: [rgb]), to: format))
            out.1.append(Mask(width: width, height: height, pixels: mask))
        }
        return out
    }

    static func convert(_ f: Frame, to format: PixelFormat) -> Frame {
        guard format == .i420 else { return f }
        let (w, h) = (f.width, f.height), cw = (w + 1) / 2, ch = (h + 1) / 2
        var y = [UInt8](repeating: 0, count: w * h), u = [UInt8](repeating: 128, count: cw * ch), v = u
        for yy in 0..<h { for xx in 0..<w {
            let i = yy * w + xx
            let (l, cb, cr) = RGBImage.yuv(Float(f.planes[0][3 * i]) / 255, Float(f.planes[0][3 * i + 1]) / 255,
                                           Float(f.planes[0][3 * i + 2]) / 255)
            y[i] = UInt8(min(max(l.rounded(), 0), 255))
            if yy % 2 == 0 && xx % 2 == 0 {
                u[(yy / 2) * cw + xx / 2] = UInt8(min(max(cb.rounded(), 0), 255))
                v[(yy / 2) * cw + xx / 2] = UInt8(min(max(cr.rounded(), 0), 255))
            }
        } }
        return Frame(format: .i420, width: w, height: h, planes: [y, u, v])
    }

    func settings(_ change: (inout EditorSettings) -> Void = { _ in }) -> EditorSettings { Self.settings(change) }

    /// The editor tests' common settings: the tiny model, a small fast edit, seed 3.
    static func settings(_ change: (inout EditorSettings) -> Void = { _ in }) -> EditorSettings {
        var s = EditorSettings()
        s.modelPath = Fixtures.tinyModel.path
        s.prompt = "a blue sports car"
        s.sourcePrompt = "a red car"
        s.steps = 10
        s.strength = 0.8
        s.processingSize = 64
        s.feather = 4
        s.seed = 3
        change(&s)
        return s
    }

    static let never: @Sendable () -> Bool = { false }

    /// Null edit: target = source prompt, guidance 1, full strength: inversion then denoising gives back the latents.
    func testNullEditReconstructsLatents() throws {
        let (psnr, calls) = try Self.nullEditPSNR(settings {
            $0.prompt = "a red car"; $0.guidanceScale = 1; $0.strength = 1; $0.steps = 20; $0.mode = .baseline
            $0.inversionIterations = 12
            $0.deepCacheInterval = 1 // shallow edit steps do not retrace the inversion's full ones
        })
        XCTAssertEqual(calls, 20 * 12 + 20)
        // Plain DDIM inversion is exact only in the limit of small steps, and the random tiny UNet's prediction moves
        // fast with its input (1 iteration: RMSE 1.24 against latents of mean |z| 0.04, i.e. nothing is kept).
        // Fixed-point inversion makes each denoising step retrace its inversion step: the residual shrinks about
        // 2× per iteration (3: 0.16, 6: 0.025, 10: 0.0033), so 12 iterations must give ≥ 40 dB over the latents' range.
        XCTAssertGreaterThan(psnr, 40)
    }

    /// inversion=ddpm: the edit's DDPM steps add the noise maps the inversion found, with ε taken in the edit's
    /// order and step caching, so a null edit retraces the noised levels exactly, with or without crops.
    func testEditFriendlyInversionNullEditIsExact() throws {
        for mode in [EditMode.baseline, .ocd] {
            let (psnr, calls) = try Self.nullEditPSNR(settings {
                $0.prompt = "a red car"; $0.guidanceScale = 1; $0.mode = mode; $0.inversion = .ddpm
            })
            XCTAssertGreaterThan(psnr, 90, "\(mode)")
            XCTAssertEqual(calls, 16, "\(mode): 8 inversion and 8 edit steps")
        }
        // DDIM inversion at the same settings does not retrace (the tiny random UNet moves fast with its input).
        let (ddim, _) = try Self.nullEditPSNR(settings { $0.prompt = "a red car"; $0.guidanceScale = 1 })
        XCTAssertLessThan(ddim, 40)
    }

    /// inversion=ddpm draws its noise from the seed: equal seeds, equal latents; another seed, others.
    func testEditFriendlyInversionFollowsTheSeed() throws {
        let pipe = try model()
        let w = Self.window(frames: 2)
        func edit(_ seed: UInt64) throws -> [Frame] {
            try DiffusionWindowEditor(pipeline: pipe, settings: settings { $0.inversion = .ddpm; $0.seed = seed })
                .edit(frames: w.frames, masks: w.masks, isCancelled: Self.never)
        }
        XCTAssertEqual(try edit(1), try edit(1))
        XCTAssertNotEqual(try edit(1), try edit(2))
    }

    /// Runs the edit loop on a 4-frame window with `s.prompt` as source and target (the editor's null edit) and
    /// returns the latents' PSNR (dB over their range) and the UNet calls.
    static func nullEditPSNR(_ s: EditorSettings) throws -> (psnr: Double, unetCalls: Int) {
        let pipe = try model()
        let w = Self.window(frames: 4)
        let images = w.frames.map { RGBImage($0).resized(width: 64, height: 64) }
        let z0 = Ops.scale(pipe.vae.encode(ImageTensors.tensor(images)), pipe.vae.scalingFactor)
        let (lh, lw) = (z0.shape[2], z0.shape[3])
        let ones = [[Float]](repeating: [Float](repeating: 1, count: lh * lw), count: 4)
        let e = pipe.encode(prompts: [s.prompt ?? "", ""])
        let parts = Ops.split(e, dim: 0, sizes: [1, 1])
        let sampler = EditLoop(unet: pipe.unet, scheduler: pipe.scheduler, config: EditLoop.Config(s))
        let out = try sampler.run(SamplingInputs(latents: z0, editRegion: ones, saliency: ones, source: parts[0],
                                                 target: parts[0], negative: parts[1]),
                                  method: EditMethodFactory.maker(for: s), isCancelled: never)
        var mse: Double = 0, lo = Float.infinity, hi = -Float.infinity
        for i in 0..<z0.count {
            mse += Double((out.data[i] - z0.data[i]) * (out.data[i] - z0.data[i]))
            lo = min(lo, z0.data[i]); hi = max(hi, z0.data[i])
        }
        mse /= Double(z0.count)
        let psnr = 10 * log10(Double(hi - lo) * Double(hi - lo) / max(mse, 1e-20))
        print("null edit: latent PSNR \(String(format: "%.1f", psnr)) dB over range \(hi - lo), "
                  + "\(sampler.report.unetCalls) UNet calls")
        return (psnr, sampler.report.unetCalls)
    }

    func testSameSeedSameBytes() throws {
        let pipe = try model()
        let w = Self.window(frames: 3)
        let a = try DiffusionWindowEditor(pipeline: pipe, settings: settings())
            .edit(frames: w.frames, masks: w.masks, isCancelled: Self.never)
        let b = try DiffusionWindowEditor(pipeline: pipe, settings: settings())
            .edit(frames: w.frames, masks: w.masks, isCancelled: Self.never)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, w.frames, "the edit changed nothing")
    }

    /// Pixels where the feathered mask is 0 are the input's bytes exactly, for packed RGB and I420.
    func testBackgroundBytesUnchanged() throws {
        let pipe = try model()
        for format in [PixelFormat.rgb, .i420] {
            for mode in [EditMode.ocd, .baseline] {
                let s = settings { $0.mode = mode }
                let w = Self.window(frames: 2, format: format)
                let editor = try DiffusionWindowEditor(pipeline: pipe, settings: s)
                let out = try editor.edit(frames: w.frames, masks: w.masks, isCancelled: Self.never)
                for i in 0..<2 {
                    let alpha = FeatherMask(mask: w.masks[i], threshold: s.maskThreshold, feather: s.feather)
                    let (W, H) = (w.frames[i].width, w.frames[i].height)
                    var changedInside = 0
                    for y in 0..<H { for x in 0..<W {
                        let k = y * W + x
                        let bytes: [(Int, Int)] = format == .rgb ? (0..<3).map { (0, 3 * k + $0) } : [(0, k)]
                        for (plane, o) in bytes {
                            if alpha.alpha[k] == 0 {
                                XCTAssertEqual(out[i].planes[plane][o], w.frames[i].planes[plane][o],
                                               "\(format) \(mode) (\(x),\(y))")
                            } else if out[i].planes[plane][o] != w.frames[i].planes[plane][o] { changedInside += 1 }
                        }
                    } }
                    if format == .i420 {
                        let cw = (W + 1) / 2
                        for cy in 0..<((H + 1) / 2) { for cx in 0..<cw {
                            let block = [(0, 0), (1, 0), (0, 1), (1, 1)].map { (2 * cy + $0.1) * W + 2 * cx + $0.0 }
                            if block.allSatisfy({ alpha.alpha[$0] == 0 }) {
                                XCTAssertEqual(out[i].planes[1][cy * cw + cx], w.frames[i].planes[1][cy * cw + cx])
                                XCTAssertEqual(out[i].planes[2][cy * cw + cx], w.frames[i].planes[2][cy * cw + cx])
                            }
                        } }
                    }
                    XCTAssertGreaterThan(changedInside, 50, "\(format) \(mode): the masked area was not edited")
                }
            }
        }
    }

    /// The canvas bound: past 4:1 the editor refuses, naming the size and the rule, instead of building a canvas of
    /// gigapixels (16384×1 grew past 6 GB); 4:1 (after rounding to 64) and ordinary shapes pass.
    func testCanvasBoundRefusesExtremeAspectRatios() throws {
        XCTAssertNil(DiffusionWindowEditor.canvasRefusal(width: 3840, height: 2160, shortSide: 512))
        XCTAssertNil(DiffusionWindowEditor.canvasRefusal(width: 2048, height: 512, shortSide: 512))
        XCTAssertNil(DiffusionWindowEditor.canvasRefusal(width: 64, height: 260, shortSide: 64))
        let refusal = DiffusionWindowEditor.canvasRefusal(width: 16384, height: 1, shortSide: 512)
        XCTAssertTrue(refusal?.contains("16384×1") == true && refusal?.contains("4:1") == true, refusal ?? "nil")
        XCTAssertNotNil(DiffusionWindowEditor.canvasRefusal(width: 1, height: 300, shortSide: 64))
        let editor = try DiffusionWindowEditor(pipeline: try model(), settings: settings())
        let frame = Frame(format: .rgb, width: 1024, height: 2, planes: [[UInt8](repeating: 9, count: 1024 * 2 * 3)])
        let mask = Mask(width: 1024, height: 2, pixels: [UInt8](repeating: 255, count: 1024 * 2))
        XCTAssertThrowsError(try editor.edit(frames: [frame], masks: [mask], isCancelled: Self.never)) {
            XCTAssertTrue("\($0)".contains("4:1"), "\($0)")
        }
    }

    func testEmptyMaskReturnsInputWithoutUNet() throws {
        let pipe = try model()
        let w = Self.window(frames: 3)
        let empty = w.masks.map {
            Mask(width: $0.width, height: $0.height, pixels: [UInt8](repeating: 0, count: $0.pixels.count))
        }
        let editor = try DiffusionWindowEditor(pipeline: pipe, settings: settings())
        let out = try editor.edit(frames: w.frames, masks: empty, isCancelled: Self.never)
        XCTAssertEqual(out, w.frames)
        XCTAssertTrue(editor.lastReport.skipped)
        XCTAssertEqual(editor.lastReport.sampling.unetCalls, 0)
    }

    /// An all-ones mask edits the whole frame: every quadrant changes.
    func testFullMaskEditsWholeFrame() throws {
        let pipe = try model()
        let w = Self.window(frames: 2)
        let full = w.masks.map { Mask.full(width: $0.width, height: $0.height) }
        let out = try DiffusionWindowEditor(pipeline: pipe, settings: settings { $0.strength = 1 })
            .edit(frames: w.frames, masks: full, isCancelled: Self.never)
        let (W, H) = (64, 48)
        for i in 0..<2 { for (qx, qy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            var diff = 0
            for y in (qy * H / 2)..<((qy + 1) * H / 2) { for x in (qx * W / 2)..<((qx + 1) * W / 2) { for c in 0..<3 {
                diff += abs(Int(out[i].planes[0][3 * (y * W + x) + c])
                                - Int(w.frames[i].planes[0][3 * (y * W + x) + c]))
            } } }
            XCTAssertGreaterThan(Double(diff) / Double(W * H / 4 * 3), 2, "frame \(i) quadrant \(qx),\(qy) unchanged")
        } }
    }

    /// OCD spends fewer UNet token-steps and attention pairs than the baseline on the same window.
    func testObjectCentricSavings() throws {
        let pipe = try model()
        let w = Self.window(frames: 4, width: 128, height: 96, radius: 12)
        var reports: [EditMode: SamplingReport] = [:]
        for mode in [EditMode.baseline, .ocd] {
            let editor = try DiffusionWindowEditor(pipeline: pipe, settings: settings {
                // The whole frame in the joint steps: its layers have the ≥ 256 tokens per frame merging needs.
                $0.mode = mode; $0.processingSize = 128; $0.contextMargin = 2; $0.crossFrame = .all; $0.jointMargin = -1
            })
            _ = try editor.edit(frames: w.frames, masks: w.masks, isCancelled: Self.never)
            reports[mode] = editor.lastReport.sampling
        }
        let base = reports[.baseline]!, ocd = reports[.ocd]!
        print("baseline: \(base.unetTokenSteps) token-steps, \(base.attentionPairs) attention pairs; "
                  + "ocd: \(ocd.unetTokenSteps), \(ocd.attentionPairs), crop \(ocd.cropFraction), "
                  + "merged \(ocd.mergedTokens)")
        XCTAssertLessThan(ocd.cropFraction, 1)
        XCTAssertLessThan(ocd.unetTokenSteps, base.unetTokenSteps)
        XCTAssertLessThan(ocd.attentionPairs, base.attentionPairs)
        XCTAssertGreaterThan(ocd.mergedTokens, 0)
        XCTAssertEqual(base.mergedTokens, 0)
    }

    /// deep-cache-interval k: of each phase's edit steps (crops, then whole latent) every k-th runs the whole UNet,
    /// the others are shallow calls and the output changes; k = 1 is the plain edit (no shallow calls).
    func testDeepCacheShallowCalls() throws {
        let pipe = try model()
        let w = Self.window(frames: 2, width: 128, height: 96, radius: 12)
        var outputs: [[Frame]] = [], reports: [SamplingReport] = []
        for k in [1, 2, 3] {
            let editor = try DiffusionWindowEditor(pipeline: pipe, settings: settings {
                $0.processingSize = 128; $0.deepCacheInterval = k
            })
            outputs.append(try editor.edit(frames: w.frames, masks: w.masks, isCancelled: Self.never))
            reports.append(editor.lastReport.sampling)
        }
        let phases = [reports[0].foregroundSteps, reports[0].jointSteps]
        XCTAssertEqual(phases, [6, 2], "the tiny model's window: 6 crop steps, 2 whole-latent steps")
        XCTAssertEqual(reports[0].shallowUNetCalls, 0)
        for (i, k) in [1, 2, 3].enumerated() {
            let shallow = phases.reduce(0) { $0 + $1 - ($1 + k - 1) / k }
            XCTAssertEqual(reports[i].shallowUNetCalls, shallow, "interval \(k)")
            XCTAssertEqual(reports[i].unetCalls, reports[0].unetCalls, "interval \(k)")
            XCTAssertEqual(reports[i].unetTokenSteps + reports[i].shallowTokenSteps, reports[0].unetTokenSteps)
        }
        for i in 1...2 {
            let diff = zip(outputs[0], outputs[i]).map { a, b in
                zip(a.planes[0], b.planes[0]).map { abs(Int($0) - Int($1)) }.max() ?? 0
            }.max() ?? 0
            XCTAssertGreaterThan(diff, 0, "interval \([1, 2, 3][i]) changed nothing")
        }
    }

    /// A two-frame 128 px window edited with the test settings changed by `change`: the output and its report.
    func editWithReport(_ change: (inout EditorSettings) -> Void) throws -> ([Frame], SamplingReport) {
        let w = Self.window(frames: 2, width: 128, height: 96, radius: 12)
        let editor = try DiffusionWindowEditor(pipeline: try model(), settings: settings {
            $0.processingSize = 128; change(&$0)
        })
        let out = try editor.edit(frames: w.frames, masks: w.masks, isCancelled: Self.never)
        return (out, editor.lastReport.sampling)
    }

    /// guidance-share: the steps after the guided share run the target half alone (fewer token-steps); 1 is the
    /// plain edit, 0 is the edit at guidance 1 byte for byte, and a share that ends inside a step-caching phase
    /// (the unguided shallow calls reuse the target half of a guided full call's features) gives other bytes.
    func testGuidanceShare() throws {
        func edit(_ change: (inout EditorSettings) -> Void) throws -> ([Frame], SamplingReport) {
            try editWithReport { $0.guidanceScale = 3; change(&$0) }
        }
        let (all, allReport) = try edit { _ in }
        let (defaultShare, _) = try edit { $0.guidanceShare = 1 }
        XCTAssertEqual(all, defaultShare)
        let (none, noneReport) = try edit { $0.guidanceShare = 0 }
        let (unguided, _) = try edit { $0.guidanceScale = 1 }
        XCTAssertEqual(none, unguided, "no guided step is guidance 1")
        XCTAssertLessThan(noneReport.unetTokenSteps + noneReport.shallowTokenSteps,
                          allReport.unetTokenSteps + allReport.shallowTokenSteps)
        // 8 edit steps: 6 on the crops (one full call, five shallow), 2 joint; a share of 0.5 ends the guidance
        // inside the crops' phase.
        let (half, halfReport) = try edit { $0.guidanceShare = 0.5 }
        XCTAssertEqual(halfReport.shallowUNetCalls, allReport.shallowUNetCalls)
        XCTAssertNotEqual(half, all)
        XCTAssertNotEqual(half, none)
    }

    /// deep-cache-inversion: DDIM inversion's calls take step caching (shallow calls, other bytes); off is the
    /// plain inversion. deep-cache-branch 0 recomputes less than the whole outer level: other bytes, the same calls.
    func testDeepCacheInversionAndBranch() throws {
        func edit(_ change: (inout EditorSettings) -> Void) throws -> ([Frame], SamplingReport) {
            try editWithReport { $0.deepCacheInterval = 3; change(&$0) }
        }
        let (plain, plainReport) = try edit { _ in }
        XCTAssertEqual([plainReport.foregroundSteps, plainReport.jointSteps], [6, 2])
        XCTAssertEqual(settings().inversionIterations, 1, "refinement calls would add shallow calls")
        XCTAssertEqual(settings().backgroundSteps, 0, "background-steps would skip inversion calls")
        let (cached, cachedReport) = try edit { $0.deepCacheInversion = true }
        XCTAssertNotEqual(plain, cached)
        // Inversion phases of 2 (joint) and 6 (crops) calls at interval 3: 1 + 4 more shallow calls.
        XCTAssertEqual(cachedReport.shallowUNetCalls, plainReport.shallowUNetCalls + 5)
        XCTAssertEqual(cachedReport.unetCalls, plainReport.unetCalls)
        let (branch0, branch0Report) = try edit { $0.deepCacheBranch = 0 }
        XCTAssertNotEqual(branch0, plain)
        XCTAssertEqual(branch0Report.shallowUNetCalls, plainReport.shallowUNetCalls)
        let layers = try model().unet.config.layersPerBlock
        let (wholeLevel, _) = try edit { $0.deepCacheBranch = layers }
        XCTAssertEqual(wholeLevel, plain, "the default branch is the whole outer level")
    }

    /// joint-margin m ≥ 0: the background's inversion and the joint steps compute the crops grown by m cells, not
    /// the whole latent (fewer token-steps, other bytes inside, the input's outside the feathered mask, which
    /// testBackgroundBytesUnchanged checks at the defaults); −1 is the whole latent.
    func testJointMargin() throws {
        let pipe = try model()
        let w = Self.window(frames: 2, width: 128, height: 96, radius: 12)
        var outputs: [[Frame]] = [], reports: [SamplingReport] = []
        for margin in [-1, 1, 64] {
            let editor = try DiffusionWindowEditor(pipeline: pipe, settings: settings {
                $0.processingSize = 128; $0.jointMargin = margin
            })
            outputs.append(try editor.edit(frames: w.frames, masks: w.masks, isCancelled: Self.never))
            reports.append(editor.lastReport.sampling)
        }
        XCTAssertEqual(reports[0].jointFraction, 1)
        XCTAssertLessThan(reports[1].jointFraction, 1)
        XCTAssertGreaterThan(reports[1].jointFraction, reports[1].cropFraction)
        XCTAssertLessThan(reports[1].unetTokenSteps, reports[0].unetTokenSteps)
        XCTAssertEqual(reports[1].foregroundSteps, reports[0].foregroundSteps)
        XCTAssertNotEqual(outputs[1], outputs[0], "a margin of 1 computed the same as the whole latent")
        // A margin past the latent's edges is the whole latent: the same bytes as −1.
        XCTAssertEqual(reports[2].jointFraction, 1)
        XCTAssertEqual(outputs[2], outputs[0])
    }

    func testCancellationStopsTheEdit() throws {
        let pipe = try model()
        let w = Self.window(frames: 2)
        XCTAssertThrowsError(try DiffusionWindowEditor(pipeline: pipe, settings: settings())
            .edit(frames: w.frames, masks: w.masks, isCancelled: { true })) { XCTAssertTrue($0 is EditCancelled) }
    }

    func testMissingModelIsAClearError() {
        var s = settings()
        s.modelPath = "/nonexistent/model"
        XCTAssertThrowsError(try DiffusionWindowEditor(settings: s)) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/model"), "\(error)")
        }
    }
}
