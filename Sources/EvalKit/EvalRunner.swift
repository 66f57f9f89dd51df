// `ocdedit eval`: the window editor (the element's code) over a folder of evaluation clips, scored against the
// clips' ground truth (metrics: EvalTally).
import Foundation
import StableDiffusion
import WindowEditor

/// What an evaluation run does besides the editor settings.
public struct EvalConfiguration: Sendable {
    /// The editor settings of every clip; the prompts are set per clip (source-prompt, prompt from clip.json).
    public var settings: EditorSettings
    /// Frames per editor window (the element's window-size; the last window of a clip may be shorter).
    public var windowSize = WindowSizeSetting.defaultValue
    /// Target prompt := source prompt: a reconstruction check (edit accuracy then expects the source colour).
    public var nullEdit = false
    /// No diffusion: VAE encode + decode each window at the processing size; only psnr (and seconds) are measured.
    public var vaeRoundTrip = false
    /// Where to write, per clip, strip.png (input | mask | output for up to 4 frames) and output/NNNN.ppm.
    public var saveFolder: URL? = nil

    public init(settings: EditorSettings) { self.settings = settings }

    /// The mode reported: the editor's mode, or "vae-roundtrip".
    public var modeName: String { vaeRoundTrip ? "vae-roundtrip" : settings.mode.rawValue }
}

/// A finished run: the pooled tally and the JSON line `ocdedit eval` prints last.
public struct EvalSummary: Sendable {
    public var clips = 0
    public var mode: String
    public var tally = EvalTally()

    /// Keys: clips, frames, mode, edit_accuracy, background_exact, warp_error, boundary_warp_error, mask_iou, psnr,
    /// region_accuracy, outside_psnr (layout clips), seconds (metrics that do not apply are null).
    public var json: String {
        JSONValue.object([
            ("clips", .int(clips)), ("frames", .int(tally.frames)), ("mode", .string(mode)),
            ("edit_accuracy", .number(tally.editAccuracy)), ("background_exact", .number(tally.backgroundExact)),
            ("warp_error", .number(tally.warpError)), ("boundary_warp_error", .number(tally.boundaryWarpError)),
            ("mask_iou", .number(tally.maskIoU)), ("psnr", .number(tally.psnr)),
            ("region_accuracy", .number(tally.regionAccuracy)), ("outside_psnr", .number(tally.outsidePSNR)),
            ("seconds", .number(tally.seconds)),
        ])
    }
}

public final class EvalRunner {
    public let pipeline: StableDiffusionPipeline
    public let configuration: EvalConfiguration

    /// Checks the settings (the editor's own validation) and the window size.
    public init(pipeline: StableDiffusionPipeline, configuration: EvalConfiguration) throws {
        try Self.validate(configuration)
        self.pipeline = pipeline
        self.configuration = configuration
    }

    /// What can be checked before a model loads.
    public static func validate(_ c: EvalConfiguration) throws {
        guard WindowSizeSetting.range.contains(c.windowSize) else {
            let r = WindowSizeSetting.range
            throw EvalError("window-size \(c.windowSize) is out of range \(r.lowerBound)…\(r.upperBound)")
        }
        var settings = c.settings
        // mode=reatco: a layout clip names its region words itself (settings(for:)); checked per clip.
        if settings.mode == .reatco && settings.regionWords.isEmpty && settings.regions.isEmpty {
            settings.regionWords = "word"
        }
        try DiffusionWindowEditor.validate(settings)
    }

    /// The settings a clip is edited with.
    public func settings(for clip: EvalClip) -> EditorSettings {
        var s = configuration.settings
        s.sourcePrompt = clip.meta.sourcePrompt
        s.prompt = configuration.nullEdit ? clip.meta.sourcePrompt : clip.meta.targetPrompt
        // A layout clip's label masks name the target prompt's words (mode=reatco; other modes get their union).
        if s.mode == .reatco, let words = clip.meta.regionWords, s.regions.isEmpty {
            s.regionWords = words.joined(separator: ",")
        }
        return s
    }

    /// Edits one clip window by window and scores it; `seconds` counts the edits only.
    public func evaluate(_ clip: EvalClip) throws -> EvalTally {
        let c = configuration, s = settings(for: clip)
        let editor = try DiffusionWindowEditor(pipeline: pipeline, settings: s)
        // mode=blended runs as the element does with its mask pad unlinked: the automatic mask must find the object.
        let blended = s.mode == .blended && !c.vaeRoundTrip
        var outputs: [Frame] = [], composites: [Mask] = []
        // As the element's EditorSession: each window after the first with its context frames (window-overlap).
        var overlap = WindowOverlap()
        var tally = EvalTally()
        tally.measuresEdit = !c.vaeRoundTrip
        for start in stride(from: 0, to: clip.frames.count, by: c.windowSize) {
            let range = start..<min(clip.frames.count, start + c.windowSize)
            let frames = Array(clip.frames[range])
            let masks = blended ? frames.map { Mask.full(width: $0.width, height: $0.height) }
                                : Array(clip.masks[range]).map { layoutMask($0, clip: clip, settings: s) }
            let context = overlap.context(for: frames, masks: masks, overlap: s.windowOverlap)
            let t0 = Date()
            let out = c.vaeRoundTrip ? try editor.vaeRoundTrip(frames: frames)
                                     : try editor.edit(frames: frames, masks: masks, context: context,
                                                       isCancelled: { false })
            tally.seconds += Date().timeIntervalSince(t0)
            outputs += out
            if blended {
                // An untouched (skipped) window composited through nothing.
                let m = editor.lastCompositeMasks
                composites += m.count == frames.count ? m : frames.map {
                    Mask(width: $0.width, height: $0.height, pixels: [UInt8](repeating: 0, count: $0.width * $0.height))
                }
            }
        }
        tally.add(clip, outputs: outputs, windowSize: c.windowSize,
                  expectedColor: c.nullEdit ? clip.meta.sourceColor : clip.meta.targetColor,
                  threshold: s.maskThreshold, feather: s.feather, compositeMasks: blended ? composites : nil)
        if let folder = c.saveFolder {
            try Self.save(clip, outputs: outputs, masks: blended ? composites : clip.masks,
                          to: folder.appendingPathComponent(clip.name))
        }
        return tally
    }

    /// A clip mask as the editor takes it: a layout clip's label map as it is for mode=reatco with region-words,
    /// else the union of its regions as 0/255; other clips' masks as they are.
    private func layoutMask(_ mask: Mask, clip: EvalClip, settings s: EditorSettings) -> Mask {
        guard let words = clip.meta.regionWords, !(s.mode == .reatco && !s.regionWords.isEmpty) else { return mask }
        return RegionWords.union(mask, words: words.count)
    }

    /// Loads and evaluates every clip folder in order; `progress` sees each clip's own tally.
    public func run(_ folders: [URL], progress: (EvalClip, EvalTally) -> Void = { _, _ in }) throws -> EvalSummary {
        var summary = EvalSummary(mode: configuration.modeName)
        summary.tally.measuresEdit = !configuration.vaeRoundTrip
        for folder in folders {
            let clip = try EvalClip.load(folder)
            let t = try evaluate(clip)
            progress(clip, t)
            summary.tally.merge(t)
            summary.clips += 1
        }
        return summary
    }

    /// `folder`/output/NNNN.ppm for every output frame, and `folder`/strip.png: rows of input | mask | output for up
    /// to 4 frames spread over the clip.
    public static func save(_ clip: EvalClip, outputs: [Frame], masks: [Mask], to folder: URL) throws {
        let out = folder.appendingPathComponent("output")
        do { try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true) } catch {
            throw EvalError("\(out.path): cannot create folder (\(error.localizedDescription))")
        }
        for (f, frame) in outputs.enumerated() {
            let image = NetPBMImage(width: frame.width, height: frame.height, channels: 3, pixels: frame.planes[0])
            try NetPBM.write(image, to: out.appendingPathComponent(String(format: "%04d.ppm", f)))
        }
        let n = outputs.count, rows = min(4, n)
        guard rows > 0 else { return }
        let picked = (0..<rows).map { rows == 1 ? 0 : $0 * (n - 1) / (rows - 1) }
        let (w, h) = (clip.meta.width, clip.meta.height)
        var strip = [UInt8](repeating: 0, count: 3 * w * h * 3 * rows)
        let stride = 3 * w * 3
        for (r, f) in picked.enumerated() {
            for y in 0..<h {
                let base = (r * h + y) * stride
                for x in 0..<w {
                    let i = y * w + x
                    for c in 0..<3 {
                        strip[base + 3 * x + c] = clip.frames[f].planes[0][3 * i + c]
                        strip[base + 3 * (w + x) + c] = masks[f].pixels[i]
                        strip[base + 3 * (2 * w + x) + c] = outputs[f].planes[0][3 * i + c]
                    }
                }
            }
        }
        try PNGWriter.write(strip, width: 3 * w, height: h * rows, to: folder.appendingPathComponent("strip.png"))
    }
}
