// What one window's edit loop spent, for `ocdedit bench edit`, the tests and logs.

/// What the edit loop spent: the figures `ocdedit bench edit` reports.
public struct SamplingReport: Sendable {
    public var unetCalls = 0
    /// Σ over UNet calls of batch × latent height × latent width (shallow calls not included).
    public var unetTokenSteps = 0
    /// Calls among `unetCalls` that ran only the outermost blocks on cached deep features (deep-cache-interval), and
    /// their Σ of batch × latent height × latent width.
    public var shallowUNetCalls = 0, shallowTokenSteps = 0
    /// Σ of self-attention query×key pairs.
    public var attentionPairs = 0
    /// Key/value tokens removed by merging (summed over layers and calls).
    public var mergedTokens = 0
    /// The foreground crop, as a share of the latent (1 = no crop).
    public var cropFraction = 1.0
    /// The part of the latent the joint steps compute (joint-margin), as a share of it (1 = the whole latent).
    public var jointFraction = 1.0
    /// Edit steps on the foreground crops, edit steps on the joint part, UNet evaluations of the joint part's
    /// inversion (the background's trajectory).
    public var foregroundSteps = 0, jointSteps = 0, backgroundInversionSteps = 0
    /// Share of the latent the method's automatic mask kept (before dilation); nil for methods without one (all but
    /// mode=blended).
    public var automaticMaskCoverage: Double? = nil
    /// mode=reatco: per edit step, the attention loss before each of its refocusing updates (refinement first; the
    /// sub-windows' losses summed), and the gradients computed (UNet forward + backward to the loss's level).
    public var refocusLosses: [[Float]] = []
    public var refocusGradients = 0
}
