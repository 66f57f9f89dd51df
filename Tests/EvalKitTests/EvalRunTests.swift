import Foundation
import XCTest
@testable import EvalKit
import StableDiffusion
import WindowEditor

/// `ocdedit eval`'s runner and `ocdedit generate`'s engine end to end with the tiny random model of the fixtures.
final class EvalRunTests: XCTestCase {
    static let tinyModel = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tiny-sd1")
    static let pipeline: StableDiffusionPipeline? = try? StableDiffusionPipeline(folder: tinyModel)

    func model() throws -> StableDiffusionPipeline {
        try XCTUnwrap(Self.pipeline, "tiny model Tests/Fixtures/tiny-sd1 failed to load")
    }

    func configuration(_ change: (inout EvalConfiguration) -> Void = { _ in }) throws -> EvalConfiguration {
        var s = EditorSettings()
        s.modelPath = Self.tinyModel.path
        s.steps = 4
        s.seed = 3
        s.processingSize = try model().nativeSize
        var c = EvalConfiguration(settings: s)
        c.windowSize = 2
        change(&c)
        return c
    }

    func testNativeSize() throws {
        XCTAssertEqual(try model().unet.config.sampleSize, 8)
        XCTAssertEqual(try model().nativeSize, 64)
    }

    /// A 3-frame 64×64 clip written to disk and read back, edited in windows of 2 (one pair inside a window, one
    /// across): the background keeps its bytes in ocd and baseline modes, every key is in the JSON line.
    func testEvalOnOneClip() throws {
        let dir = try TestClips.temporaryFolder("eval")
        defer { try? FileManager.default.removeItem(at: dir) }
        let clip = TestClips.clip(frames: 3, size: 64, side: 16, x0: 14, y0: 20, dx: 3, dy: 1)
        try TestClips.write(clip, to: dir.appendingPathComponent("clip-0000"))
        let folders = try EvalClip.folders(at: dir.path)
        XCTAssertEqual(folders.map(\.lastPathComponent), ["clip-0000"])
        XCTAssertEqual(try EvalClip.folders(at: folders[0].path), folders, "one clip folder directly")
        let loaded = try EvalClip.load(folders[0])
        XCTAssertEqual(loaded.frames, clip.frames)
        XCTAssertEqual(loaded.masks, clip.masks)
        XCTAssertEqual(loaded.meta.targetPrompt, "a blue square")

        for mode in [EditMode.ocd, .baseline] {
            let runner = try EvalRunner(pipeline: model(), configuration: configuration { $0.settings.mode = mode })
            var seen: [String] = []
            let summary = try runner.run(folders) { c, _ in seen.append(c.name) }
            XCTAssertEqual(seen, ["clip-0000"])
            let t = summary.tally
            XCTAssertEqual(t.frames, 3)
            XCTAssertEqual(t.backgroundExact, 1, "\(mode)")
            XCTAssertNotNil(t.psnr, "the object was edited")
            XCTAssertNotNil(t.warpError)
            XCTAssertNotNil(t.boundaryWarpError)
            XCTAssertNotNil(t.editAccuracy)
            XCTAssertNil(t.maskIoU)
            XCTAssertGreaterThan(t.seconds, 0)
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(summary.json.utf8)) as? [String: Any])
            XCTAssertEqual(Set(json.keys), ["clips", "frames", "mode", "edit_accuracy", "background_exact",
                                            "warp_error", "boundary_warp_error", "mask_iou", "psnr",
                                            "region_accuracy", "outside_psnr", "seconds"])
            XCTAssertTrue(json["region_accuracy"] is NSNull, "no layout clip")
            XCTAssertEqual(json["mode"] as? String, mode.rawValue)
            XCTAssertEqual(json["background_exact"] as? Double, 1)
            XCTAssertTrue(json["mask_iou"] is NSNull)
            XCTAssertTrue(summary.json.hasPrefix(#"{"clips": 1, "frames": 3, "mode": "#), "keys in the stated order")
        }
    }

    /// mode=blended gets no clip masks but is scored against them (mask IoU); --save writes the strip and frames.
    func testBlendedMaskIoUAndSave() throws {
        let dir = try TestClips.temporaryFolder("eval-blended")
        defer { try? FileManager.default.removeItem(at: dir) }
        let clip = TestClips.clip(frames: 2, size: 64, side: 16, x0: 14, y0: 20, dx: 3, dy: 1)
        let c = try configuration {
            $0.settings.mode = .blended
            $0.settings.blendThreshold = 0.9   // the tiny model's maps are nearly flat (README)
            $0.saveFolder = dir
        }
        let t = try EvalRunner(pipeline: model(), configuration: c).evaluate(clip)
        let iou = try XCTUnwrap(t.maskIoU)
        XCTAssertTrue((0...1).contains(iou))
        XCTAssertEqual(t.iouFrames, 2)
        let fm = FileManager.default
        XCTAssertTrue(fm.fileExists(atPath: dir.appendingPathComponent("clip-0000/strip.png").path))
        let saved = try NetPBM.read(dir.appendingPathComponent("clip-0000/output/0001.ppm"), expectChannels: 3)
        XCTAssertEqual(saved.width, 64)
    }

    func testVAERoundTripAndNullEdit() throws {
        let clip = TestClips.clip(frames: 2, size: 64, side: 16, x0: 14, y0: 20, dx: 3, dy: 1)
        let vae = try EvalRunner(pipeline: model(), configuration: configuration { $0.vaeRoundTrip = true })
        let t = try vae.evaluate(clip)
        XCTAssertNotNil(t.psnr)
        XCTAssertNil(t.editAccuracy)
        XCTAssertNil(t.backgroundExact)
        XCTAssertNil(t.warpError)
        XCTAssertEqual(vae.configuration.modeName, "vae-roundtrip")
        let null = try EvalRunner(pipeline: model(), configuration: configuration { $0.nullEdit = true })
        XCTAssertEqual(null.settings(for: clip).prompt, "a red square")
        XCTAssertEqual(null.settings(for: clip).sourcePrompt, "a red square")
    }

    func testRefusals() throws {
        // mode=reatco takes its words from layout clips; region-words and regions together are refused at once.
        XCTAssertNoThrow(try EvalRunner.validate(configuration { $0.settings.mode = .reatco }))
        XCTAssertThrowsError(try EvalRunner.validate(configuration {
            $0.settings.mode = .reatco; $0.settings.regionWords = "a"; $0.settings.regions = "b:0,0,1,1"
        })) { XCTAssertTrue("\($0)".contains("not both"), "\($0)") }
        XCTAssertThrowsError(try EvalRunner.validate(configuration { $0.windowSize = 0 }))
        let dir = try TestClips.temporaryFolder("eval-empty")
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try EvalClip.folders(at: dir.path)) { XCTAssertTrue("\($0)".contains("no clips")) }
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("clip-0000"),
                                                withIntermediateDirectories: true)
        try Data("{\"width\": 4}".utf8).write(to: dir.appendingPathComponent("clip-0000/clip.json"))
        XCTAssertThrowsError(try EvalClip.load(dir.appendingPathComponent("clip-0000"))) {
            XCTAssertTrue("\($0)".contains("missing key"), "\($0)")
        }
    }

    /// A layout clip's metrics: region_accuracy counts frames whose every region is mostly its colour, outside_psnr
    /// compares the pixels outside every region; edit accuracy and warp error do not apply.
    func testLayoutClipMetrics() throws {
        let json = """
            {"width": 4, "height": 2, "frames": 2, "source_prompt": "s", "target_prompt": "t", "edited_object": 0,
             "source_color": "red", "target_color": "blue", "palette": {"red": [255, 0, 0], "blue": [0, 0, 255]},
             "objects": [{"displacements": [[0, 0], [0, 0]]}], "region_words": ["a", "b"],
             "region_colors": ["blue", "red"],
             "region_palette": {"red": [255, 0, 0], "blue": [0, 0, 255], "background": [0, 0, 0]}}
            """
        let meta = try JSONDecoder().decode(ClipMetadata.self, from: Data(json.utf8))
        XCTAssertTrue(meta.isLayout)
        let labels = Mask(width: 4, height: 2, pixels: [1, 1, 2, 2, 0, 0, 0, 0])
        let input = Frame(format: .rgb, width: 4, height: 2, planes: [[UInt8](repeating: 0, count: 24)])
        func frame(_ pixels: [[UInt8]]) -> Frame {
            Frame(format: .rgb, width: 4, height: 2, planes: [pixels.flatMap { $0 }])
        }
        let (blue, red, dark): ([UInt8], [UInt8], [UInt8]) = ([0, 0, 250], [250, 0, 0], [1, 0, 0])
        // Frame 0: region b is blue, not red; frame 1: both right. Outside: every byte off by 1 in one channel.
        let outputs = [frame([blue, blue, blue, blue, dark, dark, dark, dark]),
                       frame([blue, blue, red, red, dark, dark, dark, dark])]
        let clip = EvalClip(name: "layout", meta: meta, frames: [input, input], masks: [labels, labels])
        var t = EvalTally()
        t.add(clip, outputs: outputs, windowSize: 2, expectedColor: "blue", threshold: 128, feather: 0)
        XCTAssertEqual(t.regionAccuracy, 0.5)
        XCTAssertEqual(try XCTUnwrap(t.outsidePSNR), 10 * log10(255 * 255 * 3), accuracy: 1e-9)
        XCTAssertNil(t.editAccuracy)
        XCTAssertNil(t.warpError)
        XCTAssertEqual(t.backgroundExact, 0, "outside the regions every pixel changed")
    }

    func testGenerate() throws {
        let pipe = try model()
        func image(seed: UInt64) throws -> Frame {
            try TextToImage.generate(pipeline: pipe, prompt: "a red circle", seed: seed, steps: 3, guidanceScale: 5,
                                     width: 64, height: 48)
        }
        let a = try image(seed: 1)
        XCTAssertEqual(a.width, 64)
        XCTAssertEqual(a.height, 48)
        XCTAssertEqual(a.planes[0].count, 64 * 48 * 3)
        XCTAssertEqual(try image(seed: 1), a, "same seed, same bytes")
        XCTAssertNotEqual(try image(seed: 2), a)
        XCTAssertThrowsError(try TextToImage.generate(pipeline: pipe, prompt: "x", seed: 0, steps: 2, guidanceScale: 1,
                                                      width: 60, height: 64)) {
            XCTAssertTrue("\($0)".contains("multiples of 8"))
        }
    }
}
