// The only place that maps an `EditMode` to its method (Methods/).

enum EditMethodFactory {
    /// The maker of `settings.mode`'s method, one method per window, its configuration read from `settings` now.
    /// Throws for a mode's settings it cannot run; needs no model, so callers check them before one loads.
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
            let config = ReAtCoMethod.Config(settings)
            return { ReAtCoMethod(config, window: $0) }
        }
    }
}
