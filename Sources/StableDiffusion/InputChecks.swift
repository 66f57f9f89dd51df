import TensorKernels

// Checks of tensors handed to a component from outside (the `ocdedit model` commands read them from files), so a
// batch of 0, an empty image or a wrong channel count is an error naming the input instead of a crash in a kernel.

extension UNet2DConditionModel {
    /// Throws naming `source` unless `sample` is [B, in_channels, h, w], `timesteps` has B entries and `context` is
    /// [B, L, cross_attention_dim], with B, h, w and L at least 1.
    public func checkInputs(sample: Tensor, timesteps: Tensor, context: Tensor, source: String) throws {
        let what = "\(source): sample \(sample.shape), timestep \(timesteps.shape), encoder_hidden_states "
            + "\(context.shape)"
        guard sample.rank == 4, context.rank == 3 else {
            throw ModelError("\(what): sample must be [B,\(config.inChannels),h,w] and encoder_hidden_states "
                                 + "[B,L,\(config.crossAttentionDim)]")
        }
        let b = sample.shape[0]
        guard b >= 1 else { throw ModelError("\(what): batch size \(b), must be at least 1") }
        guard sample.shape[2] >= 1, sample.shape[3] >= 1, context.shape[1] >= 1 else {
            throw ModelError("\(what): every size must be at least 1 (empty image or no context tokens)")
        }
        guard sample.shape[1] == config.inChannels, timesteps.count == b, context.shape[0] == b,
              context.shape[2] == config.crossAttentionDim else {
            throw ModelError("\(what) do not fit the UNet (batch \(b): \(b) timesteps and \(b) contexts; "
                                 + "in_channels \(config.inChannels), cross_attention_dim "
                                 + "\(config.crossAttentionDim))")
        }
    }
}

extension AutoencoderKL {
    /// Throws naming `source` unless `x` is [B, in_channels, H, W] with B ≥ 1 and H, W positive multiples of
    /// `downscale`.
    public func checkEncodeInput(_ x: Tensor, source: String) throws {
        let f = config.downscale
        guard x.rank == 4, x.shape[0] >= 1, x.shape[1] == config.inChannels, x.shape[2] >= f, x.shape[3] >= f,
              x.shape[2] % f == 0, x.shape[3] % f == 0 else {
            throw ModelError("\(source): sample \(x.shape) must be [B,\(config.inChannels),H,W] with batch B at "
                                 + "least 1 and H and W positive multiples of \(f)")
        }
    }

    /// Throws naming `source` unless `z` is [B, latent_channels, h, w] with B, h, w at least 1.
    public func checkDecodeInput(_ z: Tensor, source: String) throws {
        guard z.rank == 4, z.shape[0] >= 1, z.shape[1] == config.latentChannels, z.shape[2] >= 1,
              z.shape[3] >= 1 else {
            throw ModelError("\(source): latent \(z.shape) must be [B,\(config.latentChannels),h,w] with batch B, "
                                 + "h and w at least 1")
        }
    }
}
