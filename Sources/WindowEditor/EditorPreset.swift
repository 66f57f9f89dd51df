// Named starting points for the editor settings, which `ocdedit bench edit` and `ocdedit eval` compare: speed is
// measured against `reference` and kept only where `ocdedit eval` says the edit holds up (README, "Performance").

public enum EditorPreset: String, Sendable, CaseIterable {
    /// The element's defaults (EditorSettings()).
    case `default`
    /// The FateZero configuration on this engine, what a user of the published video editors runs: DDIM with 50
    /// steps at full strength (50 inversion and 50 guided steps), guidance 7.5 with the empty prompt as the
    /// unconditional one (as diffusers and FateZero), cross-frame attention to the first and previous frames, the
    /// whole frame edited and decoded (no mask region, no composite), no object-centric sampling, no token merging,
    /// no step caching, no joint part smaller than the frame.
    case reference
    /// The defaults with every saving off, at the same steps: the equal-steps side of the speed work's comparison.
    /// mode=baseline (no object-centric sampling, no token merging), no step caching, no joint part smaller than the
    /// frame, the decode box's 2-cell margin; prompts, guidance, the edit region and the composite as the defaults.
    case noSavings = "no-savings"

    /// The preset's settings; prompts, model and the sizes a caller sets stay the caller's to set afterwards.
    public var settings: EditorSettings {
        var s = EditorSettings()
        switch self {
        case .default:
            break
        case .reference:
            s.mode = .baseline
            s.steps = 50
            s.strength = 1
            s.guidanceScale = 7.5
            s.negativeFromSource = false
            s.crossFrame = .firstPrevious
            s.preserveBackground = false
            s.attentionReuse = 0
            s.inversionIterations = 1
            s.deepCacheInterval = 1
            s.jointMargin = -1
        case .noSavings:
            s.mode = .baseline
            s.ocdSampling = false
            s.tomeRatio = 0
            s.deepCacheInterval = 1
            s.deepCacheInversion = false
            s.jointMargin = -1
            s.decodeMargin = 2
        }
        return s
    }

    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}
