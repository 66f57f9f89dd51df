// The only place that maps an `EditMode` to its method (Methods/).

enum EditMethodFactory {
    /// The maker of `settings.mode`'s method, one method per window, its configuration read from `settings` now.
    /// Throws for a mode without a method; needs no model, so callers check a mode before one loads.
    static func maker(for settings: EditorSettings) throws -> EditMethodMaker {
        switch settings.mode {
        case .baseline:
            let config = BaselineMethod.Config(settings)
            return { _ in BaselineMethod(config) }
        case .ocd:
            let config = OCDMethod.Config(settings)
            return { OCDMethod(config, window: $0) }
        case .blended:
            let config = BlendedMethod.Config(settings)
            return { BlendedMethod(config, window: $0) }
        case .tokenflow:
            let config = TokenFlowMethod.Config(settings)
            return { TokenFlowMethod(config, window: $0) }
        case .reatco:
            throw WindowEditError("mode 'reatco' is not implemented yet (its attention refocusing needs gradients "
                                  + "through the UNet, which this inference engine does not compute); use mode=ocd, "
                                  + "baseline, blended or tokenflow")
        }
    }
}
