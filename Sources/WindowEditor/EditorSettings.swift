// Everything a window edit depends on. The element exposes each field as a GObject property (name in the comment);
// `EditorSettings.fields` holds the names, ranges and blurbs gst-inspect-1.0 shows.

public enum EditMode: String, Sendable, CaseIterable {
    /// Object-centric diffusion: object-centric sampling and saliency-weighted token merging.
    case ocd
    /// The same edit with OCD sampling and token merging off (for comparison).
    case baseline
    /// Blended latent diffusion with an automatic mask: DiffEdit's (where the guided edit's two noise predictions
    /// differ), or the edited words' cross-attention without guidance.
    case blended
    /// ReAtCo: each word of `region-words` (or `regions`) drawn in its own region (attention refocusing with
    /// gradients through the UNet), the source re-noised outside the regions (invariant-region joint sampling).
    case reatco
    /// TokenFlow-style keyframe editing with feature propagation.
    case tokenflow
}

/// How the inverted trajectory the edit retraces is found.
public enum InversionKind: String, Sendable, CaseIterable {
    /// DDIM inversion: deterministic steps toward noise under the source prompt; the edit's DDIM steps retrace them.
    case ddim
    /// Edit-friendly DDPM inversion (Huberman-Spiegelglas et al. 2024): each level is the clean latent noised
    /// independently (seeded), and each step keeps the noise map under which a DDPM step (η = 1) from one level
    /// lands exactly on the next; the edit's DDPM steps add those maps.
    case ddpm
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
    // Each field under its property name; its range, blurb and text form are in `EditorSettings.fields`
    // (EditorSettings+Names.swift), its default is the initial value here: nowhere else.
    /// `model`: folder of a diffusers-layout Stable Diffusion 1.x/2.x pipeline; nil = pass-through.
    public var modelPath: String? = nil
    /// `prompt`: target prompt; nil = pass-through.
    public var prompt: String? = nil
    /// `source-prompt`: prompt describing the input, used for DDIM inversion.
    public var sourcePrompt: String = ""
    /// `negative-prompt`: unconditional prompt for classifier-free guidance; empty = see `negativeFromSource`.
    public var negativePrompt: String = ""
    /// `negative-from-source`: with an empty `negative-prompt`, the source prompt is the unconditional prompt
    /// (negative-prompt inversion, Miyake et al. 2023): guidance then pushes from the description of the input
    /// towards the target, and a target equal to the source retraces the inversion at any guidance scale. On the
    /// shapes world it lifted edit accuracy from 0.45 to 0.79 (baseline, `ocdedit eval`, README). false = the empty
    /// prompt, as diffusers does.
    public var negativeFromSource: Bool = true
    /// `steps`: DDIM steps of the full schedule. 10, chosen with `ocdedit eval` for the default mode: `ocd` edits
    /// as well as or better than at 20 steps, at half the UNet work (figures in the README, "Edit quality,
    /// measured").
    public var steps: Int = 10
    /// `guidance-scale`: classifier-free guidance scale (1 = no guidance). Low, chosen with `ocdedit eval`: with the
    /// source prompt as the unconditional prompt (negative-from-source) guidance extrapolates along the difference
    /// between the two prompts, and the shapes-world model trained on recolouring pairs already moves to the target
    /// at 1: 2.5 overshoots it (`ocd` on the committed clips: 0.219 edit accuracy, 0.677 at 1.5), diffusers' 7.5
    /// more so (the sweeps are in the README).
    public var guidanceScale: Double = 1.5
    /// `guidance-share`: share of the edit steps (the first, the noisiest) that run classifier-free guidance; the
    /// later ones take the target prompt's prediction alone, at half the UNet batch (a guidance interval,
    /// Kynkäänniemi et al. 2024: guidance at low noise levels adds little).
    public var guidanceShare: Double = 1
    /// `strength`: share of the schedule that is inverted and re-denoised.
    public var strength: Double = 0.8
    /// `seed`: seed of every random choice (token-merge destinations, keyframe offsets).
    public var seed: UInt64 = 0
    /// `mask-threshold`: mask value at or above which a pixel is foreground.
    public var maskThreshold: Int = 128
    /// `preview-mask`: tint the masked area instead of editing.
    public var previewMask: Bool = false
    /// `processing-size`: short side of the processing resolution in pixels, a multiple of 64.
    public var processingSize: Int = 512
    /// `mode`: the editing method.
    public var mode: EditMode = .ocd
    /// `ocd-sampling`: object-centric sampling on/off (mode=ocd).
    public var ocdSampling: Bool = true
    /// `blend-step`: fraction of the edit run on the foreground crop before the whole frame is denoised jointly.
    public var blendStep: Double = 0.8
    /// `background-steps`: full-frame UNet evaluations spent on the background's inverted trajectory up to the blend
    /// level (the steps between reuse the last prediction: φ = joint steps / background-steps); 0 = one per step
    /// (exact DDIM inversion). Only used when object-centric sampling crops the foreground.
    public var backgroundSteps: Int = 0
    /// `inversion-iterations`: fixed-point iterations per DDIM inversion step: the step is repeated with the
    /// prediction taken at its own result, so denoising retraces it more closely. 1 = plain DDIM inversion.
    public var inversionIterations: Int = 1
    /// `inversion`: DDIM inversion, or the edit-friendly DDPM noise maps.
    public var inversion: InversionKind = .ddim
    /// `attention-reuse`: share of the edit steps (the first) whose self-attention maps are the inversion's
    /// (SelfAttentionMapReuse.swift); 0 = off.
    public var attentionReuse: Double = 0
    /// `deep-cache-interval` (DeepCache, Ma et al. 2024): of every this many consecutive edit steps on one view (the
    /// crops, then the joint part), the first runs the whole UNet and the others only its first down and last up
    /// block on the first's deep features (UNetDeepFeatures); 1 = off. 6 (one full call per phase at the default 10
    /// steps) edits as well as 1 on the shapes world and steadier (README, "Against the reference").
    public var deepCacheInterval: Int = 6
    /// `deep-cache-branch` (DeepCache's skip branch, counted from the outside): the layers a step between full calls
    /// recomputes, `conv_in` with the first this many layers of the first down block and one more of the last up
    /// block (UNetDeepFeatures); the model's `layers_per_block` or more (at most 64, so the default always is): the
    /// whole outermost level.
    public var deepCacheBranch: Int = 64
    /// `deep-cache-inversion`: DDIM inversion's UNet calls take step caching too (deep-cache-interval and -branch),
    /// in inversion order: the first call of a phase (its lowest noise level) runs the whole UNet. inversion=ddpm's
    /// calls always do (in the edit's order, so its null edit stays exact). With attention-reuse or mode=tokenflow,
    /// whose edit steps read the inputs the inversion's calls recorded per layer, a shallow inversion call records
    /// only the outer layers: the inner layers' inputs then exist only at the inversion's full calls, whose steps are
    /// not the edit's full steps, and the edit's full calls use their own there.
    public var deepCacheInversion: Bool = false
    /// `blend-threshold` (mode=blended): share of the automatic mask's map at or above which a cell is in the mask:
    /// the guidance difference scaled per frame from its minimum to its peak (GuidanceDifferenceMask.swift), or,
    /// without guidance, the edited words' cross-attention over its peak after a 3×3 max-pool. The default is
    /// FateZero's, and DiffEdit's mask on the shapes world measured best there (README).
    public var blendThreshold: Double = 0.3
    /// `keyframe-interval` (mode=tokenflow): one keyframe every this many frames, at a random offset drawn per step
    /// from `seed`; 1 = every frame is a keyframe (extended attention over the window, nothing propagated).
    public var keyframeInterval: Int = 4
    /// `preserve-background`: replace the latent outside the dilated mask by the inverted trajectory at every step.
    public var preserveBackground: Bool = true
    /// `context-margin`: extra latent cells around the mask's box for the foreground crop. None by default: the edit
    /// region is already dilated by 1 + the feather, which is the crop's context (the crop takes any size: the UNet
    /// resizes odd sizes back as diffusers does).
    public var contextMargin: Int = 0
    /// `joint-margin`: latent cells of context around the foreground crop that the joint steps (and the background's
    /// inversion) compute; −1 = the whole frame. Outside the edit region the latent is the inverted trajectory at
    /// every step and the composite keeps the input's bytes, so cells far from the crop only give it context. 1
    /// edits as well as the whole frame on the shapes world (README, "Against the reference").
    public var jointMargin: Int = 1
    /// `decode-margin`: latent cells around the edit region's box that the VAE decodes with it. None by default:
    /// the region is the mask dilated by 1 + the feather in latent cells, so the composite's soft edge lies at least
    /// a cell inside the box; the decoder's padding still reaches it, by measure harmlessly (eval at 0, 1 and 2:
    /// edits as good, README "Against the reference"); 2 decodes as the editor did before this setting.
    public var decodeMargin: Int = 0
    /// `region-words` (mode=reatco): comma-separated words or phrases of the target prompt; the `mask` stream is
    /// then a label map, pixel value v marking the v-th one's region (1 = the first, 0 = no region).
    public var regionWords: String = ""
    /// `regions` (mode=reatco): static regions instead of a label map, `word:x1,y1,x2,y2;…` in pixels of the input
    /// frame (x2, y2 exclusive); the `mask` stream is not read then.
    public var regions: String = ""
    /// `refocus-share` (mode=reatco): share of the edit steps (the first) that move the latent along the attention
    /// loss's gradient (ReAtCo: half); 0 = no refocusing (invariant-region joint sampling only).
    public var refocusShare: Double = 0.5
    /// `refocus-scale` (mode=reatco): the gradient step's scale, α_i = scale·√(1 − 0.5·i/(steps − 1)) (ReAtCo: 20).
    public var refocusScale: Double = 20
    /// `refocus-iterations` (mode=reatco): most foreground-only updates at each refinement step (0 %, 20 % and 40 %
    /// of the edit steps: ReAtCo's Attend-and-Excite loop); 0 = no refinement.
    public var refocusIterations: Int = 20
    /// `refocus-level` (mode=reatco): the UNet level whose cross-attention maps the loss reads (0 = the finest);
    /// −1 = the deepest level whose maps have at least 16 cells on the short side (ReAtCo's 16×16 at 512 px).
    public var refocusLevel: Int = -1
    /// `refocus-smoothing` (mode=reatco): radius in latent cells of a low-pass on the gradient before each update (a
    /// box filter of 2·radius + 1 cells run twice along each axis); 0 = the raw gradient, as ReAtCo. The raw gradient
    /// of the attention loss is high-frequency, and on the shapes world its steps draw coloured noise into the
    /// regions; a smooth step draws objects (README, "mode=reatco").
    public var refocusSmoothing: Int = 2
    /// `refocus-frames` (mode=reatco): frames per gradient computation (the window's refocusing runs on sub-windows
    /// of this many frames, each its own loss, which bounds the gradient's memory); 0 = the whole window at once.
    public var refocusFrames: Int = 4
    /// `tome-ratio`: share of key/value tokens merged in self-attention.
    public var tomeRatio: Double = 0.5
    /// `tome-foreground-weight`: how strongly saliency protects foreground tokens from merging.
    public var tomeForegroundWeight: Double = 1.0
    /// `tome-frames`: frames in one spatiotemporal merging volume.
    public var tomeFrames: Int = 2
    /// `cross-frame`: which frames' keys/values self-attention sees.
    public var crossFrame: CrossFrameAttention = .firstPrevious
    /// `feather`: width in pixels of the soft edge of the composite mask.
    public var feather: Int = 8
    /// `window-overlap`: context frames edited at the head of each window after the first and not output
    /// (WindowOverlap.swift): the stream's first frame (the cross-frame anchor every window then shares), then the
    /// previous window's last `window-overlap` − 1 input frames. 0 = each window on its own (it may jump at window
    /// boundaries). Costs the context frames' share of every window's UNet work.
    public var windowOverlap: Int = 2

    public init() {}

    /// The unconditional prompt of classifier-free guidance that `negative-prompt` and `negative-from-source` give.
    public var unconditionalPrompt: String {
        negativePrompt.isEmpty && negativeFromSource ? sourcePrompt : negativePrompt
    }
}
