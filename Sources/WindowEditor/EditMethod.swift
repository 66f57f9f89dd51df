// What differs between editing methods, as the edit loop (EditLoop.swift) asks it. The loop never asks which method
// it runs; EditMethodFactory.swift is the only place that maps a mode to a method.
import StableDiffusion
import TensorKernels

/// The window in latent space, prepared by the editor.
struct SamplingInputs {
    /// Clean latents [F, 4, h, w], already × scaling factor.
    var latents: Tensor
    /// Per frame (h×w): 1 where the latent may change (dilated mask at the threshold), 0 where it follows the source.
    var editRegion: [[Float]]
    /// Per frame (h×w): soft saliency in [0, 1] for token merging.
    var saliency: [[Float]]
    /// Prompt embeddings [1, 77, D].
    var source: Tensor, target: Tensor, negative: Tensor
    /// The source and target prompts' token ids (no start or end token), for methods that look at words' attention.
    var sourceTokens: [Int32] = [], targetTokens: [Int32] = []
    /// Latent cells by which `editRegion` extends beyond the mask (it covers the composite's feathered edge).
    var regionDilation = 1
    /// mode=reatco's word regions; nil in other modes.
    var regions: WindowRegions? = nil
}

/// Where mode=reatco draws each word in one window.
struct WindowRegions {
    /// Per word: its tokens' positions in the target prompt's context (RegionWords.tokenPositions).
    var tokens: [[Int]]
    /// Per frame of the window: the label map (value v = the v-th word's region, RegionWords) at the frame's size.
    var labels: [Mask]
    /// The layout the labels follow.
    var layout: RegionWords

    /// The frame's union of the regions as a 0/255 mask.
    func union(_ labels: Mask) -> Mask { layout.union(labels) }
}

/// One window as a method sees it when it is built.
struct MethodWindow {
    let inputs: SamplingInputs
    /// Denoising steps of the edit; the inversion runs as many.
    let editSteps: Int
    /// The UNet, for methods that run it themselves (gradients); the loop's calls go through NoisePredictor.
    let model: UNet2DConditionModel
    /// ᾱ_t of the loop's scheduler.
    let alphaCumprod: (Int) -> Float
    /// The window's cancellation check, for methods that run long work of their own between the loop's calls.
    let isCancelled: () -> Bool

    /// The UNet's layout (which layers run at which resolution).
    var unet: UNet2DConditionConfig { model.config }

    var frames: Int { inputs.latents.shape[0] }
    var latentHeight: Int { inputs.latents.shape[2] }
    var latentWidth: Int { inputs.latents.shape[3] }
}

/// Builds the method of one window (its configuration was read from the settings when the maker was made).
typealias EditMethodMaker = (MethodWindow) -> any EditMethod

/// Where the steps of one window's edit compute.
struct SamplingPlan {
    /// One box per frame, all of one size (the window stays one batch), or nil: every step computes the whole latent.
    var crops: [LatentBox]? = nil
    /// With crops: the first edit steps, and the inversion steps above the joint part's last level, compute the
    /// crops only; the joint part (`jointBoxes`) is inverted to that level (the background's trajectory) and
    /// denoised jointly from the pasted crops on.
    var cropSteps = 0
    /// With crops: the part of the latent the background's inversion and the joint steps compute, one box per frame
    /// holding that frame's crop (the latent outside it stays the input's), or nil: the whole latent.
    var jointBoxes: [LatentBox]? = nil
    /// Inversion steps of the joint part at which the UNet runs; the others reuse its last prediction (and skip the
    /// fixed-point iterations). nil: every step.
    var backgroundUNetSteps: Set<Int>? = nil
}

/// One UNet call of the edit loop, as a method sees it when it builds the call's attention hooks.
struct UNetCall {
    enum Pass: Equatable {
        /// The first prediction of an inversion step: the source prompt, no guidance.
        case inversion
        /// A fixed-point iteration of an inversion step (inversion-iterations > 1).
        case inversionRefinement
        /// A denoising step of the edit: the target prompt, guided.
        case edit
    }
    let pass: Pass
    /// The edit step whose timestep the call runs at (inversion step k runs at edit step editSteps − 1 − k's).
    let editStep: Int
    let timestep: Int
    /// The batch: `halves` × `frames` items, half-major (classifier-free guidance: [negative frames, target frames]).
    let frames: Int, halves: Int
    /// The latent size the call computes (the whole latent or a crop), and each frame's saliency at that size.
    let height: Int, width: Int
    let saliency: [[Float]]
}

/// What differs between editing methods. One instance per window, so it may keep state across the window's calls
/// (maps it records during the edit, correspondences found during the inversion).
protocol EditMethod: AnyObject {
    /// Where the window's steps compute. Default: the whole latent at every step.
    var plan: SamplingPlan { get }
    /// The attention hooks of one UNet call, built for that call; they return data and never change the model.
    func hooks(for call: UNetCall) -> WindowAttentionHooks
    /// Per frame (whole latent grid): where the latent may change after edit step `step`; outside it the step's
    /// result is replaced by the inverted trajectory. Asked after every edit step when the background is preserved;
    /// a method may update what it found from the step's calls here. Default nil: the window's edit region.
    func editRegion(afterEditStep step: Int) -> [[Float]]?
    /// A guided edit call's two noise predictions [F, 4, h, w] (unconditional and target prompt, before guidance
    /// combines them). Default: ignored.
    func observeGuidance(_ call: UNetCall, unconditional: Tensor, conditional: Tensor)
    /// The latent edit step `step` starts from: its UNet input and the scheduler step's sample, given the previous
    /// step's result `x` (the view the step computes). Default: `x`.
    func latent(_ x: Tensor, beforeEditStep step: Int, timestep: Int) throws -> Tensor
    /// Adds what the method spent on its own to the loop's report. Default: nothing.
    func addCounts(to report: inout SamplingReport)
    /// The mask the method found itself (latent grid, per frame, before dilation), which the composite intersects
    /// with the input masks. Default nil: the input masks only.
    var automaticMask: [[Float]]? { get }
}

extension EditMethod {
    var plan: SamplingPlan { SamplingPlan() }
    func editRegion(afterEditStep step: Int) -> [[Float]]? { nil }
    func observeGuidance(_ call: UNetCall, unconditional: Tensor, conditional: Tensor) {}
    var automaticMask: [[Float]]? { nil }
    func latent(_ x: Tensor, beforeEditStep step: Int, timestep: Int) throws -> Tensor { x }
    func addCounts(to report: inout SamplingReport) {}
}
