// The window editor: prepare (scale, VAE-encode, latent masks) → EditLoop with the mode's method (inversion, guided
// edit, latent blend; Methods/) → decode what changed → feathered composite over the input frames.
import Foundation
import StableDiffusion
import TensorKernels

/// What one window edit cost, for benchmarks and logs.
public struct EditReport: Sendable {
    public var sampling = SamplingReport()
    public var processingWidth = 0, processingHeight = 0
    public var seconds = 0.0
    /// True when no frame had a masked pixel and the window came back untouched.
    public var skipped = false
    /// Context frames edited with the window and not returned (window-overlap).
    public var contextFrames = 0
}

public final class DiffusionWindowEditor: WindowEditing {
    public let pipeline: StableDiffusionPipeline
    public let settings: EditorSettings
    public private(set) var lastReport = EditReport()
    /// The pixel masks the last edit composited through (before feathering): the input masks, in mode=blended
    /// intersected with the automatic mask. Empty when the last window was skipped (nothing masked).
    public private(set) var lastCompositeMasks: [Mask] = []
    private let loopConfig: EditLoop.Config
    private let makeMethod: EditMethodMaker
    private var prompts: EncodedPrompts?
    /// mode=reatco: which words go where, and each word's token positions in the target prompt.
    private let regionLayout: RegionWords?
    private let regionTokens: [[Int]]

    /// Loads the model folder of `settings.modelPath`; throws a ModelError a user can act on.
    public convenience init(settings: EditorSettings) throws {
        guard let path = settings.modelPath, !path.isEmpty else { throw ModelError("no model folder set") }
        try Self.validate(settings)   // before the model loads: a bad setting should not cost a load
        try self.init(pipeline: StableDiffusionPipeline(folder: URL(fileURLWithPath: path)), settings: settings)
    }

    public init(pipeline: StableDiffusionPipeline, settings: EditorSettings) throws {
        try Self.validate(settings)
        self.pipeline = pipeline
        self.settings = settings
        loopConfig = EditLoop.Config(settings)
        makeMethod = try EditMethodFactory.maker(for: settings)
        regionLayout = try RegionWords(settings)
        regionTokens = try regionLayout?.tokenPositions(prompt: settings.prompt ?? "",
                                                        tokenizer: pipeline.tokenizer) ?? []
        if regionLayout != nil && settings.refocusLevel >= 0 {
            let unet = pipeline.unet
            let levels = unet.config.blockOutChannels.count
            guard settings.refocusLevel < levels,
                  !unet.crossAttentionLayerNames(level: settings.refocusLevel).isEmpty else {
                let valid = (0..<levels).filter { !unet.crossAttentionLayerNames(level: $0).isEmpty }
                throw WindowEditError("refocus-level \(settings.refocusLevel): this model's levels with "
                                      + "cross-attention are \(valid.map(String.init).joined(separator: ", ")) "
                                      + "(-1 = automatic)")
            }
        }
    }

    /// Settings this editor cannot run, as one-line errors (callers may check before loading a model).
    public static func validate(_ settings: EditorSettings) throws {
        guard settings.processingSize % 64 == 0, settings.processingSize >= 64 else {
            throw WindowEditError("processing-size \(settings.processingSize) is not a positive multiple of 64")
        }
        _ = try EditMethodFactory.maker(for: settings)
        _ = try RegionWords(settings)   // mode=reatco: which words go where
    }

    /// Processing canvas for a frame: short side = processing-size, long side keeps the aspect, multiple of 64.
    public static func processingSize(width: Int, height: Int, shortSide: Int) -> (width: Int, height: Int) {
        let long = Double(max(width, height)) / Double(min(width, height)) * Double(shortSide)
        let l = max(64, Int((long / 64).rounded()) * 64)
        return width >= height ? (l, shortSide) : (shortSide, l)
    }

    /// The canvas bound: a canvas whose long side is more than this many times its short side is refused (frames
    /// beyond about 4:1, e.g. 16384×1, would need canvases of gigapixels at any processing-size).
    public static let maxCanvasAspect = 4

    /// Why a frame of `width`×`height` cannot be edited at `shortSide` (its canvas would be too elongated), or nil.
    public static func canvasRefusal(width: Int, height: Int, shortSide: Int) -> String? {
        guard width > 0, height > 0 else { return "a frame of \(width)×\(height) has no pixels" }
        let long = Double(max(width, height)) / Double(min(width, height)) * Double(shortSide)
        guard long > Double(maxCanvasAspect * shortSide + 32) else { return nil }
        let shown = long < 1e15 ? "\(Int((long / 64).rounded()) * 64)" : "\(long)"
        let canvas = width >= height ? "\(shown)×\(shortSide)" : "\(shortSide)×\(shown)"
        return "frames of \(width)×\(height) would need a processing canvas of \(canvas) at processing-size "
            + "\(shortSide); ocdedit edits frames whose canvas is at most \(maxCanvasAspect):1 "
            + "(long side ≤ \(maxCanvasAspect) × processing-size): crop or pad the video"
    }

    public func edit(frames: [Frame], masks: [Mask], isCancelled: @escaping @Sendable () -> Bool) throws -> [Frame] {
        try edit(frames: frames, masks: masks, context: .none, isCancelled: isCancelled)
    }

    /// The window `context.frames + frames` is prepared, inverted and edited as one batch (so the method's
    /// cross-frame attention anchors on the context's first frame); only `frames` are decoded and composited.
    public func edit(frames: [Frame], masks: [Mask], context: WindowContext,
                     isCancelled: @escaping @Sendable () -> Bool) throws -> [Frame] {
        precondition(frames.count == masks.count, "one mask per frame")
        let start = Date()
        var report = EditReport()
        lastCompositeMasks = []
        defer { report.seconds = Date().timeIntervalSince(start); lastReport = report }
        guard let first = frames.first else { return [] }
        try Self.checkOneSizeAndFormat(frames)
        let (W, H) = (first.width, first.height)
        if let refusal = Self.canvasRefusal(width: W, height: H, shortSide: settings.processingSize) {
            throw WindowEditError(refusal)
        }
        // mode=reatco: the masks are label maps (or the regions' boxes); the rest of the edit sees their union.
        let labels = try regionLabels(masks, width: W, height: H)
        let masks = editMasks(masks, labels: labels, width: W, height: H)
        let threshold = regionLayout == nil ? settings.maskThreshold : 128
        // Nothing masked in the window's own frames: nothing to edit, and the UNet never runs.
        if settings.preserveBackground && !masks.contains(where: { $0.pixels.contains { Int($0) >= threshold } }) {
            report.skipped = true
            return frames
        }
        // Context frames of another size or format (a caps change) cannot join the batch: the window goes alone.
        let c = context.frames.allSatisfy { $0.width == W && $0.height == H && $0.format == first.format }
            ? context.count : 0
        report.contextFrames = c
        let allFrames = Array(context.frames.prefix(c)) + frames
        let contextLabels = try regionLabels(Array(context.masks.prefix(c)), width: W, height: H)
        let allMasks = editMasks(Array(context.masks.prefix(c)), labels: contextLabels, width: W, height: H) + masks
        let regions = labels.map {
            WindowRegions(tokens: regionTokens, labels: (contextLabels ?? []) + $0, layout: regionLayout!)
        }
        let vae = pipeline.vae
        let (pw, ph) = Self.processingSize(width: W, height: H, shortSide: settings.processingSize)
        report.processingWidth = pw
        report.processingHeight = ph
        let down = vae.config.downscale
        let (lw, lh) = (pw / down, ph / down)

        // 1. Prepare: scale, encode the window as one batch, latent masks.
        if isCancelled() { throw EditCancelled() }
        let images = allFrames.map { RGBImage($0).resized(width: pw, height: ph) }
        let encodedLatents = vae.encode(ImageTensors.tensor(images))
        let latents = Ops.scale(encodedLatents, vae.scalingFactor)
        // The edit region must cover the feathered edge: dilate by the feather radius in latent cells, plus one.
        let featherLatent = Int((Double(settings.feather / 2) * Double(pw) / Double(W) / Double(down)).rounded(.up))
        var region: [[Float]] = [], saliency: [[Float]] = []
        for m in allMasks {
            let (hard, soft) = Self.latentMasks(m, threshold: threshold, width: lw, height: lh)
            region.append(settings.preserveBackground
                ? LatentRegions.dilate(hard, height: lh, width: lw, radius: 1 + featherLatent)
                : [Float](repeating: 1, count: lh * lw))
            saliency.append(soft)
        }
        let p = encodedPrompts()
        let loop = EditLoop(unet: pipeline.unet, scheduler: pipeline.scheduler, config: loopConfig)
        let inputs = SamplingInputs(latents: latents, editRegion: region, saliency: saliency, source: p.source,
                                    target: p.target, negative: p.negative, sourceTokens: p.sourceTokens,
                                    targetTokens: p.targetTokens, regionDilation: 1 + featherLatent,
                                    regions: regions)
        let edited: Tensor
        do {
            edited = try loop.run(inputs, method: makeMethod, isCancelled: isCancelled)
        } catch {
            report.sampling = loop.report
            throw error
        }
        report.sampling = loop.report
        if isCancelled() { throw EditCancelled() }

        // 2. Decode only the window's own frames (not the context's) and only the changed area's box (one box size
        //    for the window so it stays one batch), grown by decode-margin.
        let boxes = LatentRegions.commonBoxes(Array(loop.editedRegion.suffix(frames.count)), height: lh, width: lw,
                                              margin: settings.decodeMargin)
        let own = c == 0 ? edited : edited.slice(first: c, length: frames.count)
        let crops = Ops.scale(LatentRegions.crop(own, boxes), 1 / vae.scalingFactor)
        let decoded = ImageTensors.images(vae.decode(crops))

        // 3. Composite through the feathered mask (and the method's automatic mask, if it found one).
        let automatic = loop.automaticMask
        lastCompositeMasks = frames.indices.map { i in
            automatic.map {
                Self.intersect(masks[i], threshold: threshold, latentMask: $0[c + i], width: lw, height: lh)
            } ?? masks[i]
        }
        return frames.indices.map { i in
            let mask = lastCompositeMasks[i]
            let alpha = settings.preserveBackground
                ? FeatherMask(mask: mask, threshold: threshold, feather: settings.feather)
                : FeatherMask(fullWidth: W, height: H)
            return Compositor.composite(frames[i], edited: decoded[i], originX: boxes[i].x * down,
                                        originY: boxes[i].y * down,
                                        canvasWidth: pw, canvasHeight: ph, alpha: alpha)
        }
    }

    /// No diffusion: the frames scaled to the processing canvas, VAE-encoded (latent mean) and decoded as one batch,
    /// and scaled back with every pixel replaced, through the same resize and composite paths as `edit`. What the VAE
    /// and the resizing alone lose at this `processing-size`: a ceiling on any edit's fidelity.
    public func vaeRoundTrip(frames: [Frame]) throws -> [Frame] {
        guard let first = frames.first else { return [] }
        try Self.checkOneSizeAndFormat(frames)
        let (W, H) = (first.width, first.height)
        let (pw, ph) = Self.processingSize(width: W, height: H, shortSide: settings.processingSize)
        let images = frames.map { RGBImage($0).resized(width: pw, height: ph) }
        let vae = pipeline.vae
        let decoded = ImageTensors.images(vae.decode(vae.encode(ImageTensors.tensor(images))))
        let alpha = FeatherMask(fullWidth: W, height: H)
        return frames.indices.map { i in
            Compositor.composite(frames[i], edited: decoded[i], originX: 0, originY: 0, canvasWidth: pw,
                                 canvasHeight: ph, alpha: alpha)
        }
    }

    /// A window is edited as one batch at one processing size: every frame must share the first one's size and format.
    static func checkOneSizeAndFormat(_ frames: [Frame]) throws {
        guard let first = frames.first else { return }
        guard frames.allSatisfy({ $0.width == first.width && $0.height == first.height && $0.format == first.format })
        else {
            throw WindowEditError("a window mixes frame sizes or formats; the editor needs one size and format "
                                  + "per window")
        }
    }

    /// The pixel mask (255/0) where `mask` is at or above the threshold and the latent cell under the pixel is set.
    static func intersect(_ mask: Mask, threshold: Int, latentMask: [Float], width lw: Int, height lh: Int) -> Mask {
        let (w, h) = (mask.width, mask.height)
        var pixels = [UInt8](repeating: 0, count: w * h)
        for y in 0..<h {
            let row = (y * lh / h) * lw
            for x in 0..<w where Int(mask.pixels[y * w + x]) >= threshold && latentMask[row + x * lw / w] > 0 {
                pixels[y * w + x] = 255
            }
        }
        return Mask(width: w, height: h, pixels: pixels)
    }

    /// mode=reatco: the frames' label maps at `width`×`height` (the masks themselves, or the regions' boxes drawn);
    /// nil in other modes. Throws when masks that should be label maps hold no word's value.
    private func regionLabels(_ masks: [Mask], width: Int, height: Int) throws -> [Mask]? {
        guard let layout = regionLayout else { return nil }
        let labels = masks.map { layout.labels($0, width: width, height: height) }
        if let refusal = layout.refusal(labels) { throw WindowEditError(refusal) }
        return labels
    }

    /// The masks the edit follows at `width`×`height`: the regions' union of `labels` (mode=reatco), else `masks`.
    private func editMasks(_ masks: [Mask], labels: [Mask]?, width: Int, height: Int) -> [Mask] {
        if let labels, let layout = regionLayout { return labels.map(layout.union) }
        return masks.map { $0.scaled(width: width, height: height) }
    }

    /// The prompts as the edit loop takes them, computed once per editor.
    private struct EncodedPrompts {
        /// Embeddings [1, 77, D].
        var source: Tensor, target: Tensor, negative: Tensor
        /// Token ids of the source and target prompts.
        var sourceTokens: [Int32], targetTokens: [Int32]
    }

    private func encodedPrompts() -> EncodedPrompts {
        if let prompts { return prompts }
        let target = settings.prompt ?? ""
        let e = pipeline.encode(prompts: [settings.sourcePrompt, target, settings.unconditionalPrompt])
        let parts = Ops.split(e, dim: 0, sizes: [1, 1, 1])
        let encoded = EncodedPrompts(source: parts[0], target: parts[1], negative: parts[2],
                                     sourceTokens: pipeline.tokenizer.encode(settings.sourcePrompt),
                                     targetTokens: pipeline.tokenizer.encode(target))
        prompts = encoded
        return encoded
    }

    /// The mask on the latent grid: hard = any pixel of the cell at or above the threshold; soft = mean value / 255.
    static func latentMasks(_ m: Mask, threshold: Int, width lw: Int,
                            height lh: Int) -> (hard: [Float], soft: [Float]) {
        var hard = [Float](repeating: 0, count: lw * lh), soft = hard
        for ly in 0..<lh {
            let y0 = ly * m.height / lh, y1 = max(y0 + 1, (ly + 1) * m.height / lh)
            for lx in 0..<lw {
                let x0 = lx * m.width / lw, x1 = max(x0 + 1, (lx + 1) * m.width / lw)
                var sum = 0, any = false
                for y in y0..<min(y1, m.height) { for x in x0..<min(x1, m.width) {
                    let v = Int(m.pixels[y * m.width + x])
                    sum += v
                    if v >= threshold { any = true }
                } }
                hard[ly * lw + lx] = any ? 1 : 0
                let cells = (min(y1, m.height) - y0) * (min(x1, m.width) - x0)
                soft[ly * lw + lx] = Float(sum) / Float(255 * max(1, cells))
            }
        }
        return (hard, soft)
    }
}
