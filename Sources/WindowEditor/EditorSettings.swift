// Everything a window edit depends on. The element exposes each field as a GObject property
// (name in the comment, range and default here are the contract shown by gst-inspect-1.0).

public enum EditMode: String, Sendable, CaseIterable {
    /// Object-centric diffusion: object-centric sampling and saliency-weighted token merging.
    case ocd
    /// The same edit with OCD sampling and token merging off (for comparison).
    case baseline
    /// Blended latent diffusion with an automatic mask from cross-attention of the edited words.
    case blended
    /// ReAtCo-style invariant-region joint sampling (re-noised source outside the mask).
    case reatco
    /// TokenFlow-style keyframe editing with feature propagation.
    case tokenflow
}

public enum CrossFrameAttention: String, Sendable, CaseIterable {
    /// Each frame attends to itself only.
    case none
    /// Keys/values of the first and the previous frame (and itself).
    case firstPrevious = "first-previous"
    /// Keys/values of the first, previous and middle frame (and itself).
    case firstPreviousMiddle = "first-previous-middle"
    /// Keys/values of every frame of the window.
    case all
}

public struct EditorSettings: Sendable, Equatable {
    /// `model`: folder of a diffusers-layout Stable Diffusion 1.x/2.x pipeline. Default: none (pass-through).
    public var modelPath: String? = nil
    /// `prompt`: target prompt. Default: none (pass-through).
    public var prompt: String? = nil
    /// `source-prompt`: prompt describing the input, used for DDIM inversion. Default "".
    public var sourcePrompt: String = ""
    /// `negative-prompt`: unconditional prompt for classifier-free guidance. Default "".
    public var negativePrompt: String = ""
    /// `steps`: DDIM steps of the full schedule, 1…1000. Default 20.
    public var steps: Int = 20
    /// `guidance-scale`: classifier-free guidance scale, 1.0…30.0 (1 = no guidance). Default 7.5.
    public var guidanceScale: Double = 7.5
    /// `strength`: share of the schedule that is inverted and re-denoised, 0.0…1.0. Default 0.8.
    public var strength: Double = 0.8
    /// `seed`: seed of every random choice (token-merge destinations), 0…2^32-1. Default 0.
    public var seed: UInt64 = 0
    /// `mask-threshold`: mask value (0…255) at or above which a pixel is foreground. Default 128.
    public var maskThreshold: Int = 128
    /// `preview-mask`: tint the masked area instead of editing. Default false.
    public var previewMask: Bool = false
    /// `processing-size`: short side of the processing resolution in pixels, multiple of 64, 64…2048. Default 512.
    public var processingSize: Int = 512
    /// `mode`: ocd, baseline, blended, reatco, tokenflow. Default ocd.
    public var mode: EditMode = .ocd
    /// `ocd-sampling`: object-centric sampling on/off (mode=ocd). Default true.
    public var ocdSampling: Bool = true
    /// `blend-step`: fraction of the edit run on the foreground crop before the whole frame is denoised jointly, 0.0…1.0. Default 0.8.
    public var blendStep: Double = 0.8
    /// `background-steps`: full-frame UNet evaluations spent on the background's inverted trajectory up to the blend
    /// level (the steps between reuse the last prediction: φ = joint steps / background-steps); 0 = one per step
    /// (exact DDIM inversion). Only used when object-centric sampling crops the foreground. 0…1000. Default 0.
    public var backgroundSteps: Int = 0
    /// `inversion-iterations`: fixed-point iterations per DDIM inversion step: the step is repeated with the
    /// prediction taken at its own result, so denoising retraces it more closely. 1 = plain DDIM inversion. 1…20. Default 1.
    public var inversionIterations: Int = 1
    /// `blend-threshold` (mode=blended): share of the peak of the edited words' cross-attention (per frame, after a
    /// 3×3 max-pool) at or above which a cell is in the automatic mask, 0.0…1.0. Default 0.3 (FateZero's).
    public var blendThreshold: Double = 0.3
    /// `keyframe-interval` (mode=tokenflow): one keyframe every this many frames, at a random offset drawn per step
    /// from `seed`; 1 = every frame is a keyframe (extended attention over the window, nothing propagated). 1…64. Default 4.
    public var keyframeInterval: Int = 4
    /// `preserve-background`: replace the latent outside the dilated mask by the inverted trajectory at every step. Default true.
    public var preserveBackground: Bool = true
    /// `context-margin`: extra latent cells around the mask's box for the foreground crop, 0…64. Default 0: the edit
    /// region is already dilated by 1 + the feather, which is the crop's context (the crop takes any size: the UNet
    /// resizes odd sizes back as diffusers does).
    public var contextMargin: Int = 0
    /// `tome-ratio`: share of key/value tokens merged in self-attention, 0.0…0.9. Default 0.5.
    public var tomeRatio: Double = 0.5
    /// `tome-foreground-weight`: how strongly saliency protects foreground tokens from merging, 0.0…1.0. Default 1.0.
    public var tomeForegroundWeight: Double = 1.0
    /// `tome-frames`: frames in one spatiotemporal merging volume, 1…64. Default 2.
    public var tomeFrames: Int = 2
    /// `cross-frame`: which frames' keys/values self-attention sees. Default first-previous.
    public var crossFrame: CrossFrameAttention = .firstPrevious
    /// `feather`: width in pixels of the soft edge of the composite mask, 0…256. Default 8.
    public var feather: Int = 8

    public init() {}
}
