// Every editor setting under the element's property name, with its blurb, the values it takes and (through
// `EditorSettings()`) its default: the one table the element registers its GObject properties from and text front
// ends (the `ocdedit eval` command line) parse through, so names, ranges, defaults and error messages are the same
// everywhere. The README's property table is checked against the element's properties by a test.
import Foundation

/// One setting of `EditorSettings`: its property name, a one-line blurb, the values it accepts, and how to set it
/// from text and show it as text. `set` throws a `WindowEditError` naming the setting on a malformed or out-of-range
/// value and leaves the settings unchanged then.
public struct EditorSettingField: @unchecked Sendable {
    /// What text a setting accepts.
    public enum Kind: Equatable, @unchecked Sendable {
        case int(ClosedRange<Int>, multipleOf: Int)
        case double(ClosedRange<Double>)
        case uint64(ClosedRange<UInt64>)
        case bool
        /// Any text; `optional`: the empty text means unset (nil).
        case string(optional: Bool)
        case choice([String])
    }

    public let name: String
    public let blurb: String
    public let kind: Kind
    private let apply: (inout EditorSettings, String) throws -> Void
    private let show: (EditorSettings) -> String

    init(_ name: String, _ blurb: String, _ kind: Kind, apply: @escaping (inout EditorSettings, String) throws -> Void,
         show: @escaping (EditorSettings) -> String) {
        self.name = name
        self.blurb = blurb
        self.kind = kind
        self.apply = apply
        self.show = show
    }

    /// Sets the field from `text` (integers and decimals in Swift's syntax; bools as true/false, yes/no, on/off, 1/0).
    public func set(_ settings: inout EditorSettings, from text: String) throws {
        try apply(&settings, text)
    }

    /// The field's value in `settings` as text `set` accepts (nil strings as "").
    public func value(in settings: EditorSettings) -> String { show(settings) }

    /// The accepted values for help texts, e.g. "1…1000", "true|false", "ocd|baseline|…".
    public var values: String {
        switch kind {
        case let .int(r, m): return "\(r.lowerBound)…\(r.upperBound)" + (m > 1 ? ", multiple of \(m)" : "")
        case let .double(r): return "\(r.lowerBound)…\(r.upperBound)"
        case let .uint64(r): return "\(r.lowerBound)…\(r.upperBound)"
        case .bool: return "true|false"
        case .string: return "text"
        case let .choice(c): return c.joined(separator: "|")
        }
    }
}

extension EditorSettings {
    /// Every field, in the element's property order.
    public static let fields: [EditorSettingField] = {
        typealias F = EditorSettingField
        func error(_ name: String, _ text: String, _ what: String) -> WindowEditError {
            WindowEditError("\(name): '\(text)' \(what)")
        }
        func int(_ name: String, _ blurb: String, _ range: ClosedRange<Int>, multipleOf m: Int = 1,
                 _ kp: WritableKeyPath<EditorSettings, Int>) -> F {
            F(name, blurb, .int(range, multipleOf: m), apply: { s, text in
                guard let v = Int(text) else { throw error(name, text, "is not an integer") }
                guard range.contains(v) else {
                    throw error(name, text, "is out of range \(range.lowerBound)…\(range.upperBound)")
                }
                guard v % m == 0 else { throw error(name, text, "is not a multiple of \(m)") }
                s[keyPath: kp] = v
            }, show: { "\($0[keyPath: kp])" })
        }
        func double(_ name: String, _ blurb: String, _ range: ClosedRange<Double>,
                    _ kp: WritableKeyPath<EditorSettings, Double>) -> F {
            F(name, blurb, .double(range), apply: { s, text in
                guard let v = Double(text), v.isFinite else { throw error(name, text, "is not a number") }
                guard range.contains(v) else {
                    throw error(name, text, "is out of range \(range.lowerBound)…\(range.upperBound)")
                }
                s[keyPath: kp] = v
            }, show: { "\($0[keyPath: kp])" })
        }
        func bool(_ name: String, _ blurb: String, _ kp: WritableKeyPath<EditorSettings, Bool>) -> F {
            F(name, blurb, .bool, apply: { s, text in
                switch text.lowercased() {
                case "true", "yes", "on", "1": s[keyPath: kp] = true
                case "false", "no", "off", "0": s[keyPath: kp] = false
                default: throw error(name, text, "is not a boolean (true or false)")
                }
            }, show: { $0[keyPath: kp] ? "true" : "false" })
        }
        func string(_ name: String, _ blurb: String, _ kp: WritableKeyPath<EditorSettings, String>) -> F {
            F(name, blurb, .string(optional: false), apply: { s, text in s[keyPath: kp] = text },
              show: { $0[keyPath: kp] })
        }
        func optional(_ name: String, _ blurb: String, _ kp: WritableKeyPath<EditorSettings, String?>) -> F {
            F(name, blurb, .string(optional: true), apply: { s, text in s[keyPath: kp] = text.isEmpty ? nil : text },
              show: { $0[keyPath: kp] ?? "" })
        }
        func choice<E: RawRepresentable & CaseIterable>(_ name: String, _ blurb: String,
                                                         _ kp: WritableKeyPath<EditorSettings, E>) -> F
            where E.RawValue == String {
            let names = E.allCases.map(\.rawValue)
            return F(name, blurb, .choice(names), apply: { s, text in
                guard let v = E(rawValue: text) else {
                    throw error(name, text, "is not one of \(names.joined(separator: ", "))")
                }
                s[keyPath: kp] = v
            }, show: { $0[keyPath: kp].rawValue })
        }
        let seedRange: ClosedRange<UInt64> = 0...UInt64(UInt32.max)
        let seed = F("seed", "Seed of every random choice; equal seeds give identical output", .uint64(seedRange),
                     apply: { s, text in
            guard let v = UInt64(text) else { throw error("seed", text, "is not a non-negative integer") }
            guard seedRange.contains(v) else { throw error("seed", text, "is out of range 0…\(seedRange.upperBound)") }
            s.seed = v
        }, show: { "\($0.seed)" })
        return [
            optional("model", "Folder of a diffusers-layout Stable Diffusion 1.x/2.x pipeline (unet/ vae/ "
                     + "text_encoder/ tokenizer/ scheduler/); unset = pass-through", \.modelPath),
            optional("prompt", "Target prompt of the edit; unset = pass-through", \.prompt),
            string("source-prompt", "Prompt describing the input video, used for DDIM inversion", \.sourcePrompt),
            string("negative-prompt", "Unconditional prompt of classifier-free guidance; empty = the source prompt "
                   + "when negative-from-source is true, else the empty prompt", \.negativePrompt),
            bool("negative-from-source", "With an empty negative-prompt, guide from the source prompt (negative-prompt "
                 + "inversion: a steadier, stronger edit); false = the empty prompt, as diffusers does",
                 \.negativeFromSource),
            int("steps", "DDIM steps of the full schedule", 1...1000, \.steps),
            double("guidance-scale", "Classifier-free guidance scale (1 = no guidance)", 1...30, \.guidanceScale),
            double("guidance-share", "Share of the edit steps (the first, the noisiest) that run classifier-free "
                   + "guidance; the rest take the target prompt's prediction alone (half the UNet batch)", 0...1,
                   \.guidanceShare),
            double("strength", "Share of the schedule that is inverted and re-denoised", 0...1, \.strength),
            seed,
            int("mask-threshold", "Mask value at or above which a pixel is foreground", 0...255, \.maskThreshold),
            bool("preview-mask", "Tint the masked area instead of editing (checks mask alignment at full speed)",
                 \.previewMask),
            int("processing-size", "Short side of the processing resolution in pixels (multiple of 64; aspect kept)",
                64...2048, multipleOf: 64, \.processingSize),
            choice("mode", "Editing method: ocd, baseline (OCD off), "
                   + "blended (automatic mask: where the edit changes the noise), tokenflow (keyframes + propagation), "
                   + "reatco (words drawn in given regions)", \.mode),
            bool("ocd-sampling", "Object-centric sampling: denoise only the foreground crop before the blend step",
                 \.ocdSampling),
            double("blend-step", "Fraction of the edit run on the foreground crop before the whole frame is denoised "
                   + "jointly", 0...1, \.blendStep),
            int("background-steps", "Full-frame UNet steps spent on the background's inverted trajectory up to the "
                + "blend step (0 = one per step)", 0...1000, \.backgroundSteps),
            int("inversion-iterations", "Fixed-point iterations per DDIM inversion step (1 = plain DDIM inversion; "
                + "more = closer reconstruction)", 1...20, \.inversionIterations),
            choice("inversion", "How the trajectory the edit retraces is found: ddim (DDIM inversion), ddpm "
                   + "(edit-friendly DDPM noise maps, seeded)", \.inversion),
            double("attention-reuse", "Share of the edit steps (the first) whose self-attention maps are the "
                   + "inversion's (FateZero): keeps the edited object's layout; 0 = off", 0...1, \.attentionReuse),
            int("deep-cache-interval", "Of every this many edit steps, the first runs the whole UNet and the others "
                + "reuse its deep features (DeepCache: only the outermost blocks run); 1 = off", 1...10,
                \.deepCacheInterval),
            int("deep-cache-branch", "DeepCache's skip branch: the steps between full calls run conv_in, this many "
                + "layers of the first down block and one more of the last up block (layers_per_block or more = the "
                + "whole outermost level)", 0...64, \.deepCacheBranch),
            bool("deep-cache-inversion", "DDIM inversion's UNet calls take step caching too (deep-cache-interval "
                 + "and -branch); inversion=ddpm's always do", \.deepCacheInversion),
            double("blend-threshold", "mode=blended: share of the automatic mask's map (per frame, from its minimum "
                   + "to its peak) at or above which a cell is edited", 0...1, \.blendThreshold),
            int("keyframe-interval", "mode=tokenflow: one keyframe every this many frames (random offset per step); "
                + "1 = every frame", 1...64, \.keyframeInterval),
            bool("preserve-background", "Replace the latent outside the dilated mask by the inverted trajectory at "
                 + "every step", \.preserveBackground),
            int("context-margin", "Margin in latent cells around the mask's box of the foreground crop", 0...64,
                \.contextMargin),
            int("joint-margin", "Margin in latent cells around the foreground crop that the joint steps compute "
                + "(-1 = the whole frame)", -1...64, \.jointMargin),
            int("decode-margin", "Margin in latent cells around the edit region's box that the VAE decodes", 0...64,
                \.decodeMargin),
            string("region-words", "mode=reatco: comma-separated words or phrases of the prompt; the mask stream "
                   + "is a label map, pixel value v = the v-th one's region (0 = none)", \.regionWords),
            string("regions", "mode=reatco: static regions instead of a label map, 'word:x1,y1,x2,y2;...' in input "
                   + "pixels (x2, y2 exclusive)", \.regions),
            double("refocus-share", "mode=reatco: share of the edit steps (the first) that step the latent along the "
                   + "attention loss's gradient; 0 = no refocusing", 0...1, \.refocusShare),
            double("refocus-scale", "mode=reatco: scale of the refocusing gradient step (ReAtCo: 20)", 0...1_000_000,
                   \.refocusScale),
            int("refocus-iterations", "mode=reatco: most foreground-only updates at each refinement step (0 %, 20 %, "
                + "40 % of the edit steps); 0 = no refinement", 0...100, \.refocusIterations),
            int("refocus-level", "mode=reatco: UNet level whose cross-attention the loss reads (0 = finest); -1 = the "
                + "deepest with at least 16 cells on the short side", -1...8, \.refocusLevel),
            int("refocus-smoothing", "mode=reatco: radius in latent cells of the low-pass on the refocusing "
                + "gradient (0 = the raw gradient, as ReAtCo)", 0...32, \.refocusSmoothing),
            int("refocus-frames", "mode=reatco: frames per gradient computation (bounds its memory); 0 = the whole "
                + "window", 0...64, \.refocusFrames),
            double("tome-ratio", "Share of self-attention key/value tokens merged", 0...0.9, \.tomeRatio),
            double("tome-foreground-weight", "How strongly saliency protects foreground tokens from merging", 0...1,
                   \.tomeForegroundWeight),
            int("tome-frames", "Frames in one spatiotemporal merging volume", 1...64, \.tomeFrames),
            choice("cross-frame", "Frames whose keys/values self-attention sees: none, first-previous, "
                   + "first-previous-middle, all", \.crossFrame),
            int("feather", "Width in pixels of the soft edge of the composite mask", 0...256, \.feather),
            int("window-overlap", "Context frames edited with each window after the first, not output: the "
                + "stream's first frame (the shared cross-frame anchor), then the previous window's last frames; "
                + "0 = windows edited on their own", 0...64, \.windowOverlap),
        ]
    }()

    /// The field called `name`, or nil.
    public static func field(named name: String) -> EditorSettingField? { fields.first { $0.name == name } }

    /// Sets the setting called `name` from `text`; an unknown name throws a WindowEditError listing the valid ones.
    public mutating func set(_ name: String, to text: String) throws {
        guard let f = Self.field(named: name) else {
            let valid = Self.fields.map(\.name).joined(separator: ", ")
            throw WindowEditError("unknown setting '\(name)'; valid: \(valid)")
        }
        try f.set(&self, from: text)
    }
}

/// The element's `window-size` (frames edited together). Not an `EditorSettings` field (an editor edits whatever
/// window it is given) but described here with the rest, for every front end that cuts a stream into windows.
public enum WindowSizeSetting {
    public static let name = "window-size"
    public static let blurb = "Frames buffered and edited together (latency grows with it)"
    public static let range = 1...64
    public static let defaultValue = 8
}
